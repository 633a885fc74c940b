"""Uncertainty by resampling test documents and seeds (docs/DESIGN.md section 5).

A bootstrap replicate draws N test documents with replacement; every metric is recomputed on
the replicate from per-label counts (count-weighted, so B replicates are a few matrix
products). Every system is scored on the same draws, so two systems can be compared replicate
by replicate (a paired bootstrap).

* **Fixed label set.** Macro-F averages over the same labels in every replicate as in the
  point estimate: all L labels (`macro_f_all_labels`), or the labels with a positive in the
  observed test split (`macro_f`); a label that loses its positives in a replicate scores 0
  there. Letting the set change with the replicate would centre the interval elsewhere than
  the estimate. A frequency decile without such a label is NaN in every replicate, as it is
  None in the point estimate.
* **Seeds.** A row that is the mean of several single models (one per seed) is resampled over
  seeds as well: each replicate draws that many seeds with replacement and averages their
  scores on its documents, so the interval holds seed-to-seed spread as well as test-set
  noise.
* **Intervals** are the 2.5th-97.5th percentiles. **p-values** (two-sided, "no difference")
  are 2 x the smaller share of replicate differences on either side of zero; 0 means no
  replicate crossed zero, i.e. p < 1/B. `holm` corrects a family of them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from icdtransfer.evaluate.metrics import f_score, frequency_deciles


@dataclass
class Replicates:
    """One system's scores on B bootstrap replicates."""

    micro_f: np.ndarray  # [B]
    macro_f: np.ndarray  # [B], over the labels with a positive in the observed split
    macro_f_all_labels: np.ndarray  # [B], over all labels (the paper's)
    deciles: np.ndarray  # [B, 10], `macro_f` convention; NaN for a decile without such a label
    deciles_all_labels: np.ndarray  # [B, 10]


def draws(n_docs: int, replicates: int, seed: int) -> np.ndarray:
    """How often each document is drawn in each replicate: [B, N] counts summing to N."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_docs, size=(replicates, n_docs))
    counts = np.zeros((replicates, n_docs), dtype=np.float32)
    np.add.at(counts, (np.arange(replicates)[:, None], picks), 1.0)
    return counts


def _mean_over(f: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean of f[:, labels] per replicate; NaN when `labels` is empty."""
    if not len(labels):
        return np.full(f.shape[0], np.nan)
    return f[:, labels].mean(axis=1)


def replicate_scores(
    y: np.ndarray, pred: np.ndarray, weights: np.ndarray, train_frequency: np.ndarray
) -> Replicates:
    """Scores of one prediction matrix on every replicate (weights from `draws`), over the
    label sets fixed by the observed split `y`."""
    present = np.flatnonzero(y.any(axis=0))
    y, pred = y.astype(np.float32), pred.astype(np.float32)
    tp = weights @ (y * pred)  # [B, L]
    fp = weights @ ((1 - y) * pred)
    fn = weights @ (y * (1 - pred))
    micro = f_score(tp.sum(1), fp.sum(1), fn.sum(1))
    f = f_score(tp, fp, fn)
    groups = frequency_deciles(train_frequency)
    return Replicates(
        micro_f=micro,
        macro_f=_mean_over(f, present),
        macro_f_all_labels=f.mean(axis=1),
        deciles=np.stack([_mean_over(f, np.intersect1d(g, present)) for g in groups], axis=1),
        deciles_all_labels=np.stack([_mean_over(f, g) for g in groups], axis=1),
    )


def seed_mean(per_seed: list[Replicates], rng: np.random.Generator) -> Replicates:
    """Replicates of the mean over seeds: in replicate b, `len(per_seed)` seeds drawn with
    replacement, their scores on b's documents averaged. One seed: its own replicates."""
    if len(per_seed) == 1:
        return per_seed[0]
    n_rep = len(per_seed[0].micro_f)
    pick = rng.integers(0, len(per_seed), size=(n_rep, len(per_seed)))
    rows = np.arange(n_rep)[:, None]

    def mean(name: str) -> np.ndarray:
        stacked = np.stack([getattr(r, name) for r in per_seed], axis=1)  # [B, S, ...]
        return stacked[rows, pick].mean(axis=1)

    return Replicates(**{f.name: mean(f.name) for f in fields(Replicates)})


def interval(values: np.ndarray) -> tuple[float, float]:
    """95% percentile interval; NaN when the values are (a decile without labels)."""
    if np.isnan(values).any():
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def paired_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired-bootstrap p-value for a - b = 0 (same replicates for both)."""
    delta = a - b
    return float(min(1.0, 2 * min(np.mean(delta <= 0), np.mean(delta >= 0))))


def holm(p: np.ndarray, replicates: int) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjustment of a family of bootstrap p-values.

    A p of 0 stands for "below 1/B" and enters as 1/B, its bound. Returns the adjusted values
    and, per value, whether it is only an upper bound (it came from such a p); those print
    as "< value"."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    bounded = p <= 0
    tilde = np.where(bounded, 1.0 / replicates, p)
    order = np.argsort(tilde, kind="stable")
    adjusted, is_bound = np.empty(m), np.empty(m, dtype=bool)
    running, running_bound = 0.0, False
    for rank, i in enumerate(order):
        value = min(1.0, (m - rank) * tilde[i])
        if value > running or (value == running and running_bound and not bounded[i]):
            running, running_bound = value, bool(bounded[i])
        adjusted[i], is_bound[i] = running, running_bound
    return adjusted, is_bound


def format_p(p: float, bound: bool, replicates: int) -> str:
    """A p-value as printed: "< 1/B" when no replicate crossed zero, never "0.000"."""
    if np.isnan(p):
        return ""
    if bound or p <= 0:
        return f"< {max(p, 1.0 / replicates):.2g}"
    return f"{p:.3f}"
