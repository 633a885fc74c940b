"""Seed ensembles (the paper's Gamma): average stored member probabilities, no retraining."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import Corpus
from icdtransfer.train.member import read_probs, write_json, write_probs


def average_probabilities(members: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Mean validation and test probabilities of `members` (all of the same corpus)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    sums: list[np.ndarray] | None = None
    for member in members:
        probs = read_probs(member)
        if sums is not None and probs[1].shape != sums[1].shape:
            raise ValueError(
                f"{member}: probabilities of shape {probs[1].shape}, other members "
                f"{sums[1].shape}: members must come from the same corpus"
            )
        sums = list(probs) if sums is None else [s + p for s, p in zip(sums, probs, strict=True)]
    assert sums is not None
    return sums[0] / len(members), sums[1] / len(members)


def build_ensemble(members: list[Path], corpus_dir: str, out_dir: str) -> dict:
    """Write an ensemble directory: ensemble.json (its members), averaged probabilities and
    metrics.json, evaluated exactly as a member is."""
    corpus = Corpus.open(corpus_dir)
    validation, test = average_probabilities(members)
    metrics = corpus.evaluate(validation, test)
    metrics["ensemble_size"] = len(members)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        write_probs(tmp, validation, test)
        write_json(tmp / "metrics.json", metrics)
        # member paths relative to the ensemble, so the pair can move together
        write_json(
            tmp / "ensemble.json",
            {"members": [os.path.relpath(Path(m).resolve(), out.resolve()) for m in members]},
        )
    return metrics
