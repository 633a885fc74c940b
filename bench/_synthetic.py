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


def synthetic_notes(
    n: int,
    seed: int = 0,
    mean_length: float = 5_303,
    labels: int = LABELS,
    codes_per_note: float = 7.4,
    vocab: int = VOCAB,
) -> Notes:
    """n notes, lengths lognormal around the paper's 5,303 words (most near the 6,000 cap),
    7.4 codes each on average (other corpora: PubMed abstracts, 147 words, 12.62 MeSH terms)."""
    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(np.log(mean_length) - 0.35**2 / 2, 0.35, size=n)
    lengths = np.clip(lengths, 1, 1.7 * mean_length).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    tokens = rng.integers(3, vocab, size=int(offsets[-1]), dtype=np.int32)
    counts = 1 + rng.poisson(codes_per_note - 1, size=n)
    rows = [np.sort(rng.choice(labels, size=k, replace=False)) for k in counts]
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    labels = sp.csr_matrix(
        (np.ones(indptr[-1], np.uint8), np.concatenate(rows), indptr), shape=(n, labels)
    )
    return Notes(tokens, offsets, labels)
