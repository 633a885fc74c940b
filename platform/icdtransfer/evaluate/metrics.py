"""Multi-label metrics, as docs/DESIGN.md section 5 defines them (the definitions are the contract).

* Per label j: P, R, F from TP/FP/FN over the split; an undefined ratio counts as 0.
* Micro P/R/F pool the counts over labels.
* Macro F is the mean of per-label F (never the F of mean P and mean R, which inflates
  scores). `macro_f_all_labels` is the paper's Macro-F, 1/L times the sum over all L labels
  (F = 0 for a label with no positive and no prediction): the number to compare with the
  paper. `macro_f` averages over the labels with at least one positive in the split. On one
  split the two differ by a constant factor (a label without positives always scores 0), so
  they rank systems alike.
* Frequency deciles: labels sorted by training frequency (ties by label index) and cut into 10
  groups of near-equal size; decile 1 holds the rarest labels. Macro F per decile over the
  group's labels with a positive in the split (None when it has none), or over all of them.
* Thresholds: a fixed 0.5 (the paper states no threshold), and one global threshold tuned for
  micro F on the validation split and applied unchanged to test.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from icdtransfer.artifacts import (
    FIXED_THRESHOLD,
    TUNED_ON,
    Metrics,
    Scores,
    ThresholdKind,
    ThresholdScores,
)

MACRO_CONVENTION = (
    "macro_f_all_labels: the paper's Macro-F, mean of per-label F over all L labels (F=0 where"
    " undefined), the paper-comparable number; macro_f: mean of per-label F over the labels"
    " with a positive in the split"
)
THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)


def dense(y: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(y.toarray() if sp.issparse(y) else y).astype(bool)


def label_counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """TP, FP, FN per label (columns) for boolean document x label matrices."""
    tp = np.sum(y_true & y_pred, axis=0)
    fp = np.sum(~y_true & y_pred, axis=0)
    fn = np.sum(y_true & ~y_pred, axis=0)
    return tp, fp, fn


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def f_score(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 from counts, 2TP / (2TP + FP + FN) (the harmonic mean of P and R); 0 where
    undefined. The project's one F formula: metrics, thresholds and the bootstrap use it."""
    tp = np.asarray(tp, dtype=float)
    return _ratio(2 * tp, 2 * tp + np.asarray(fp, dtype=float) + np.asarray(fn, dtype=float))


def prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall and F from counts (arrays or scalars); 0 where undefined."""
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), f_score(tp, fp, fn)


def scores_at(y_true: np.ndarray, y_pred: np.ndarray) -> Scores:
    """Micro and macro P/R/F of one prediction matrix."""
    tp, fp, fn = label_counts(y_true, y_pred)
    micro = prf(tp.sum(), fp.sum(), fn.sum())
    p, r, f = prf(tp, fp, fn)
    present = (tp + fn) > 0
    return Scores(
        micro_p=float(micro[0]),
        micro_r=float(micro[1]),
        micro_f=float(micro[2]),
        macro_p=float(p[present].mean()) if present.any() else 0.0,
        macro_r=float(r[present].mean()) if present.any() else 0.0,
        macro_f=float(f[present].mean()) if present.any() else 0.0,
        macro_f_all_labels=float(f.mean()) if len(f) else 0.0,
    )


def frequency_deciles(train_frequency: np.ndarray, groups: int = 10) -> list[np.ndarray]:
    """Label indices in `groups` near-equal groups by training frequency, rarest first."""
    order = np.lexsort((np.arange(len(train_frequency)), train_frequency))
    return [part for part in np.array_split(order, groups)]


def decile_macro_f(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    train_frequency: np.ndarray,
    labels: Literal["present", "all"] = "present",
) -> list[float | None]:
    """Macro F for each frequency decile, over the decile's labels with a positive in the
    split (`"present"`; None for a decile with no such label) or over all of them (`"all"`)."""
    tp, fp, fn = label_counts(y_true, y_pred)
    f = f_score(tp, fp, fn)
    present = (tp + fn) > 0
    out: list[float | None] = []
    for group in frequency_deciles(train_frequency):
        keep = group if labels == "all" else group[present[group]]
        out.append(float(f[keep].mean()) if len(keep) else None)
    return out


def tune_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The global threshold (0.01 steps) with the best micro F on this split; ties: lowest."""
    best_t, best_f = 0.5, -1.0
    for t in THRESHOLD_GRID:
        tp, fp, fn = label_counts(y_true, scores >= t)
        f = float(f_score(tp.sum(), fp.sum(), fn.sum()))
        if f > best_f:
            best_t, best_f = float(t), f
    return best_t


def precision_at_k(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean over documents of the share of the k highest-scored labels that are true."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    hits = np.take_along_axis(y_true, top, axis=1).sum(axis=1)
    return float(np.mean(hits / k))


def auc(y_true: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None]:
    """Micro AUC (all document-label pairs) and macro AUC (labels with both classes)."""
    if y_true.all() or not y_true.any():
        return None, None
    micro = float(roc_auc_score(y_true.ravel(), scores.ravel()))
    both = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    macro = float(np.mean([roc_auc_score(y_true[:, j], scores[:, j]) for j in both]))
    return micro, macro


def evaluate(
    y_val: np.ndarray | sp.spmatrix,
    scores_val: np.ndarray,
    y_test: np.ndarray | sp.spmatrix,
    scores_test: np.ndarray,
    train_frequency: np.ndarray,
) -> Metrics:
    """The metrics file of a member, an ensemble or a baseline: test results at the fixed
    threshold and at the threshold tuned on validation, plus validation results."""
    y_val, y_test = dense(y_val), dense(y_test)
    scores_val = np.asarray(scores_val, dtype=np.float32)
    scores_test = np.asarray(scores_test, dtype=np.float32)
    thresholds: dict[ThresholdKind, float] = {
        "fixed": FIXED_THRESHOLD,
        "tuned": tune_threshold(y_val, scores_val),
    }
    test: dict[ThresholdKind, ThresholdScores] = {}
    for kind, threshold in thresholds.items():
        pred = scores_test >= threshold
        test[kind] = ThresholdScores(
            **vars(scores_at(y_test, pred)),
            threshold=threshold,
            decile_macro_f=decile_macro_f(y_test, pred, train_frequency),
            tuned_on=TUNED_ON if kind == "tuned" else None,
        )
    micro_auc, macro_auc = auc(y_test, scores_test)
    return Metrics(
        macro_convention=MACRO_CONVENTION,
        decile_convention="decile 1 = rarest 10% of labels by training frequency",
        documents=int(len(y_test)),
        labels=int(y_test.shape[1]),
        labels_with_positives=int(y_test.any(axis=0).sum()),
        fixed=test["fixed"],
        tuned=test["tuned"],
        p_at_5=precision_at_k(y_test, scores_test, 5),
        p_at_8=precision_at_k(y_test, scores_test, 8),
        p_at_15=precision_at_k(y_test, scores_test, 15),
        micro_auc=micro_auc,
        macro_auc=macro_auc,
        validation={
            kind: scores_at(y_val, scores_val >= threshold)
            for kind, threshold in thresholds.items()
        },
    )


def describe(scores: ThresholdScores, kind: str) -> str:
    """Test scores as a log line names them: the metric, its label set and the threshold
    (`kind`: "tuned" on validation or "fixed")."""
    where = "the threshold tuned on validation" if kind == "tuned" else "the fixed threshold"
    return (
        f"test micro-F {scores.micro_f:.4f}, macro-F over all codes (the paper's)"
        f" {scores.macro_f_all_labels:.4f} and over codes with a test positive"
        f" {scores.macro_f:.4f}, at {where} ({scores.threshold:g})"
    )

