"""The DVC pipeline in a throwaway clone: repro, a no-op second repro, targeted re-runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def sh(*args: str, cwd: Path, stdout_only: bool = False) -> str:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.setdefault("GIT_AUTHOR_NAME", "test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@example.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@example.invalid")
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout if stdout_only else out.stdout + out.stderr


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed project (plus the working tree's edits), in a fresh git repository."""
    dest = tmp_path_factory.mktemp("clone")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for stats in dest.glob("data/**/stats.json"):
        stats.unlink()  # pretend nothing was ever run here
    (dest / "dvc.lock").unlink(missing_ok=True)
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "clone", cwd=dest)
    return dest


def ran(log: str) -> list[str]:
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")]


def test_repro_then_noop_then_only_target_stages_rerun(clone: Path) -> None:
    first = sh("dvc", "repro", cwd=clone)
    assert ran(first) == ["synthesize", "prepare_source", "prepare_target"]
    metrics = json.loads(sh("dvc", "metrics", "show", "--json", cwd=clone, stdout_only=True))
    target_stats = metrics[""]["data"]["data/prepared/target/stats.json"]["data"]
    assert target_stats["instances"] == 2000

    second = sh("dvc", "repro", cwd=clone)
    assert ran(second) == []
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=clone)

    sh("git", "add", "-A", cwd=clone)
    sh("git", "commit", "-qm", "ran", cwd=clone)
    exp = sh("dvc", "exp", "run", "-S", "target.min_count=15", cwd=clone)
    assert ran(exp) == ["prepare_target"]
    new = json.loads((clone / "data/prepared/target/stats.json").read_text())
    assert new["labels"] > target_stats["labels"]  # a lower cut keeps more codes
