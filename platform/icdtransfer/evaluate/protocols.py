"""The scoring protocols the ICD-coding literature uses, side by side (issue 21).

A protocol is three choices; the project's own metrics (metrics.py, docs/DESIGN.md section 5)
are one of them, and nothing here changes those.

* **threshold**: `fixed` 0.5; `tuned`, one global threshold tuned for micro-F on validation
  (metrics.py's rule); `per_label`, one threshold per label, each tuned for that label's F on
  validation (same grid, ties: lowest). A label without a validation positive has F = 0 at
  every threshold, so nothing can be tuned for it: it takes the global tuned threshold. Test
  labels never choose a threshold.
* **macro**: `mean_f`, the mean of per-label F (the paper's Macro-F, Edin et al. 2023);
  `caml`, the harmonic mean of macro-P and macro-R (caml-mimic's evaluation.py `macro_f1`:
  per-label P with 0 where nothing is predicted, per-label R with 0 where nothing is true,
  each averaged, then F of the two means), which many MIMIC-III papers since CAML report.
* **labels**: `all` codes of the label set (caml-mimic averages over every column), or only
  `present` codes, those with a positive in the test split (Edin et al.'s filter_codes).

Micro-F does not depend on the macro or labels choice, only on the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from icdtransfer.evaluate.metrics import THRESHOLD_GRID, f_score, label_counts, prf, tune_threshold

Threshold = Literal["fixed", "tuned", "per_label"]
Macro = Literal["mean_f", "caml"]
Labels = Literal["all", "present"]
THRESHOLDS: tuple[Threshold, ...] = ("fixed", "tuned", "per_label")
MACROS: tuple[Macro, ...] = ("mean_f", "caml")
LABEL_SETS: tuple[Labels, ...] = ("all", "present")
THRESHOLD_TEXT = {
    "fixed": "fixed 0.5",
    "tuned": "global, tuned on validation",
    "per_label": "per label, tuned on validation",
}
MACRO_TEXT = {"mean_f": "mean of per-label F", "caml": "F of macro-P and macro-R (CAML)"}
LABELS_TEXT = {"all": "all codes", "present": "codes with a test positive"}


@dataclass(frozen=True)
class Protocol:
    threshold: Threshold
    macro: Macro
    labels: Labels

    @property
    def key(self) -> str:
        return f"{self.threshold},{self.macro},{self.labels}"

    @property
    def text(self) -> str:
        return (
            f"{THRESHOLD_TEXT[self.threshold]}; {MACRO_TEXT[self.macro]}; "
            f"{LABELS_TEXT[self.labels]}"
        )

    @classmethod
    def parse(cls, key: str) -> Protocol:
        """`threshold,macro,labels`, e.g. `per_label,caml,all`; ValueError naming the part."""
        parts = [p.strip() for p in key.split(",")]
        choices = (THRESHOLDS, MACROS, LABEL_SETS)
        if len(parts) != 3 or any(p not in c for p, c in zip(parts, choices, strict=False)):
            raise ValueError(
                f"protocol {key!r}: expected threshold,macro,labels with threshold one of "
                f"{'|'.join(THRESHOLDS)}, macro one of {'|'.join(MACROS)}, labels one of "
                f"{'|'.join(LABEL_SETS)}"
            )
        return cls(*parts)  # type: ignore[arg-type]


# The protocols named after who used them; `paper` is the headline of this project's reports.
NAMED = {
    "paper": Protocol("fixed", "mean_f", "all"),  # Rios & Kavuluru 2018: Macro-F over all L
    "caml": Protocol("fixed", "caml", "all"),  # Mullenbach et al. 2018 (caml-mimic)
    "edin": Protocol("tuned", "mean_f", "present"),  # Edin et al. 2023
}
HEADLINE = NAMED["paper"]


def every_protocol() -> list[Protocol]:
    return [Protocol(t, m, s) for t in THRESHOLDS for m in MACROS for s in LABEL_SETS]


def per_label_thresholds(y_val: np.ndarray, scores_val: np.ndarray) -> np.ndarray:
    """One threshold per label: the grid value with the best F of that label on validation
    (ties: lowest); labels without a validation positive get the global tuned threshold."""
    best_f = np.full(y_val.shape[1], -1.0)
    best_t = np.zeros(y_val.shape[1])
    for t in THRESHOLD_GRID:
        f = f_score(*label_counts(y_val, scores_val >= t))
        better = f > best_f
        best_f[better], best_t[better] = f[better], t
    no_positive = ~y_val.any(axis=0)
    best_t[no_positive] = tune_threshold(y_val, scores_val)
    return best_t


def thresholds(protocol_threshold: Threshold, y_val: np.ndarray, scores_val: np.ndarray):
    """The threshold (a float, or one per label) a protocol applies to test, from validation."""
    if protocol_threshold == "fixed":
        return 0.5
    if protocol_threshold == "tuned":
        return tune_threshold(y_val, scores_val)
    return per_label_thresholds(y_val, scores_val)


def macro_f(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, macro: Macro, keep: np.ndarray):
    """Macro-F from per-label counts (last axis: labels) over the labels `keep` (a boolean
    mask), by `macro`'s definition; 0 over an empty set."""
    if not keep.any():
        return np.zeros(np.shape(tp)[:-1]) if np.ndim(tp) > 1 else 0.0
    p, r, f = prf(tp[..., keep], fp[..., keep], fn[..., keep])
    if macro == "mean_f":
        return f.mean(axis=-1)
    mp, mr = p.mean(axis=-1), r.mean(axis=-1)
    den = mp + mr
    return np.divide(
        2 * mp * mr, den, out=np.zeros_like(np.asarray(den, dtype=float)), where=np.asarray(den) > 0
    )


def score(
    protocol: Protocol,
    y_val: np.ndarray,
    scores_val: np.ndarray,
    y_test: np.ndarray,
    scores_test: np.ndarray,
) -> dict[str, float]:
    """Micro-F and macro-F on test under one protocol (thresholds from validation only)."""
    cut = thresholds(protocol.threshold, y_val, scores_val)
    tp, fp, fn = label_counts(y_test, scores_test >= cut)
    keep = np.ones(y_test.shape[1], bool) if protocol.labels == "all" else y_test.any(axis=0)
    return {
        "micro_f": float(f_score(tp.sum(), fp.sum(), fn.sum())),
        "macro_f": float(macro_f(tp, fp, fn, protocol.macro, keep)),
        "labels_averaged": int(keep.sum()),
    }
