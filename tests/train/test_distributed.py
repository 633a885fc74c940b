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

from conftest import ddp_pretrain_params, wait_for_checkpoint, write_params
from icdtransfer.config import RayConfig
from icdtransfer.train.member import load_model_file
from icdtransfer.train.stages import pretrain

pytestmark = pytest.mark.slow


def test_two_workers_learn_and_match_one_process(ray_local, tiny: dict, tmp_path: Path) -> None:
    """Same global batch (16 = 2 x 8), same seed, no dropout, fp32: the 2-worker DDP run and
    the single-process run agree to 1e-4 in every weight after an epoch (stated tolerance)."""
    model = replace(tiny["model"], dropout=0.0)
    base = replace(
        tiny["pretrain"],
        epochs=1,
        batch_size=16,
        precision="fp32",
        learning_rate=0.01,
        checkpoint_dir=str(tmp_path / "ck"),
    )
    single = replace(base, out_dir=str(tmp_path / "single"))
    ddp = replace(base, out_dir=str(tmp_path / "ddp"), num_workers=2)
    pretrain(model, single, tiny["source"])
    pretrain(model, ddp, tiny["source"], RayConfig(storage_path=str(tmp_path / "ray")))
    a, _ = load_model_file(tmp_path / "single" / "model.pt")
    b, meta = load_model_file(tmp_path / "ddp" / "model.pt")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-4), name
    info = json.loads((tmp_path / "ddp" / "member.json").read_text())
    assert info["workers"] == 2

    longer = replace(ddp, epochs=3, out_dir=str(tmp_path / "ddp3"))
    pretrain(model, longer, tiny["source"], RayConfig(storage_path=str(tmp_path / "ray")))
    history = json.loads((tmp_path / "ddp3" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # the loss falls
    assert all(h["workers"] == 2 for h in history)


def test_killed_run_resumes_at_the_next_epoch(tiny_params, default_run, tmp_path: Path) -> None:
    """Interrupt `icdtransfer pretrain` (2 workers) after its first checkpoint; the same
    command then resumes at epoch 2 instead of starting over."""
    config = ddp_pretrain_params(
        tiny_params,
        default_run["source"],
        tmp_path / "pre",
        epochs=2,
        ray=RayConfig(storage_path=str(tmp_path / "ray"), num_cpus=4),
    )
    params_file = write_params(config, tmp_path / "params.yaml")
    command = [sys.executable, "-m", "icdtransfer", "pretrain", "--params", str(params_file)]
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        command,
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_checkpoint(proc, tmp_path / "ray")
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    assert not (tmp_path / "pre" / "model.pt").exists()
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from checkpoint after epoch 1" in done.stdout + done.stderr
    history = json.loads((tmp_path / "pre" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
