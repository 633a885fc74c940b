"""A real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster: a head and a
worker node, each its own raylet and object store): sweeps spread over both nodes, survive
the loss of a node, and Ray Train pretraining survives a killed worker. Everything runs
through the same `icdtransfer` commands a user calls, with `ray.address` set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psutil
import pytest

from helpers.runs import ddp_pretrain_params, wait_for_checkpoint, write_params

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

STUDY = """name: {name}
kind: grid
metric: val_macro_f
mode: max
max_concurrent: 4
max_failures: 2
seeds: [1]
space:
  variant: [scratch, frozen, tune_conv, tune_all]
train: {{epochs: {epochs}, patience: {epochs}}}
"""


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "object_store_memory": 150 * 1024**2,
            "env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"},
        },
    )
    yield c
    c.shutdown()


def add_worker(cluster):
    node = cluster.add_node(num_cpus=2, object_store_memory=150 * 1024**2)
    cluster.wait_for_nodes()
    return node


def run(cluster, params, tmp: Path, *args: str, background: bool = False, **env_vars: str):
    params_file = write_params(
        replace(params, ray=replace(params.ray, address=cluster.address)), tmp / "params.yaml"
    )
    command = [sys.executable, "-m", "icdtransfer", *args, "--params", str(params_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_vars}
    if background:
        log = open(tmp / "log.txt", "w")  # noqa: SIM115 - closed by the test
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def sweep_params(tiny_params, tmp: Path):
    return replace(
        tiny_params,
        sweep=replace(tiny_params.sweep, results_dir=str(tmp / "results")),
        ray=replace(tiny_params.ray, storage_path=str(tmp / "ray")),
    )


def test_sweep_spreads_over_nodes_and_ships_data(cluster, tiny_params, tmp_path: Path) -> None:
    worker = add_worker(cluster)
    try:
        (tmp_path / "spread.yaml").write_text(STUDY.format(name="spread", epochs=1))
        done = run(
            cluster,
            sweep_params(tiny_params, tmp_path),
            tmp_path,
            "sweep",
            "--study",
            str(tmp_path / "spread.yaml"),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        trials = pd.read_parquet(tmp_path / "results" / "spread" / "trials.parquet")
        assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
        assert trials["node"].nunique() >= 2  # trials ran on both nodes
        # off the driver's node the corpus came through the object store, not the filesystem
        assert set(trials["data_from"]) == {"driver folder", "object store"}
    finally:
        cluster.remove_node(worker)


def test_sweep_survives_losing_a_node(cluster, tiny_params, tmp_path: Path) -> None:
    worker = add_worker(cluster)
    (tmp_path / "loss.yaml").write_text(STUDY.format(name="loss", epochs=80))
    proc = run(
        cluster,
        sweep_params(tiny_params, tmp_path),
        tmp_path,
        "sweep",
        "--study",
        str(tmp_path / "loss.yaml"),
        background=True,
        # a Tune checkpoint every epoch: the node goes once a trial there has one, and a tiny
        # member's 80 epochs can end before the default 30 s between checkpoints
        ICDTRANSFER_CHECKPOINT_S="0",
    )
    worker_node = worker.node_id[:8]
    starts = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        logs = list((tmp_path / "ray").glob("studies/loss/*/trial_starts.jsonl"))
        if logs:
            starts = [json.loads(line) for line in logs[0].read_text().splitlines()]
            there = [s["trial_id"] for s in starts if worker_node in s["node"]]
            # a trial on the worker has a Tune checkpoint (an epoch) to resume from
            tune_dir = logs[0].parent / "tune"
            if any(next(tune_dir.glob(f"*{t}*/checkpoint_*"), None) for t in there):
                break
        time.sleep(0.5)
    assert proc.poll() is None and starts, "no trial checkpointed on the worker node in time"
    removed_at = time.time()
    cluster.remove_node(worker)
    proc.wait(timeout=900)
    recovery = time.time() - removed_at
    log = (tmp_path / "log.txt").read_text()
    assert proc.returncode == 0, log[-3000:]
    trials = pd.read_parquet(tmp_path / "results" / "loss" / "trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
    lines = (tmp_path / "results" / "loss" / "trial_starts.jsonl").read_text().splitlines()
    runs = pd.DataFrame([json.loads(line) for line in lines])  # ids stay text
    per_trial = runs.groupby("trial_id")["node"].agg(list)
    # trials that were running on the lost node: started there, then again on the head
    restarted = [t for t, nodes in per_trial.items() if worker_node in nodes[0] and len(nodes) >= 2]
    assert restarted, f"no trial was running on the removed node: {per_trial.to_dict()}"
    final = trials.set_index("trial_id")["node"]
    resumed = runs.groupby("trial_id")["resumed"].agg(list)
    for trial in restarted:
        assert worker_node not in per_trial[trial][-1]
        assert worker_node not in final[trial]  # its result came from the head
    # a moved trial resumed its member after its last checkpointed epoch, not from epoch 1
    at = [r[-1]["epoch"] for t, r in resumed.items() if t in restarted and r[-1]]
    assert at and min(at) >= 1, resumed.to_dict()
    # trials that had finished on the lost node before it went keep their results, unrun
    for trial, nodes in per_trial.items():
        if worker_node in final[trial]:
            assert len(nodes) == 1
    back = runs[runs["trial_id"].isin(restarted) & ~runs["node"].str.contains(worker_node)]
    moved_after = float(back["time"].min() - removed_at)
    print(
        f"node removed; its trials restarted on the head {moved_after:.1f} s later; sweep "
        f"finished {recovery:.0f} s after the loss; trials moved: {restarted}, resumed "
        f"after epochs {at}"
    )


def test_pretraining_survives_a_killed_worker(
    cluster, tiny_params, default_run, tmp_path: Path
) -> None:
    worker = add_worker(cluster)
    params = ddp_pretrain_params(
        tiny_params,
        default_run["source"],
        tmp_path / "pre",
        epochs=3,
        ray=replace(tiny_params.ray, storage_path=str(tmp_path / "ray")),
    )
    proc = run(cluster, params, tmp_path, "pretrain", background=True)
    wait_for_checkpoint(proc, tmp_path / "ray")
    assert proc.poll() is None, "pretraining ended before a worker could be killed"
    time.sleep(2)  # mid-epoch 2
    victims = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])
    ]
    assert victims, "no Ray Train worker process found"
    killed_at = time.time()
    victims[-1].kill()
    proc.wait(timeout=900)
    log = (tmp_path / "log.txt").read_text()
    cluster.remove_node(worker)
    assert proc.returncode == 0, log[-3000:]
    assert "resuming from checkpoint after epoch" in log
    history = json.loads((tmp_path / "pre" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    print(f"worker killed; pretraining finished {time.time() - killed_at:.0f} s later")
