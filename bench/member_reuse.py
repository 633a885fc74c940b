"""Member reuse: members trained vs members requested when sweeping ensemble_size.

    .venv/bin/python bench/member_reuse.py

A grid over ensemble_size in {1, 2, 3, 5} for one stage-2 config (scratch, 1 epoch, on a small
synthetic corpus), run through the real sweep runner (Ray Tune, member store, 2 concurrent
trials). The trials request 1 + 2 + 3 + 5 = 11 members; the unique (config, seed) pairs are 5.
Baseline: the unique pairs (every member trained exactly once). Last line:
`ratio: <members trained / unique (config, seed) pairs>` (goal: exactly 1).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd

from _data import small_study_params
from helpers.runs import run_sweep

STUDY = """name: reuse
kind: grid
metric: val_macro_f
mode: max
max_concurrent: 2
seeds: [1, 2, 3, 4, 5]
space:
  variant: [scratch]
  ensemble_size: [1, 2, 3, 5]
train: {epochs: 1, max_tokens: 400}
"""


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = small_study_params(root)
        (root / "reuse.yaml").write_text(STUDY)
        run_sweep(params, str(root / "reuse.yaml"))
        trials = pd.read_parquet(root / "results" / "reuse" / "trials.parquet")
        members = pd.read_parquet(root / "results" / "reuse" / "members.parquet")
    requested = int(trials["ensemble_size"].sum())
    trained = int(trials["members_trained_here"].sum())
    unique = members[["key", "seed"]].drop_duplicates().shape[0]
    print(f"trials: {len(trials)}, members requested: {requested}, unique (config, seed): {unique}")
    print(f"members trained: {trained} (stored: {len(members)})")
    print(f"ratio: {trained / unique:.2f}")


if __name__ == "__main__":
    main()
