"""Train / validation / test splits, and the source holdout reserved for the synthesizer."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icdtransfer.data.errors import InputError, clip

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")


def unit_hash(key: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, key): the same on every machine and run."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_holdout(pmid: str, fraction: float, seed: int) -> bool:
    """Whether a PMID is reserved for the EMR synthesizer (and so never in the stage-1 corpus)."""
    return unit_hash(pmid, seed) < fraction


def patient_subsample(patients: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Which documents a `fraction` of the patients keeps (bool per document), for the
    training-size dimension `train_fraction` (docs/DESIGN.md section 3).

    Patients are ordered by unit_hash(patient, seed) and the first ceil(fraction x n) kept
    (at least one), all of a patient's documents together. The order does not depend on the
    fraction, so the subsamples of one seed are nested: every patient at 10% is also at 25%,
    50% and 100%. The same on every machine and run.
    """
    keys = sorted(set(map(str, patients)))
    order = sorted(keys, key=lambda k: (unit_hash(k, seed), k))
    keep = set(order[: max(1, math.ceil(fraction * len(order) - 1e-9))])
    return np.fromiter((str(p) in keep for p in patients), dtype=bool, count=len(patients))


def split_by_group(
    groups: Sequence[str], validation_size: int, test_size: int, seed: int, section: str = ""
) -> np.ndarray:
    """Assign documents to splits so that no group (patient) is in two splits.

    Groups are shuffled with `seed`; whole groups go to test until it holds `test_size`
    documents, then to validation, and the rest to training. A split can overshoot its size by
    at most one group's documents. Returns one split code per document. Sizes that leave no
    training document are bad params: a ConfigError naming the keys (`section`.validation_size
    and `section`.test_size), which the CLI prints as one line (exit 2).
    """
    from icdtransfer.config import ConfigError

    n = len(groups)
    if validation_size < 0 or test_size < 0 or validation_size + test_size >= n:
        prefix = f"{section}." if section else ""
        raise ConfigError(
            f"{prefix}validation_size ({validation_size}) + {prefix}test_size ({test_size}) "
            f"must be below the number of documents ({n}), so that training keeps some"
        )
    keys, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(keys))
    order = np.random.default_rng(seed).permutation(len(keys))
    group_split = np.full(len(keys), TRAIN, dtype=np.int8)
    filled = {TEST: 0, VALIDATION: 0}
    for g in order:
        for split, want in ((TEST, test_size), (VALIDATION, validation_size)):
            if filled[split] < want:
                group_split[g] = split
                filled[split] += int(sizes[g])
                break
        else:
            break
    return group_split[inverse]


def read_id_list(path: str | Path) -> list[str]:
    """Ids from a split file: one per line, blank lines and #-comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "split file not found")
    ids = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line:
                ids.append(line)
    if not ids:
        raise InputError(path, None, "split file lists no ids")
    return ids


def split_from_files(
    doc_ids: Sequence[str], validation_file: str, test_file: str
) -> tuple[np.ndarray, int]:
    """Splits read from id lists (everything not listed is training).

    Returns the split codes and how many listed ids are not in the corpus.
    """
    position = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    splits = np.full(len(doc_ids), TRAIN, dtype=np.int8)
    missing = 0
    seen: dict[str, str] = {}
    for split, path in ((VALIDATION, validation_file), (TEST, test_file)):
        for doc_id in read_id_list(path):
            if doc_id in seen and seen[doc_id] != path:
                raise InputError(path, f"id {clip(doc_id)}", f"also listed in {seen[doc_id]}")
            seen[doc_id] = path
            if doc_id in position:
                splits[position[doc_id]] = split
            else:
                missing += 1
    return splits, missing
