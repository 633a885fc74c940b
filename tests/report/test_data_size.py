"""report/data_size.py's crossing: where a gain over scratch, linear in log training size,
first falls to zero (docs/DESIGN.md section 4, "Training size")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icdtransfer.report.data_size import NOT_WITHIN, Crossing, crossing

SIZES = [0.1, 0.25, 0.5, 1.0]


def test_the_crossing_is_interpolated_in_log_size() -> None:
    value, why = crossing(SIZES, np.array([0.2, 0.1, -0.1, -0.2]))
    assert why == ""
    assert value == pytest.approx(math.sqrt(0.25 * 0.5))  # halfway in log between 25% and 50%
    value, _ = crossing(SIZES, np.array([0.3, 0.0, 0.1, -0.1]))  # the first fall counts
    assert value == pytest.approx(0.25)


def test_no_crossing_says_why() -> None:
    assert crossing(SIZES, np.array([0.1, 0.1, 0.2, 0.05])) == (
        None,
        "a gain at every size up to 100%",
    )
    assert crossing(SIZES, np.array([-0.1, 0.2, 0.1, 0.05])) == (
        None,
        "no gain at the smallest size, 10%",
    )


def test_a_gain_that_is_not_a_number_gives_no_crossing() -> None:
    # NaN compares false both ways: it must not read as "a gain at every size"
    value, why = crossing(SIZES, np.array([math.nan, 0.1, 0.1, 0.1]))
    assert value is None and why.startswith("undetermined")
    reps = np.array([[0.1, math.nan, -0.1, -0.1], [0.1, 0.1, -0.1, -0.1]])
    out = crossing(SIZES, reps)[0]
    assert math.isnan(out[0]) and out[1] == pytest.approx(math.sqrt(0.25 * 0.5))
    text = Crossing("tune_all", 0.35, math.nan, math.nan).text(SIZES, {})
    assert text.endswith("95% interval undetermined (a replicate's gain is not a number)")


def test_replicates_without_a_crossing_are_censored_at_either_end() -> None:
    reps = np.array([[0.1, 0.1, 0.1, 0.1], [-0.1, 0.1, 0.1, 0.1], [0.1, 0.1, -0.1, -0.1]])
    out = crossing(SIZES, reps)[0]
    assert out[0] == math.inf and out[1] == -math.inf
    assert out[2] == pytest.approx(math.sqrt(0.25 * 0.5))


def test_crossing_texts_name_sizes_documents_and_open_ends() -> None:
    documents = {0.1: 20.0, 0.25: 50.0, 0.5: 100.0, 1.0: 200.0}
    text = Crossing("tune_all", 0.5, 0.25, math.inf).text(SIZES, documents)
    assert text == (
        "tune_all: the gain crosses zero at 50% of the training patients (~100 training"
        " documents); 95% interval 25% to above 100%"
    )
    assert "undetermined" not in text
    wide = Crossing("tune_all", 0.5, -math.inf, math.inf).text(SIZES, documents)
    assert wide.endswith(
        "below 10% to above 100% (undetermined: the interval spans every size run)"
    )
    low = Crossing("tune_all", 0.3, -math.inf, 0.5).text(SIZES, {})
    assert "interval below 10% to 50%" in low and "documents" not in low
    none = Crossing("tune_all", None, -math.inf, math.inf, "a gain at every size up to 100%")
    assert (
        none.text(SIZES, documents) == f"tune_all: {NOT_WITHIN} (a gain at every size up to 100%)"
    )
