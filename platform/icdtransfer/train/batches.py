"""Batches from a memory-mapped corpus: bucketed by length, word dropout before padding.

Speed without changing the science: documents of similar length share a batch (less padding),
and word dropout removes tokens before the batch is padded, so dropped words cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from icdtransfer.artifacts import CorpusLike

POOL = 50  # batches' worth of documents sorted together when bucketing


@dataclass
class Batch:
    tokens: torch.Tensor  # [B, T] int64, 0 = padding
    lengths: torch.Tensor  # [B]
    labels: torch.Tensor | None  # [B, L] float32 multi-hot
    index: np.ndarray  # corpus document indices

    def to(self, device: torch.device) -> Batch:
        non_blocking = device.type == "cuda"
        return Batch(
            self.tokens.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
            None if self.labels is None else self.labels.to(device, non_blocking=non_blocking),
            self.index,
        )


def truncated_lengths(corpus: CorpusLike, docs: np.ndarray, max_tokens: int) -> np.ndarray:
    return np.minimum(np.diff(corpus.offsets)[docs], max_tokens)


def batch_order(
    docs: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None,
    bucket: bool,
) -> list[np.ndarray]:
    """Split `docs` into batches. With `rng` the order is shuffled; with `bucket`, documents are
    sorted by length within pools of POOL batches, and the batches are shuffled again, so a
    batch holds similar lengths but the epoch's batch order stays random."""
    order = rng.permutation(len(docs)) if rng is not None else np.arange(len(docs))
    if bucket:
        pools = [order[i : i + batch_size * POOL] for i in range(0, len(order), batch_size * POOL)]
        order = np.concatenate([p[np.argsort(-lengths[p], kind="stable")] for p in pools])
    batches = [docs[order[i : i + batch_size]] for i in range(0, len(order), batch_size)]
    if bucket and rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


@dataclass(frozen=True)
class DocumentCut:
    """How a document enters a batch: truncated at `max_tokens`, words dropped at rate
    `word_dropout` (training only), padded to at least `min_length` (the widest filter)."""

    max_tokens: int
    word_dropout: float
    min_length: int


def collate(
    corpus: CorpusLike,
    docs: np.ndarray,
    cut: DocumentCut,
    rng: np.random.Generator | None,
    with_labels: bool = True,
    pin: bool = False,
) -> Batch:
    """Truncate each document, drop words (training only: rng given), then pad to the
    longest remaining document."""
    seqs = []
    for i in docs:
        seq = np.asarray(corpus.document(int(i))[: cut.max_tokens])
        if rng is not None and cut.word_dropout > 0 and len(seq):
            keep = rng.random(len(seq)) >= cut.word_dropout
            seq = seq[keep] if keep.any() else seq[:1]
        seqs.append(seq)
    width = max(cut.min_length, max((len(s) for s in seqs), default=0))
    tokens = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tokens[row, : len(seq)] = seq
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    labels = None
    if with_labels:
        labels = torch.from_numpy(multi_hot(corpus.labels, docs))
    batch = Batch(torch.from_numpy(tokens), torch.from_numpy(lengths), labels, docs)
    if pin:
        batch.tokens, batch.lengths = batch.tokens.pin_memory(), batch.lengths.pin_memory()
        if batch.labels is not None:
            batch.labels = batch.labels.pin_memory()
    return batch


def multi_hot(labels: sp.csr_matrix, docs: np.ndarray) -> np.ndarray:
    return np.asarray(labels[docs].toarray(), dtype=np.float32)


def iterate(
    corpus: CorpusLike,
    docs: np.ndarray,
    batch_size: int,
    max_tokens: int,
    word_dropout: float,
    min_length: int,
    rng: np.random.Generator | None,
    bucket: bool = True,
    with_labels: bool = True,
    pin: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[Batch]:
    """One pass over `docs` (training when rng is given: shuffled, word dropout on).

    Data parallel: every rank draws the same global batches (same rng) and takes its slice,
    batch[rank::world_size]; a global batch smaller than world_size (only ever the last one)
    is skipped on every rank, so all ranks take the same number of steps.
    """
    cut = DocumentCut(max_tokens, word_dropout, min_length)
    lengths = truncated_lengths(corpus, docs, max_tokens)
    for batch in batch_order(docs, lengths, batch_size, rng, bucket):
        if world_size > 1:
            if len(batch) < world_size:
                continue
            batch = batch[rank::world_size]
        yield collate(corpus, batch, cut, rng, with_labels, pin)
