"""Uncertainty by resampling test documents (docs/DESIGN.md section 5).

A bootstrap replicate draws N test documents with replacement; every metric is recomputed on
the replicate from per-label counts (count-weighted, so B replicates are a few matrix
products). The 95% interval is the 2.5th-97.5th percentile of the replicates. A paired
bootstrap uses the same replicates for two systems on the same documents and gives a
two-sided p-value for "no difference": 2 x the smaller share of replicates on either side
of zero.

Macro-F follows the headline convention: mean per-label F over labels with a positive in the
(resampled) split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icdtransfer.evaluate.metrics import f_score, frequency_deciles


@dataclass
class Replicates:
    """Micro-F, macro-F and decile macro-F of one system on B bootstrap replicates."""

    micro_f: np.ndarray  # [B]
    macro_f: np.ndarray  # [B]
    deciles: np.ndarray  # [B, 10]


def draws(n_docs: int, replicates: int, seed: int) -> np.ndarray:
    """How often each document is drawn in each replicate: [B, N] counts summing to N."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_docs, size=(replicates, n_docs))
    counts = np.zeros((replicates, n_docs), dtype=np.float32)
    np.add.at(counts, (np.arange(replicates)[:, None], picks), 1.0)
    return counts


def replicate_scores(
    y: np.ndarray, pred: np.ndarray, weights: np.ndarray, train_frequency: np.ndarray
) -> Replicates:
    """Scores of one prediction matrix on every replicate (weights from `draws`)."""
    y, pred = y.astype(np.float32), pred.astype(np.float32)
    tp = weights @ (y * pred)  # [B, L]
    fp = weights @ ((1 - y) * pred)
    fn = weights @ (y * (1 - pred))
    micro = f_score(tp.sum(1), fp.sum(1), fn.sum(1))
    f = f_score(tp, fp, fn)
    present = (tp + fn) > 0
    macro = (f * present).sum(1) / np.maximum(present.sum(1), 1)
    deciles = np.stack(
        [
            (f[:, g] * present[:, g]).sum(1) / np.maximum(present[:, g].sum(1), 1)
            for g in frequency_deciles(train_frequency)
        ],
        axis=1,
    )
    return Replicates(micro, macro, deciles)


def interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def paired_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired-bootstrap p-value for a - b = 0 (same replicates for both)."""
    delta = a - b
    return float(min(1.0, 2 * min(np.mean(delta <= 0), np.mean(delta >= 0))))
