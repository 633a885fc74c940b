"""Uncertainty by resampling patients and seeds (docs/DESIGN.md section 5).

A bootstrap replicate draws the test split's P patients with replacement and takes all of a
drawn patient's test notes together (splits are by patient, and a patient's admissions share
codes: resampling notes one by one would treat them as independent and narrow the interval).
Every metric is recomputed on the replicate from per-label counts (count-weighted, so B
replicates are a few matrix products). Every system is scored on the same draws, so two
systems can be compared replicate by replicate (a paired bootstrap).

* **Fixed label set.** Macro-F averages over the same labels in every replicate as in the
  point estimate: all L labels (`macro_f_all_labels`), or the labels with a positive in the
  observed test split (`macro_f`); a label that loses its positives in a replicate scores 0
  there. A frequency decile without such a label is NaN in every replicate, as it is None in
  the point estimate.
* **Seeds** (`seed_replicates`). A row of ensemble size k trained with S seeds estimates the
  expected score of a k-model ensemble: its point is the mean over all k-subsets of the S
  seeds (k = 1: the mean over seeds). Each replicate half-samples the seeds: it draws
  n = floor(S / 2) of them without replacement and averages the k-subsets inside the draw.
  The mean of n of S values drawn without replacement deviates from the mean of all S with
  variance (s^2 / n)(1 - n / S), which is s^2 / S, the variance of the S-seed mean, for even
  S (larger, so conservative, for odd S): the seed bootstrap with replacement shrinks it by
  (S - 1) / S and, with 3 seeds, has only 10 distinct outcomes. Where k > n, a replicate
  draws k of the S seeds and ensembles them. One kind of interval for every ensemble size.
* **Intervals** are the 2.5th-97.5th percentiles. **p-values** (two-sided, "no difference")
  are 2 (1 + m) / (B + 1), m the smaller count of replicate differences on either side of
  zero: never 0, at least 2 / (B + 1). `holm` corrects a family of them.
"""

from __future__ import annotations

import itertools
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


def draws(groups: np.ndarray | int, replicates: int, seed: int) -> np.ndarray:
    """How often each document is drawn in each replicate: [B, N] weights.

    `groups` gives each test document's patient (any hashable labels, documents' order): a
    replicate draws the P patients with replacement and weighs each document by how often its
    patient was drawn. An int N stands for N documents of N different patients."""
    labels = np.arange(groups) if isinstance(groups, int | np.integer) else np.asarray(groups)
    _, patient = np.unique(labels, return_inverse=True)
    n_patients = int(patient.max()) + 1 if len(patient) else 0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, max(n_patients, 1), size=(replicates, n_patients))
    counts = np.zeros((replicates, n_patients), dtype=np.float32)
    np.add.at(counts, (np.arange(replicates)[:, None], picks), 1.0)
    return counts[:, patient]


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


def subsets(seeds: int, size: int) -> list[tuple[int, ...]]:
    """Every `size`-subset of seed positions 0..seeds-1, in lexicographic order."""
    return list(itertools.combinations(range(seeds), size))


def half_size(seeds: int) -> int:
    """How many of S seeds a replicate draws for the half-sample (at least 1)."""
    return max(1, seeds // 2)


def seed_weights(seeds: int, size: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """[B, C] weights over the k-subsets of `subsets(seeds, size)`: replicate b's value is the
    weighted sum of the subsets' replicate-b values (module docstring, Seeds)."""
    combos = subsets(seeds, size)
    index = {c: i for i, c in enumerate(combos)}
    n = half_size(seeds)
    weights = np.zeros((replicates, len(combos)))
    for b in range(replicates):
        if size <= n:
            drawn = sorted(rng.choice(seeds, size=n, replace=False).tolist())
            inside = [index[c] for c in itertools.combinations(drawn, size)]
            weights[b, inside] = 1.0 / len(inside)
        else:
            drawn = tuple(sorted(rng.choice(seeds, size=size, replace=False).tolist()))
            weights[b, index[drawn]] = 1.0
    return weights


def seed_replicates(per_subset: list[Replicates], weights: np.ndarray) -> Replicates:
    """Replicates of a k-subset mean: in replicate b, the subsets' replicate-b scores weighed
    by `seed_weights`' row b. One subset: its own replicates."""
    if len(per_subset) == 1:
        return per_subset[0]

    def mean(name: str) -> np.ndarray:
        stacked = np.stack([getattr(r, name) for r in per_subset], axis=1)  # [B, C, ...]
        w = weights.reshape(weights.shape + (1,) * (stacked.ndim - 2))
        return np.nansum(stacked * w, axis=1) if stacked.ndim > 2 else (stacked * w).sum(1)

    out = Replicates(**{f.name: mean(f.name) for f in fields(Replicates)})
    for name in ("deciles", "deciles_all_labels"):  # a decile without labels stays NaN
        nan = np.isnan(getattr(per_subset[0], name))
        getattr(out, name)[nan] = np.nan
    return out


def interval(values: np.ndarray) -> tuple[float, float]:
    """95% percentile interval; NaN when the values are (a decile without labels)."""
    if np.isnan(values).any():
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def paired_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired-bootstrap p-value for a - b = 0 (same replicates for both):
    2 (1 + m) / (B + 1), m the smaller count on either side of zero; never 0."""
    delta = a - b
    wrong_side = min(int(np.sum(delta <= 0)), int(np.sum(delta >= 0)))
    return float(min(1.0, 2 * (1 + wrong_side) / (len(delta) + 1)))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def format_p(p: float) -> str:
    """A p-value as printed (never 0: the smallest is 2 / (B + 1))."""
    if np.isnan(p):
        return ""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
