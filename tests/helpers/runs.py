"""Running stages the way the CLI does: params files for subprocesses, sweeps, and Ray Train
pretraining runs that a test interrupts."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from icdtransfer.config import Params, RayConfig, dump_params
from icdtransfer.ray_env import train_run_state_file


def write_params(params: Params, path: Path) -> Path:
    """A params file holding exactly `params`, for commands run as subprocesses."""
    path.write_text(dump_params(params))
    return path


def sweep_command(params_file: Path, study: str | Path) -> list[str]:
    """`icdtransfer sweep` as a separate process, with this interpreter."""
    return [sys.executable, "-m", "icdtransfer", "sweep", "--params", str(params_file),
            "--study", str(study)]  # fmt: skip


def study_args(params: Params, study: str):
    """What `icdtransfer sweep --study <study>` hands plan_study, run_study and study_status
    (cli.py's `_sweep`)."""
    from icdtransfer.sweep.runner import StudyRequest

    return StudyRequest(
        study,
        params.sweep,
        params.encoder,
        params.head,
        params.train_target,
        params.target.out_dir,
        params.ray,
    )


def run_sweep(params: Params, study: str, retry_errored: bool = False) -> dict:
    """`icdtransfer sweep --study <study>` in this process (the CLI's own command function,
    so the same sections reach the sweep); returns the study's best.json."""
    from icdtransfer.cli import COMMANDS
    from icdtransfer.sweep.runner import study_path
    from icdtransfer.sweep.study import load_study

    args = argparse.Namespace(study=study, status=False, retry_errored=retry_errored)
    COMMANDS["sweep"][0](params, args)
    name = load_study(study_path(params.sweep.studies_dir, study)).name
    return json.loads((Path(params.sweep.results_dir) / name / "best.json").read_text())


def ddp_pretrain_params(
    tiny_params: Params, source_dir: Path, out_dir: Path, epochs: int, ray: RayConfig
) -> Params:
    """Two-worker Ray Train pretraining on the real PubMed corpus (`default_run`'s source),
    whose epochs last long enough to interrupt a run mid-epoch."""
    return replace(
        tiny_params,
        source=replace(tiny_params.source, out_dir=str(source_dir)),
        encoder=replace(tiny_params.encoder, embedding_dim=16, filters=16),
        pretrain=replace(
            tiny_params.pretrain, num_workers=2, epochs=epochs, max_tokens=120, out_dir=str(out_dir)
        ),
        ray=ray,
    )


def wait_for_checkpoint(
    proc: subprocess.Popen, storage: Path, epoch: int = 1, timeout: float = 300
) -> None:
    """Return once Ray Train has recorded the checkpoint of `epoch` (or a later one) under
    `storage`, one that a restarted run would resume from, or once `proc` has ended.

    A `checkpoint_*` folder alone is not enough: Ray copies it into storage before its
    controller writes the run's state file, and a run restarted from the same name and
    storage path resumes only from the checkpoints that file lists. Interrupting between the
    two (about 60 ms here) makes the restarted run start over; it did in CI."""
    state_file = train_run_state_file(Path()).name
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for snapshot in storage.glob(f"pretrain-*/{state_file}"):
            try:
                latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
            except (OSError, ValueError, KeyError):  # being written
                continue
            if latest and latest["metrics"]["epoch"] >= epoch:
                return
        time.sleep(0.2)
