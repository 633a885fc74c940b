"""Candidate codes and their features for the second-level ranker (the paper's ref. [9]).

For each document the candidates are the top codes by LR probability, the codes of its
nearest training documents (tf-idf cosine), and the codes NERC found affirmed in its text.
Each (document, candidate) pair is described by:

    lr_prob        first-level LR probability of the code
    lr_rank        rank of the code among the document's LR scores (1 = highest)
    knn_vote       similarity-weighted share of the k neighbours that have the code
    knn_count      number of the k neighbours that have the code
    log_train_freq log(1 + training documents with the code)
    nerc_hits      affirmed NERC mentions of the code             (NERC variant only)
    nerc_type      strongest affirmed match type: 0 none, 1 abbreviation, 2 synonym,
                   3 description                                   (NERC variant only)
    nerc_negated   negated mentions                                (NERC variant only)
    nerc_family    family-history mentions                         (NERC variant only)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from icdtransfer.baseline.nerc import CodeEvidence

BASE_FEATURES = ["lr_prob", "lr_rank", "knn_vote", "knn_count", "log_train_freq"]
NERC_FEATURES = ["nerc_hits", "nerc_type", "nerc_negated", "nerc_family"]


@dataclass
class Neighbours:
    """The k nearest training documents of each document: indices and cosine similarities."""

    index: np.ndarray  # docs x k, rows of the training matrix
    similarity: np.ndarray  # docs x k


def nearest(x: sp.csr_matrix, x_train: sp.csr_matrix, k: int, chunk: int = 512) -> Neighbours:
    """k nearest rows of `x_train` for each row of `x` by cosine similarity (tf-idf rows are
    L2-normalised, so the dot product is the cosine). Ties go to the lower training index."""
    k = min(k, x_train.shape[0])
    index = np.zeros((x.shape[0], k), dtype=np.int64)
    similarity = np.zeros((x.shape[0], k), dtype=np.float32)
    for lo in range(0, x.shape[0], chunk):
        sims = np.asarray((x[lo : lo + chunk] @ x_train.T).todense(), dtype=np.float32)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        index[lo : lo + chunk] = order
        similarity[lo : lo + chunk] = np.take_along_axis(sims, order, axis=1)
    return Neighbours(index, similarity)


def neighbour_votes(nb: Neighbours, y_train: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(similarity-weighted vote, count) per document and code from the neighbours' codes."""
    docs, k = nb.index.shape
    n_labels = y_train.shape[1]
    count = np.zeros((docs, n_labels), dtype=np.float32)
    weighted = np.zeros((docs, n_labels), dtype=np.float32)
    y = y_train.tocsr().astype(np.float32)
    for j in range(k):
        rows = y[nb.index[:, j]].toarray()
        count += rows
        weighted += rows * nb.similarity[:, j : j + 1]
    total = nb.similarity.sum(axis=1, keepdims=True)
    vote = np.divide(weighted, total, out=np.zeros_like(weighted), where=total > 0)
    return vote, count


def nerc_matrix(evidence: list[dict[str, CodeEvidence]], codes: list[str]) -> np.ndarray:
    """docs x codes x 4 array of (hits, type, negated, family) from per-document evidence."""
    column = {c: j for j, c in enumerate(codes)}
    out = np.zeros((len(evidence), len(codes), len(NERC_FEATURES)), dtype=np.float32)
    for i, found in enumerate(evidence):
        for code, ev in found.items():
            j = column.get(code)
            if j is not None:
                out[i, j] = (ev.hits, ev.best_type, ev.negated, ev.family)
    return out


@dataclass
class Candidates:
    """Candidate pairs of a set of documents, grouped by document (the ranker's queries)."""

    doc: np.ndarray  # row of the pair's document within the set
    code: np.ndarray  # column of the pair's code
    features: np.ndarray  # pairs x features
    group_sizes: np.ndarray  # candidates per document, in document order


def candidates(
    lr_probs: np.ndarray,
    vote: np.ndarray,
    count: np.ndarray,
    train_frequency: np.ndarray,
    top_lr: int,
    nerc: np.ndarray | None,
) -> Candidates:
    """Candidates (top `top_lr` LR codes, neighbours' codes, affirmed NERC codes) and their
    features; `nerc` is None for the variant without NERC."""
    docs, n_labels = lr_probs.shape
    order = np.argsort(-lr_probs, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(1, n_labels + 1)[None, :], axis=1)
    mask = (rank <= top_lr) | (count > 0)
    if nerc is not None:
        mask |= nerc[:, :, 0] > 0
    doc, code = np.nonzero(mask)  # row-major: grouped by document, codes ascending
    columns = [
        lr_probs[doc, code],
        rank[doc, code],
        vote[doc, code],
        count[doc, code],
        np.log1p(train_frequency[code]),
    ]
    if nerc is not None:
        columns.extend(nerc[doc, code, f] for f in range(len(NERC_FEATURES)))
    features = np.column_stack(columns).astype(np.float32)
    return Candidates(doc, code, features, np.bincount(doc, minlength=docs))


def feature_names(with_nerc: bool) -> list[str]:
    return BASE_FEATURES + (NERC_FEATURES if with_nerc else [])
