"""Seed ensembles (the paper's Gamma): average stored member probabilities, no retraining.

An ensemble directory is self-contained: besides the averaged probabilities and metrics it
holds a copy of each member's model files under `members/`, and `ensemble.json` lists those
copies by paths relative to the ensemble. `predict` refuses member paths that lead outside
the ensemble's folder, so a shared ensemble cannot point a user at arbitrary files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import Corpus
from icdtransfer.train.member import read_probs, write_json, write_probs

# Not needed by `predict` (the ensemble holds the averaged probabilities), so not copied.
NOT_COPIED = ("probs_validation.npy", "probs_test.npy", "history.json")


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
    """Write an ensemble directory: ensemble.json (its members), copies of the members' model
    files, averaged probabilities and metrics.json, evaluated exactly as a member is."""
    corpus = Corpus.open(corpus_dir)
    validation, test = average_probabilities(members)
    metrics = corpus.evaluate(validation, test)
    metrics["ensemble_size"] = len(members)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        write_probs(tmp, validation, test)
        write_json(tmp / "metrics.json", metrics)
        names = []
        for i, member in enumerate(members, start=1):
            name = f"members/{i}-{Path(member).resolve().name}"
            (tmp / name).mkdir(parents=True)
            for file in sorted(Path(member).iterdir()):
                if file.is_file() and file.name not in NOT_COPIED:
                    shutil.copyfile(file, tmp / name / file.name)
            names.append(name)
        write_json(
            tmp / "ensemble.json",
            {
                "members": names,  # inside this folder: the only paths predict reads
                "copied_from": [os.path.relpath(Path(m).resolve(), out.resolve()) for m in members],
            },
        )
    return metrics
