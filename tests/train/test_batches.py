"""The batch path: host half (flat documents) and device half (word dropout, padding, labels)
as tensor operations, checked against the per-document rule they implement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from icdtransfer.train.batches import host_batch, iterate, materialize

MAX_TOKENS = 30


@dataclass
class Docs:
    """Corpus-shaped: offsets, document(i), labels (CSR)."""

    tokens: np.ndarray
    offsets: np.ndarray
    labels: sp.csr_matrix

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def docs(n: int = 40, seed: int = 0) -> Docs:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 50, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.integers(1, 1000, size=offsets[-1]).astype(np.int32)
    labels = sp.csr_matrix((rng.random((n, 7)) < 0.3).astype(np.float32))
    return Docs(tokens, offsets, labels)


def test_without_dropout_each_row_is_the_truncated_document_then_padding() -> None:
    corpus = docs()
    picked = np.array([3, 0, 17, 5])
    batch = materialize(host_batch(corpus, picked, MAX_TOKENS), word_dropout=0.5, min_length=5)
    truncated = [corpus.document(int(i))[:MAX_TOKENS] for i in picked]
    assert batch.tokens.shape == (4, max(5, max(map(len, truncated))))
    assert batch.tokens.dtype == torch.int64
    for row, seq in enumerate(truncated):
        assert batch.lengths[row] == len(seq)
        assert batch.tokens[row, : len(seq)].tolist() == seq.tolist()
        assert not batch.tokens[row, len(seq) :].any()
    assert np.array_equal(batch.labels.numpy(), corpus.labels[picked].toarray())


def test_padding_reaches_the_widest_filter() -> None:
    corpus = Docs(np.array([5, 6], np.int32), np.array([0, 1, 2]), sp.csr_matrix((2, 3)))
    batch = materialize(host_batch(corpus, np.array([0, 1]), 10), 0.0, min_length=5)
    assert batch.tokens.tolist() == [[5, 0, 0, 0, 0], [6, 0, 0, 0, 0]]


def test_word_dropout_keeps_an_ordered_subsequence_at_the_given_rate() -> None:
    corpus = docs(200)
    picked = np.arange(200)
    batch = materialize(host_batch(corpus, picked, MAX_TOKENS, dropout_seed=7), 0.3, 5)
    total = kept = 0
    for row, i in enumerate(picked):
        seq = corpus.document(int(i))[:MAX_TOKENS].tolist()
        n = int(batch.lengths[row])
        out = batch.tokens[row, :n].tolist()
        assert 1 <= n <= len(seq) and not batch.tokens[row, n:].any()
        it = iter(seq)
        assert all(tok in it for tok in out)  # a subsequence, order kept
        total, kept = total + len(seq), kept + n
    assert abs(1 - kept / total - 0.3) < 0.03  # ~5,000 tokens: 0.3 within 3 points


def test_word_dropout_is_fixed_by_its_seed() -> None:
    corpus = docs()
    picked = np.arange(20)

    def draw(seed: int) -> torch.Tensor:
        return materialize(host_batch(corpus, picked, MAX_TOKENS, dropout_seed=seed), 0.3, 5).tokens

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_a_document_that_loses_every_word_keeps_its_first() -> None:
    corpus = docs()
    picked = np.array([2, 9, 11])
    batch = materialize(host_batch(corpus, picked, MAX_TOKENS, dropout_seed=3), 1.0, 3)
    assert batch.lengths.tolist() == [1, 1, 1]
    assert batch.tokens[:, 0].tolist() == [int(corpus.document(int(i))[0]) for i in picked]


def test_an_epoch_is_fixed_by_its_generator_seed() -> None:
    corpus = docs(60)

    def epoch(seed: int) -> list[tuple]:
        rng = np.random.default_rng([seed, 0])
        batches = iterate(corpus, np.arange(60), 8, MAX_TOKENS, 0.3, 5, rng)
        return [(b.index.tolist(), b.tokens.tolist(), b.labels.tolist()) for b in batches]

    first = epoch(1)
    assert first == epoch(1)
    assert first != epoch(2)
    assert sorted(i for index, _, _ in first for i in index) == list(range(60))


def test_evaluation_batches_keep_every_token() -> None:
    corpus = docs(30)
    batches = list(iterate(corpus, np.arange(30), 8, MAX_TOKENS, 0.3, 5, None, with_labels=False))
    for batch in batches:
        assert batch.labels is None
        for row, i in enumerate(batch.index):
            assert int(batch.lengths[row]) == min(len(corpus.document(int(i))), MAX_TOKENS)
