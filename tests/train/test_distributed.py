"""Stage-1 pretraining under Ray Train (2 CPU workers, gloo): learning, agreement with the
single-process loop, and resuming a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers.runs import ddp_pretrain_params, wait_for_checkpoint, write_params
from icdtransfer.artifacts import MemberInfo
from icdtransfer.config import RayConfig
from icdtransfer.ray_env import train_run_state_file
from icdtransfer.train.distributed import STATE_FILE, recover_run_state
from icdtransfer.train.member import load_model_file
from icdtransfer.train.stages import pretrain
from icdtransfer.train.state import LoopState, Snapshot

pytestmark = pytest.mark.slow
RUN_STATE = train_run_state_file(Path()).name  # Ray Train's record of a run's checkpoints


def test_two_workers_learn_and_match_one_process(ray_local, tiny: dict, tmp_path: Path) -> None:
    """Each worker its own batch of 8: the 2-worker DDP run's global batch is 16, so with the
    same seed, no dropout and fp32 it agrees with the single-process run at batch 16 to 1e-4 in
    every weight after an epoch (stated tolerance)."""
    encoder = tiny["encoder"]
    base = replace(
        tiny["pretrain"],
        dropout=0.0,
        epochs=1,
        batch_size=16,
        precision="fp32",
        learning_rate=0.01,
        checkpoint_dir=str(tmp_path / "ck"),
    )
    single = replace(base, out_dir=str(tmp_path / "single"))
    ddp = replace(base, out_dir=str(tmp_path / "ddp"), num_workers=2, batch_size=8)
    pretrain(encoder, single, tiny["source"])
    pretrain(encoder, ddp, tiny["source"], RayConfig(storage_path=str(tmp_path / "ray")))
    a, _ = load_model_file(tmp_path / "single" / "model.pt")
    b, meta = load_model_file(tmp_path / "ddp" / "model.pt")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-4), name
    info = MemberInfo.read(tmp_path / "ddp")
    assert info.workers == 2
    # the workers' CPU time is counted with the driver's (each trained an epoch)
    workers = info.details["worker_cpu_seconds"]
    assert workers > 0 and info.compute.cpu_seconds >= workers
    assert info.training is not None and info.training.stop_reason == "epoch_cap"
    assert info.training.epochs_run == info.training.epoch_cap == 1

    longer = replace(ddp, epochs=3, out_dir=str(tmp_path / "ddp3"))
    pretrain(encoder, longer, tiny["source"], RayConfig(storage_path=str(tmp_path / "ray")))
    history = json.loads((tmp_path / "ddp3" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # the loss falls
    assert all(h["workers"] == 2 for h in history)


def test_killed_run_resumes_at_the_next_epoch(tiny_params, default_run, tmp_path: Path) -> None:
    """Interrupt `icdtransfer pretrain` (2 workers) after its first checkpoint; the same
    command then resumes at epoch 2 instead of starting over. Interrupt that run after epoch 2
    and cut Ray's run-state file short, as a kill during its write does: the third run still
    resumes, at epoch 3."""
    config = ddp_pretrain_params(
        tiny_params,
        default_run["source"],
        tmp_path / "pre",
        epochs=3,
        ray=RayConfig(storage_path=str(tmp_path / "ray"), num_cpus=4),
    )
    params_file = write_params(config, tmp_path / "params.yaml")
    command = [sys.executable, "-m", "icdtransfer", "pretrain", "--params", str(params_file)]
    repo = Path(__file__).resolve().parents[2]

    def interrupt_after(epoch: int) -> str:
        log = tmp_path / f"run{epoch}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                command, cwd=repo, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            wait_for_checkpoint(proc, tmp_path / "ray", epoch)
            assert proc.poll() is None, f"the run ended before epoch {epoch}'s checkpoint"
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=120)
        assert not (tmp_path / "pre" / "model.pt").exists()
        return log.read_text()

    interrupt_after(1)
    assert "resuming from checkpoint after epoch 1" in interrupt_after(2)
    (snapshot,) = (tmp_path / "ray").glob(f"pretrain-*/{RUN_STATE}")
    text = snapshot.read_text()
    snapshot.write_text(text[: len(text) // 2])

    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "was unreadable" in output and "resuming from checkpoint after epoch 2" in output
    history = json.loads((tmp_path / "pre" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_an_unreadable_run_state_falls_back_to_the_newest_loadable_checkpoint(
    tmp_path: Path,
) -> None:
    """`recover_run_state`: a readable or missing Ray state file is left to Ray; a cut-short
    one is moved aside, and the newest checkpoint whose state loads is chosen (a newer,
    half-copied folder is passed over)."""
    run = tmp_path / "pretrain-x"
    older, newer = (
        run / "checkpoint_2026-01-01_10-00-00.0",
        run / "checkpoint_2026-01-01_10-05-00.0",
    )
    older.mkdir(parents=True)
    newer.mkdir()
    Snapshot({}, {}, {}, LoopState(epoch=4)).save(older / STATE_FILE)
    (newer / STATE_FILE).write_bytes(b"PK\x03\x04 cut short")
    snapshot = run / RUN_STATE

    assert recover_run_state(str(tmp_path), "pretrain-x") is None  # no state yet
    snapshot.write_text('{"ray_version": "2.60.0"}')
    assert recover_run_state(str(tmp_path), "pretrain-x") is None
    assert snapshot.exists()
    snapshot.write_text('{"ray_version": "2.60.0", "checkpoint_res')
    assert recover_run_state(str(tmp_path), "pretrain-x") == str(older)
    assert not snapshot.exists()
    assert (run / f"{RUN_STATE}.corrupt").exists()

    snapshot.write_text("{")
    (older / STATE_FILE).unlink()
    assert recover_run_state(str(tmp_path), "pretrain-x") is None  # nothing loads: start over
    assert recover_run_state("s3://bucket/runs", "pretrain-x") is None
