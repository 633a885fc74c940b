"""Metrics worked out by hand, and checked against scikit-learn on random matrices."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from icdtransfer.evaluate.metrics import (
    decile_macro_f,
    evaluate,
    frequency_deciles,
    precision_at_k,
    scores_at,
    tune_threshold,
)

# 3 documents x 4 labels. Label 3 has no positive in this split.
Y = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 0]], dtype=bool)
P = np.array([[1, 0, 0, 1], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=bool)


def test_hand_computed_micro_and_macro() -> None:
    # label 0: TP 2, FP 1, FN 0 -> P 2/3, R 1, F 0.8
    # label 1: TP 1, FP 0, FN 1 -> P 1, R 1/2, F 2/3
    # label 2: TP 0, FP 0, FN 1 -> F 0
    # label 3: TP 0, FP 1, FN 0 -> no positive in the split
    s = scores_at(Y, P)
    assert s.micro_p == pytest.approx(3 / 5)  # TP 3, FP 2
    assert s.micro_r == pytest.approx(3 / 5)  # FN 2
    assert s.micro_f == pytest.approx(3 / 5)
    assert s.macro_f == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert s.macro_f_all_labels == pytest.approx((0.8 + 2 / 3 + 0 + 0) / 4)
    assert s.macro_p == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert s.macro_r == pytest.approx((1 + 0.5 + 0) / 3)
    # the F of mean P and mean R (an inflating formula) is not what macro_f is
    mp, mr = s.macro_p, s.macro_r
    assert s.macro_f != pytest.approx(2 * mp * mr / (mp + mr))


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn_on_random_matrices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random((60, 25)) < rng.uniform(0.02, 0.3, size=25)
    y[:, 3] = False  # a label with no positive
    pred = rng.random((60, 25)) < 0.2
    s = scores_at(y, pred)
    present = np.flatnonzero(y.any(axis=0))
    assert s.micro_f == pytest.approx(f1_score(y, pred, average="micro", zero_division=0), abs=1e-9)
    assert s.micro_p == pytest.approx(
        precision_score(y, pred, average="micro", zero_division=0), abs=1e-9
    )
    assert s.micro_r == pytest.approx(
        recall_score(y, pred, average="micro", zero_division=0), abs=1e-9
    )
    assert s.macro_f == pytest.approx(
        f1_score(y, pred, average="macro", labels=present, zero_division=0), abs=1e-9
    )
    assert s.macro_f_all_labels == pytest.approx(
        f1_score(y, pred, average="macro", zero_division=0), abs=1e-9
    )


def test_deciles_by_hand() -> None:
    freq = np.array([50, 3, 7, 1, 20, 9, 2, 100, 5, 30, 4, 8])  # 12 labels -> groups of 2,2,1...
    groups = frequency_deciles(freq)
    assert len(groups) == 10
    # rarest first: 1 (label 3), 2 (6), 3 (1), 4 (10), 5 (8), 7 (2), 8 (11), 9 (5), 20 (4), ...
    assert groups[0].tolist() == [3, 6]
    assert groups[1].tolist() == [1, 10]
    assert groups[2].tolist() == [8]
    assert groups[-1].tolist() == [7]
    assert sorted(np.concatenate(groups).tolist()) == list(range(12))
    y = np.zeros((2, 12), dtype=bool)
    y[0, 3] = y[1, 7] = True
    pred = y.copy()
    deciles = decile_macro_f(y, pred, freq)
    assert deciles[0] == 1.0 and deciles[-1] == 1.0  # labels 3 and 7 are right
    assert deciles[1] is None  # no positive among labels 1 and 10
    over_all = decile_macro_f(y, pred, freq, "all")  # the paper's convention, per decile
    assert over_all[0] == 0.5 and over_all[1] == 0.0 and over_all[-1] == 1.0  # 1 of 2, 0 of 2


def test_threshold_precision_at_k_and_evaluate() -> None:
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    scores = np.array([[0.3, 0.2, 0.1], [0.1, 0.35, 0.2], [0.4, 0.25, 0.05]])
    t = tune_threshold(y, scores)
    assert 0.2 < t <= 0.25  # every positive scores above t, every negative at or below 0.2
    assert scores_at(y, scores >= t).micro_f == 1.0
    assert precision_at_k(y, scores, 1) == pytest.approx(1.0)
    assert precision_at_k(y, scores, 2) == pytest.approx((1 / 2 + 1 / 2 + 2 / 2) / 3)
    m = evaluate(y, scores, y, scores, np.array([5, 3, 1]))
    assert m.tuned.threshold == t and m.tuned.micro_f == 1.0
    assert m.fixed.threshold == 0.5 and m.fixed.micro_f == 0.0
    assert "macro_f" in m.macro_convention and m.labels_with_positives == 2
    assert m.micro_auc == 1.0
