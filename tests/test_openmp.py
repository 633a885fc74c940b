"""OMP_WAIT_POLICY: set by the command line before torch loads OpenMP, unless the user set it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from icdtransfer.cli import openmp_defaults


def test_passive_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert openmp_defaults() == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert openmp_defaults() == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_the_cli_sets_it_before_torch_is_loaded() -> None:
    """OpenMP reads the variable once, when torch loads it: the CLI module must not import
    torch before main() has set it."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    probe = (
        "import os, sys\n"
        "import icdtransfer.cli as cli\n"
        "loaded = 'torch' in sys.modules\n"
        "try:\n"
        "    cli.main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(loaded, os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-2:] == ["False", "PASSIVE"]
