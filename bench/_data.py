"""Shared by the sweep benches: a small prepared target corpus built from the package's own
inputs (synthesizer + the real MEDLINE file) by the test suite's builder, in a temporary
folder."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from icdtransfer.config import Params, load_params

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test helpers (tests/helpers/)

from helpers.corpora import build_corpora  # noqa: E402


def small_study_params(root: Path, notes: int = 600) -> Params:
    """Params whose source/target corpora (600 notes) live under `root`, built if missing."""
    params = build_corpora(
        load_params(REPO / "params.yaml"),
        root,
        synthesize={"notes": notes},
        target={"min_count": 10, "validation_size": 80, "test_size": 120},
    )
    return replace(
        params,
        ray=replace(params.ray, storage_path=str(root / "ray")),
        sweep=replace(params.sweep, results_dir=str(root / "results")),
    )
