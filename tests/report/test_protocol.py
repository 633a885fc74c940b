"""The protocol-sensitivity panel (issue 21): the report's comparisons under every protocol.

A transfer variant whose probabilities are exactly half of scratch's ranks every document
and code the same: at any threshold tuned on validation it predicts exactly what scratch
predicts (no difference), while at the fixed 0.5 it predicts almost nothing (worse). Its
verdict must therefore change with the threshold and with nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest

from icdtransfer.report.aggregate import TABLE2, TABLE3, build_report
from icdtransfer.report.protocol import (
    HEADLINE,
    MEASURES,
    PANEL_ID,
    TABLE_ID,
    Measure,
    protocol_section,
    sensitivity,
    wide_table,
)
from icdtransfer.report.systems import Gold, System
from icdtransfer.report.verdicts import on_all_seeds

REPLICATES = 200


def _gold_and_systems() -> tuple[Gold, list[System]]:
    rng = np.random.default_rng(0)
    n_labels = 12
    frequency = np.arange(n_labels, 0, -1) * 10

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.random((n, n_labels)) < 0.25
        raw = np.clip(0.55 * y + 0.45 * rng.random((n, n_labels)), 0, 0.99)
        # values 0.005 + 0.02k: halved (0.0025 + 0.01k) they stay between grid points too,
        # so "> t" picks the same documents for scratch at t as for half of it at t / 2
        scores = (0.005 + 0.02 * np.floor(raw / 0.02)).astype(np.float32)
        return y, scores

    (y_val, s_val), (y_test, s_test) = split(150), split(200)
    gold = Gold(y_val, y_test, frequency, [f"C{j}" for j in range(n_labels)])
    lr_val = np.clip(s_val + rng.normal(0, 0.3, s_val.shape), 0, 1).astype(np.float32)
    lr_test = np.clip(s_test + rng.normal(0, 0.3, s_test.shape), 0, 1).astype(np.float32)
    systems = [
        System("LR", "lr", "LR", 1, [(lr_val, lr_test)], baseline=True),
        System("scratch", "scratch", "CNN", 1, [(s_val, s_test)], seeds=[1]),
        System("tune_all", "tune_all", "CNN tuned", 1, [(s_val / 2, s_test / 2)], seeds=[1]),
    ]
    return gold, systems


@pytest.fixture(scope="module")
def panel():
    gold, systems = _gold_and_systems()
    report = build_report(systems, gold, REPLICATES, 0, "validation")
    return report, systems, gold, sensitivity(report, systems, gold, REPLICATES, 0)


def test_a_verdict_that_depends_on_the_threshold_is_flagged(panel) -> None:
    _, _, _, frame = panel
    row = frame[(frame["family"] == TABLE2) & (frame["comparison"] == "tune_all vs scratch")]
    by = row.set_index("measure")
    for measure in MEASURES:
        got = by.loc[measure.key]
        if measure.protocol.threshold == "fixed":
            assert got["verdict"] == "-" and got["changed"], measure.key
        else:  # tuned on validation, globally or per label: the same predictions
            assert got["delta"] == 0 and got["verdict"] == "=" and not got["changed"]
    assert by.loc[Measure("macro_f", HEADLINE).key, "headline_verdict"] == "="


def test_headline_deltas_are_the_reports(panel) -> None:
    """Under the headline protocol the panel's differences are the report's p-value table's."""
    report, _, _, frame = panel
    pvalues = on_all_seeds(report.pvalues)
    pvalues = pvalues[pvalues["threshold_kind"] == "tuned"]
    assert set(pvalues["family"]) >= {TABLE2, TABLE3}
    for row in pvalues[pvalues["family"].isin([TABLE2, TABLE3])].itertuples():
        mine = frame[(frame["family"] == row.family)]
        mine = mine[mine["comparison"] == f"{row.system} vs {row.against}"].set_index("measure")
        macro = mine.loc[Measure("macro_f", HEADLINE).key, "delta"]
        micro = mine.loc[Measure("micro_f", HEADLINE).key, "delta"]
        assert macro == pytest.approx(row.macro_f_all_labels_delta, abs=1e-12)
        assert micro == pytest.approx(row.micro_f_delta, abs=1e-12)


def test_table_and_figure_show_every_comparison(panel) -> None:
    report, systems, gold, frame = panel
    wide = wide_table(frame)
    assert len(wide) == frame.groupby(["family", "comparison"]).ngroups == 2  # T2 + T3 (LR)
    changed = wide.set_index("comparison")["verdicts changed"]
    assert changed["tune_all vs scratch"] == 5  # 4 fixed macro-F protocols + fixed micro-F
    html = protocol_section(report, systems, gold, REPLICATES, 0, lambda fig, i: f"<div id={i}>")
    assert f"id={PANEL_ID}" in html and f"id='{TABLE_ID}'" in html
    flipped = int((changed > 0).sum())
    assert f"{flipped} of 2 comparisons change verdict" in html


def test_headline_verdicts_are_the_reports_own(panel) -> None:
    """The panel's headline cells are the verdict table's (same p, Holm p and verdict), so the
    panel never contradicts the forest plot it is read beside."""
    report, _, _, frame = panel
    pvalues = on_all_seeds(report.pvalues)
    pvalues = pvalues[pvalues["threshold_kind"] == "tuned"]
    sign = {"better": "+", "worse": "-", "no detectable difference": "="}
    checked = 0
    for row in pvalues[pvalues["family"].isin([TABLE2, TABLE3])].itertuples():
        mine = frame[(frame["family"] == row.family)]
        mine = mine[mine["comparison"] == f"{row.system} vs {row.against}"].set_index("measure")
        for metric, column in (("macro_f", "macro_f_all_labels"), ("micro_f", "micro_f")):
            got = mine.loc[Measure(metric, HEADLINE).key]
            assert got["p_holm"] == getattr(row, f"{column}_p_holm")
            assert got["verdict"] == sign[getattr(row, f"{column}_verdict")]
            checked += 1
    assert checked == 4


def test_holm_pairs_each_macro_protocol_with_micro_at_its_threshold() -> None:
    """Two comparisons: macro-F (fixed, CAML, all) p = 0.01 and 0.04, micro-F fixed p = 0.02
    and 0.03. Holm over those four: 0.04, 0.06, 0.06, 0.06 (sorted 0.01, 0.02, 0.03, 0.04 x
    4, 3, 2, 1, made monotone)."""
    from icdtransfer.evaluate.protocols import Protocol
    from icdtransfer.report.protocol import _adjust

    def rows(measure: Measure, ps: list[float]) -> list[dict]:
        return [{"measure": measure.key, "p": p, "delta": 0.1} for p in ps]

    caml = Measure("macro_f", Protocol("fixed", "caml", "all"))
    micro = Measure("micro_f", Protocol("fixed", "mean_f", "all"))
    part = {m.key: rows(m, [0.5, 0.5]) for m in MEASURES}
    part[caml.key] = rows(caml, [0.01, 0.04])
    part[micro.key] = rows(micro, [0.02, 0.03])
    _adjust(part)
    assert [r["p_holm"] for r in part[caml.key]] == pytest.approx([0.04, 0.06])
    assert [r["verdict"] for r in part[caml.key]] == ["+", "="]
    # micro-F's own is the one beside macro-F (fixed, mean, all): p 0.5, 0.5, 0.02, 0.03 give
    # 0.08, 0.09 (0.02 x 4, 0.03 x 3)
    assert [r["p_holm"] for r in part[micro.key]] == pytest.approx([0.08, 0.09])
