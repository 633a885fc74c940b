"""Sweeps under a real local Ray: end to end, member reuse, failures, and resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from helpers.runs import run_sweep, sweep_command, write_params

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def study_file(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nmetric: val_macro_f\nmode: max\n" + body)
    return path


def starts(results: Path) -> pd.Series:
    rows = [json.loads(line) for line in (results / "trial_starts.jsonl").read_text().splitlines()]
    return pd.DataFrame(rows).groupby("trial_id").size()


def test_smoke_study_end_to_end(ray_local, tiny_params, tmp_path: Path) -> None:
    params = replace(
        tiny_params,
        sweep=replace(tiny_params.sweep, results_dir=str(tmp_path)),
        ray=replace(tiny_params.ray, storage_path=str(tmp_path / "ray")),
    )
    best = run_sweep(params, str(REPO / "studies" / "smoke.yaml"))
    out = tmp_path / "smoke"
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}
    # every epoch was checkpointed while the trials ran; once they ended, none is kept
    assert list((tmp_path / "ray").glob("studies/smoke/*/tune/*/result.json"))
    assert not list((tmp_path / "ray").glob("studies/smoke/*/tune/*/checkpoint_*"))
    assert set(trials["config_variant"]) == {"scratch", "tune_all"}
    for column in (
        "val_macro_f",
        "test_micro_f_fixed",
        "test_macro_f_tuned",
        "node",
        "test_decile_macro_f_tuned",
        "trial_seconds",
    ):
        assert trials[column].notna().all(), column
    assert len(json.loads(trials["test_decile_macro_f_tuned"][0])) == 10
    members = pd.read_parquet(out / "members.parquet")
    assert len(members) == 2 and (out / "search" / "grid.json").exists()
    assert best["val_macro_f"] == trials["val_macro_f"].max()
    for row in members.itertuples():
        assert (out / "members" / row.key / f"seed{row.seed}" / "probs_test.npy").exists()


def test_each_member_is_trained_once(ray_local, tiny_params, tmp_path: Path) -> None:
    """ensemble_size in {1, 3} for one config: 2 trials, 3 members (seed 1 shared)."""
    path = study_file(
        tmp_path,
        "reuse",
        "kind: grid\nmax_concurrent: 2\nseeds: [1, 2, 3]\n"
        "space:\n  variant: [tune_conv]\n  ensemble_size: [1, 3]\n"
        "train: {epochs: 1}\n",
    )
    params = replace(tiny_params, sweep=replace(tiny_params.sweep, results_dir=str(tmp_path)))
    best = run_sweep(params, str(path))
    members = pd.read_parquet(tmp_path / "reuse" / "members.parquet")
    assert sorted(members["seed"]) == [1, 2, 3]
    assert members["key"].nunique() == 1
    trials = pd.read_parquet(tmp_path / "reuse" / "trials.parquet")
    assert trials["members_trained_here"].sum() == 3
    assert best["members_used"] == 3


HUGE = 10**12


def test_failing_trial_is_retried_then_recorded(ray_local, tiny_params, tmp_path: Path) -> None:
    # An adaptation layer of 10^12 units cannot be allocated: torch raises when the model is
    # built, a genuinely broken trial (values outside their range, such as a negative
    # learning rate, no longer get past the study file's checks).
    path = study_file(
        tmp_path,
        "fails",
        "kind: grid\nmax_failures: 1\nseeds: [1]\n"
        f"space:\n  variant: [scratch]\n  adaptation_size: [16, {HUGE}]\n"
        "train: {epochs: 1}\n",
    )
    params = replace(tiny_params, sweep=replace(tiny_params.sweep, results_dir=str(tmp_path)))
    run_sweep(params, str(path))
    trials = pd.read_parquet(tmp_path / "fails" / "trials.parquet").set_index(
        "config_adaptation_size"
    )
    assert trials.loc[16, "status"] == "TERMINATED"
    assert trials.loc[HUGE, "status"] == "ERROR"
    runs = starts(tmp_path / "fails")
    assert runs[trials.loc[HUGE, "trial_id"]] == 2  # tried once, retried once
    assert runs[trials.loc[16, "trial_id"]] == 1


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(
    tiny_params, tmp_path: Path
) -> None:
    params = replace(
        tiny_params,
        sweep=replace(tiny_params.sweep, results_dir=str(tmp_path)),
        ray=replace(tiny_params.ray, storage_path=str(tmp_path / "ray")),
    )
    params_file = write_params(params, tmp_path / "params.yaml")
    path = study_file(
        tmp_path,
        "resume",
        "kind: grid\nmax_concurrent: 1\nseeds: [1]\n"
        "space:\n  variant: [scratch, frozen, tune_conv, tune_all]\n  ensemble_size: [1]\n"
        "  word_dropout: [0.1, 0.2]\n"  # 8 trials
        "train: {epochs: 40, patience: 40}\n",
    )
    command = sweep_command(params_file, path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # max_concurrent 1: once the third trial has started, two have finished
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        logs = list((tmp_path / "ray").glob("studies/resume/*/trial_starts.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    assert not (tmp_path / "resume" / "trials.parquet").exists()  # no results from a stopped run
    finished = [
        p.parent.name
        for p in (tmp_path / "ray").glob("studies/resume/*/tune/*/result.json")
        if '"final": true' in p.read_text()
    ]
    assert 2 <= len(finished) < 8

    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "resume" / "trials.parquet")
    assert len(trials) == 8 and set(trials["status"]) == {"TERMINATED"}
    runs = starts(tmp_path / "resume")
    first_done = [t for t in trials["trial_id"] if any(t in name for name in finished)]
    assert len(first_done) >= 2
    assert all(runs[t] == 1 for t in first_done)  # finished before the stop: never run again
