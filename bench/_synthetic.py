"""Shared by the throughput benches: synthetic long notes shaped like the paper's EMRs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

VOCAB = 30_000
LABELS = 1_231  # the paper's code count
MAX_TOKENS = 6_000  # the paper's truncation


@dataclass
class Notes:
    """A `CorpusLike` (icdtransfer.artifacts): offsets, document(), labels, so the project's
    batching code reads it."""

    tokens: np.ndarray
    offsets: np.ndarray
    labels: sp.csr_matrix

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def synthetic_notes(n: int, seed: int = 0) -> Notes:
    """n notes, lengths lognormal around the paper's 5,303 words (most near the 6,000 cap),
    7.4 codes each on average."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.lognormal(np.log(5_303) - 0.35**2 / 2, 0.35, size=n), 9_000)
    lengths = lengths.astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    tokens = rng.integers(3, VOCAB, size=int(offsets[-1]), dtype=np.int32)
    rows = [np.sort(rng.choice(LABELS, size=1 + rng.poisson(6.4), replace=False)) for _ in range(n)]
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    labels = sp.csr_matrix(
        (np.ones(indptr[-1], np.uint8), np.concatenate(rows), indptr), shape=(n, LABELS)
    )
    return Notes(tokens, offsets, labels)
