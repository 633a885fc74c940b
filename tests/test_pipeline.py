"""The DVC pipeline in a throwaway clone: repro, a no-op second repro, targeted re-runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.checkout import copy_project

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


# A small study: every stage runs for real, on less data and for fewer epochs.
SMALL = {
    "synthesize.notes": 400,
    "synthesize.words_per_note": 300,
    "target.min_count": 8,
    "target.validation_size": 60,
    "target.test_size": 80,
    "pretrain.epochs": 1,
    "pretrain.max_tokens": 100,
    "train_target.epochs": 2,
    "head.max_tokens": 300,
    "pipeline.variants": ["scratch", "tune_all_frozen_copy"],  # foreach over two members
    "pipeline.studies": ["smoke"],
    "report.study": "smoke",
    "report.ablation": None,  # no ablation study in this small pipeline
    "report.bootstrap": 200,
}
STAGES = {
    "synthesize",
    "prepare_source",
    "prepare_target",
    "pretrain",
    "baseline",
    "baseline_lr_l2r",
    "baseline_lr_l2r_nerc",
    "train_target@scratch",
    "train_target@tune_all_frozen_copy",
    "sweep@smoke",
    "report",
}
TARGET_STAGES = STAGES - {"synthesize", "prepare_source", "pretrain"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed project (plus the working tree's edits), in a fresh git repository,
    with the SMALL params written into its params.yaml."""
    import yaml

    dest = copy_project(tmp_path_factory.mktemp("clone"))
    for stale in [*dest.glob("data/**/stats.json"), *dest.glob("models/**/*.json")]:
        stale.unlink()  # pretend nothing was ever run here
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for key, value in SMALL.items():
        section, name = key.split(".")
        params[section][name] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "clone", cwd=dest)
    return dest


def ran(log: str) -> list[str]:
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")]


def note_windows(clone: Path) -> set[str]:
    """Every 6-word window of the synthetic notes' TEXT fields."""
    import csv
    import gzip

    windows: set[str] = set()
    with gzip.open(clone / "data/raw/synthetic/NOTEEVENTS.csv.gz", "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            words = row["TEXT"].split()
            windows.update(" ".join(words[i : i + 6]) for i in range(len(words) - 5))
    return windows


def readable(path: Path) -> str:
    """A file as text: parquet through pandas, anything else as UTF-8 (bytes ignored)."""
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv()
    return path.read_bytes().decode("utf-8", errors="ignore")


def test_repro_metrics_noop_and_target_only_reruns(clone: Path) -> None:
    first = sh("dvc", "repro", cwd=clone)
    assert set(ran(first)) == STAGES
    metrics = json.loads(sh("dvc", "metrics", "show", "--json", cwd=clone, stdout_only=True))
    files = metrics[""]["data"]
    assert files["data/prepared/target/stats.json"]["data"]["instances"] == 400
    for member in (
        "models/baseline",
        "models/baseline_lr_l2r",
        "models/baseline_lr_l2r_nerc",
        "models/target/scratch-seed1",
        "models/target/tune_all_frozen_copy-seed1",
    ):
        result = files[f"{member}/metrics.json"]["data"]
        for threshold in ("fixed", "tuned"):
            assert 0.0 <= result[threshold]["micro_f"] <= 1.0
            assert 0.0 <= result[threshold]["macro_f"] <= 1.0
    assert files["models/baseline/metrics.json"]["data"]["tuned"]["micro_f"] > 0.3
    summary = files["reports/summary.json"]["data"]
    assert {"LR", "LR + L2R", "LR + L2R + NERC", "scratch", "tune_all"} <= set(summary["tuned"])
    assert (clone / "reports/dashboard.html").exists()
    assert len(list((clone / "reports/plots/deciles").glob("*.csv"))) == 5

    # No note text anywhere in results/, reports/ or the logs of the run.
    windows = note_windows(clone)
    assert len(windows) > 50_000
    texts = [first]
    for folder in ("results", "reports"):
        texts += [readable(p) for p in (clone / folder).rglob("*") if p.is_file()]
    assert len(texts) > 20
    found: set[str] = set()  # every 6-word window (whitespace-split) of every output
    for text in texts:
        words = text.split()
        found.update(" ".join(words[i : i + 6]) for i in range(len(words) - 5))
    assert windows.isdisjoint(found), sorted(windows & found)[:5]

    second = sh("dvc", "repro", cwd=clone)
    assert ran(second) == []
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=clone)

    sh("git", "add", "-A", cwd=clone)
    sh("git", "commit", "-qm", "ran", cwd=clone)
    before = json.loads((clone / "data/prepared/target/stats.json").read_text())
    exp = sh("dvc", "exp", "run", "-S", "target.min_count=4", cwd=clone)
    assert set(ran(exp)) == TARGET_STAGES  # not synthesize, prepare_source, pretrain
    after = json.loads((clone / "data/prepared/target/stats.json").read_text())
    assert after["labels"] > before["labels"]  # a lower cut keeps more codes
