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

from icdtransfer.artifacts import (
    ENSEMBLE_FILE,
    HISTORY_FILE,
    PREDICTIONS_FILE,
    PROBS_FILES,
    Metrics,
    average_members,
    read_probs,
    write_json,
    write_probs,
)
from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.errors import InputError
from icdtransfer.evaluate.predictions import write_predictions

# Not needed by `predict` (the ensemble holds the averaged probabilities), so not copied.
NOT_COPIED = (*PROBS_FILES.values(), HISTORY_FILE, PREDICTIONS_FILE)


def build_ensemble(members: list[Path], corpus_dir: str, out_dir: str) -> Metrics:
    """Write an ensemble directory: ensemble.json (its members), copies of the members' model
    files, averaged probabilities and metrics.json, evaluated exactly as a member is."""
    corpus = Corpus.open(corpus_dir)
    probs = []
    for member in members:
        probs.append(read_probs(member))
        if probs[-1][1].shape != probs[0][1].shape:
            raise InputError(
                member,
                None,
                f"probabilities of shape {probs[-1][1].shape}, the first member's "
                f"{probs[0][1].shape}: members must come from the same corpus",
            )
    validation, test = average_members(probs)
    metrics = corpus.evaluate(validation, test)
    metrics.ensemble_size = len(members)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        write_probs(tmp, validation, test)
        write_predictions(tmp / PREDICTIONS_FILE, corpus, validation, test, len(members))
        metrics.write(tmp)
        names = []
        for i, member in enumerate(members, start=1):
            name = f"members/{i}-{Path(member).resolve().name}"
            (tmp / name).mkdir(parents=True)
            for file in sorted(Path(member).iterdir()):
                if file.is_file() and file.name not in NOT_COPIED:
                    shutil.copyfile(file, tmp / name / file.name)
            names.append(name)
        write_json(
            tmp / ENSEMBLE_FILE,
            {
                "members": names,  # inside this folder: the only paths predict reads
                "copied_from": [os.path.relpath(Path(m).resolve(), out.resolve()) for m in members],
            },
        )
    return metrics
