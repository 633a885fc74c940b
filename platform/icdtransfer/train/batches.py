"""Batches from a memory-mapped corpus: bucketed by length, word dropout before padding.

Speed without changing the science: documents of similar length share a batch (less padding),
and word dropout removes tokens before the batch is padded, so dropped words cost nothing.

The work is split so that the host never holds a GPU back (bench/input_pipeline.py):

* host (`host_batches`): the batch order, and per batch the truncated documents copied back to
  back into one flat int32 array, with the labels' (row, code) pairs: memory copies, no
  per-token Python;
* device (`materialize`): word dropout, padding and multi-hot labels as tensor operations on
  whatever device the flat batch sits on. On CUDA a background thread (`_prefetch`) builds the
  host batches, pins them, copies them with non_blocking=True on a side stream and materializes
  them there, PREFETCH batches ahead of the training step. Worker processes are not used: one
  host thread delivers several times what an H100 consumes (the bench measures it).

Randomness: the batch order comes from the epoch's numpy generator; word dropout from a torch
generator seeded per batch from that same generator. Both are fixed by (seed, epoch), so a
resumed run draws what an uninterrupted one does (the masks differ between CPU and CUDA, whose
generators differ).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from icdtransfer.artifacts import CorpusLike

POOL = 50  # batches' worth of documents sorted together when bucketing
PREFETCH = 3  # batches materialized ahead of the training step on CUDA


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


@dataclass
class HostBatch:
    """A batch as the host builds it: truncated documents back to back, nothing padded."""

    tokens: torch.Tensor  # [N] int32, the documents' tokens concatenated
    lengths: torch.Tensor  # [B] int64, truncated lengths
    label_rows: torch.Tensor | None  # [K] int64: batch row of each (row, code) pair
    label_cols: torch.Tensor | None  # [K] int64: code index of each pair
    n_labels: int
    index: np.ndarray  # corpus document indices
    dropout_seed: int | None  # seeds this batch's word dropout; None when evaluating

    def moved(self, move) -> HostBatch:  # noqa: ANN001 - a tensor -> tensor function
        rows, cols = self.label_rows, self.label_cols
        return HostBatch(
            move(self.tokens),
            move(self.lengths),
            None if rows is None else move(rows),
            None if cols is None else move(cols),
            self.n_labels,
            self.index,
            self.dropout_seed,
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


def host_batch(
    corpus: CorpusLike,
    docs: np.ndarray,
    max_tokens: int,
    with_labels: bool = True,
    dropout_seed: int | None = None,
    pin: bool = False,
) -> HostBatch:
    """Each document cut at max_tokens, all of them back to back: one copy per document,
    straight into page-locked memory with `pin` (CUDA only), so copies to the GPU can overlap."""
    seqs = [corpus.document(int(i))[:max_tokens] for i in docs]
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    flat = torch.empty(int(lengths.sum()), dtype=torch.int32, pin_memory=pin)
    if seqs:
        np.concatenate(seqs, out=flat.numpy(), casting="same_kind")
    rows = cols = None
    n_labels = 0
    if with_labels:  # the CSR entries of these rows, without building a scipy submatrix
        table = corpus.labels
        starts = table.indptr[docs]
        counts = table.indptr[docs + 1] - starts
        first = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        cols = torch.from_numpy(table.indices[first + np.arange(counts.sum())].astype(np.int64))
        rows = torch.from_numpy(np.repeat(np.arange(len(docs), dtype=np.int64), counts))
        n_labels = table.shape[1]
    return HostBatch(flat, torch.from_numpy(lengths), rows, cols, n_labels, docs, dropout_seed)


def materialize(host: HostBatch, word_dropout: float, min_length: int) -> Batch:
    """Word dropout (when the batch has a dropout seed), padding to the longest remaining
    document (at least `min_length`, the widest filter) and multi-hot labels, all as tensor
    operations on the device `host` sits on. A document that loses every word keeps its first."""
    device = host.tokens.device
    lengths, tokens = host.lengths, host.tokens
    size, n = len(lengths), tokens.numel()
    doc = torch.repeat_interleave(torch.arange(size, device=device), lengths, output_size=n)
    if host.dropout_seed is not None and word_dropout > 0 and n:
        generator = torch.Generator(device=device)
        generator.manual_seed(host.dropout_seed)
        keep = torch.rand(n, generator=generator, device=device) >= word_dropout
        kept = torch.zeros(size, dtype=torch.long, device=device).index_add_(0, doc, keep.long())
        emptied = (kept == 0) & (lengths > 0)
        keep[(torch.cumsum(lengths, 0) - lengths)[emptied]] = True  # their first word stays
        lengths = kept + emptied.long()
        chosen = keep.nonzero().squeeze(1)
        tokens, doc = tokens.index_select(0, chosen), doc.index_select(0, chosen)
    width = max(min_length, int(lengths.max()) if size else 0)
    # token i of the (still document-ordered) flat batch goes to row doc[i], column i - first[doc]
    shift = torch.arange(size, device=device) * width - (torch.cumsum(lengths, 0) - lengths)
    where = torch.arange(len(tokens), device=device) + shift.index_select(0, doc)
    padded = torch.zeros(size * width, dtype=torch.long, device=device)
    padded.index_copy_(0, where, tokens.long())
    padded = padded.view(size, width)
    labels = None
    if host.label_rows is not None:
        labels = torch.zeros((size, host.n_labels), dtype=torch.float32, device=device)
        labels[host.label_rows, host.label_cols] = 1.0
    return Batch(padded, lengths, labels, host.index)


def host_batches(
    corpus: CorpusLike,
    docs: np.ndarray,
    batch_size: int,
    max_tokens: int,
    rng: np.random.Generator | None,
    bucket: bool = True,
    with_labels: bool = True,
    rank: int = 0,
    world_size: int = 1,
    pin: bool = False,
) -> Iterator[HostBatch]:
    """The host half of `iterate`: one pass of flat batches (a dropout seed each when `rng`)."""
    lengths = truncated_lengths(corpus, docs, max_tokens)
    batches = batch_order(docs, lengths, batch_size, rng, bucket)
    seeds = None if rng is None else rng.integers(0, 2**62, size=len(batches))
    for number, batch in enumerate(batches):
        if world_size > 1:
            if len(batch) < world_size:
                continue
            batch = batch[rank::world_size]
        seed = None if seeds is None else int(seeds[number]) + rank
        yield host_batch(corpus, batch, max_tokens, with_labels, seed, pin)


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
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | None = None,
) -> Iterator[Batch]:
    """One pass over `docs` (training when rng is given: shuffled, word dropout on), as batches
    on `device` (the CPU by default).

    Data parallel: every rank draws the same global batches (same rng) and takes its slice,
    batch[rank::world_size]; a global batch smaller than world_size (only ever the last one)
    is skipped on every rank, so all ranks take the same number of steps.
    """
    device = device or torch.device("cpu")
    cuda = device.type == "cuda"
    hosts = host_batches(
        corpus, docs, batch_size, max_tokens, rng, bucket, with_labels, rank, world_size, cuda
    )
    if cuda:
        yield from _prefetch(hosts, device, word_dropout, min_length)
        return
    for host in hosts:
        yield materialize(host.moved(lambda t: t.to(device)), word_dropout, min_length)


def _prefetch(
    hosts: Iterator[HostBatch], device: torch.device, word_dropout: float, min_length: int
) -> Iterator[Batch]:
    """CUDA: a thread builds batches (tokens straight into pinned memory; the small tensors are
    pinned here), copies them non-blocking on a side stream and materializes them there,
    PREFETCH ahead; the training stream waits on each batch's event before using it."""
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()
    stream = torch.cuda.Stream(device)

    def produce() -> None:
        try:
            with torch.cuda.stream(stream):
                for host in hosts:
                    if stop.is_set():
                        return
                    pinned = host.moved(lambda t: t if t.is_pinned() else t.pin_memory())
                    on_device = pinned.moved(lambda t: t.to(device, non_blocking=True))
                    batch = materialize(on_device, word_dropout, min_length)
                    done = torch.cuda.Event()
                    done.record(stream)
                    ready.put((batch, done))
            ready.put(None)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            ready.put(exc)

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            batch, done = item
            current = torch.cuda.current_stream(device)
            current.wait_event(done)
            for tensor in (batch.tokens, batch.lengths, batch.labels):
                if tensor is not None:  # made on the side stream, used on this one
                    tensor.record_stream(current)
            yield batch
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
