"""The paper's Tables 2 and 3 as data frames (points x100), and their captions.

Column conventions, shared by both tables:

* `macro_f_all_labels` is the paper's Macro-F (1/L x the sum of per-code F over all L codes),
  the one to compare with the paper; `macro_f` averages the codes with a positive in the test
  split. `*_ci` are 95% bootstrap intervals.
* `seeds`: how many single models the row stands on (the mean of them, or their ensemble).
* `*_p_vs_*`: paired-bootstrap p-value of the observed difference, Holm-adjusted across the
  table's p-values, printed as "< x" when only a bound is known (no replicate crossed zero).
"""

from __future__ import annotations

import pandas as pd

from icdtransfer.artifacts import THRESHOLD_TEXT
from icdtransfer.model.transfer import VARIANTS
from icdtransfer.report.aggregate import (
    REFERENCE,
    TABLE2,
    TABLE3,
    Report,
    converged_text,
    table3_systems,
)
from icdtransfer.report.bootstrap import format_p
from icdtransfer.report.paper import PAPER_NOTE, PAPER_UKLARGE
from icdtransfer.report.verdicts import NOT_REPLICATED, on_all_seeds


def _ci(frame: pd.DataFrame, metric: str) -> list[str]:
    return [
        f"[{lo * 100:.1f}, {hi * 100:.1f}]"
        for lo, hi in zip(frame[f"{metric}_low"], frame[f"{metric}_high"], strict=True)
    ]


def _p(report: Report, kind: str, family: str, metric: str) -> dict[str, str]:
    """system -> the printed Holm-adjusted p-value of its comparison in `family`."""
    rows = on_all_seeds(report.pvalues)
    if rows.empty:
        return {}
    rows = rows[(rows["threshold_kind"] == kind) & (rows["family"] == family)]
    return {r["system"]: _p_text(r, metric) for _, r in rows.iterrows()}


def _p_text(row: pd.Series, metric: str) -> str:
    """A Holm-adjusted p-value as printed, with 'did not replicate' when the halves' verdicts
    disagree."""
    text = format_p(row[f"{metric}_p_holm"])
    if row.get(f"{metric}_replication") == NOT_REPLICATED:
        text += f" ({NOT_REPLICATED})"
    return text


def _family_size(report: Report, kind: str, family: str) -> int:
    rows = on_all_seeds(report.pvalues)
    if rows.empty:
        return 0
    rows = rows[(rows["threshold_kind"] == kind) & (rows["family"] == family)]
    return int(rows["family_size_headline"].iloc[0]) if len(rows) else 0


UNCONVERGED_MARK = " \u2020"  # a dagger after the method of a row not every member converged


def unconverged(frame: pd.DataFrame) -> pd.Series:
    """Rows with a member that reached its epoch cap before early stopping fired."""
    return frame["members_converged"] < frame["members_recorded"]


def _columns(frame: pd.DataFrame) -> dict[str, object]:
    return {
        "method": frame["paper"] + unconverged(frame).map({True: UNCONVERGED_MARK, False: ""}),
        "variant": frame["variant"],
        "ensemble_size": frame["ensemble_size"],
        "seeds": frame["seeds"],
        "converged": [
            converged_text(c, r)
            for c, r in zip(frame["members_converged"], frame["members_recorded"], strict=True)
        ],
    }


def table2(report: Report, kind: str) -> pd.DataFrame:
    """The paper's Table 2: variants as single models (mean over seeds), then as ensembles
    (AVG), each against scratch of the same ensemble size."""
    frame = report.scores[
        (report.scores["threshold_kind"] == kind) & ~report.scores["baseline"]
    ].copy()
    order = {name: i for i, name in enumerate(VARIANTS)}
    frame["_order"] = frame["variant"].map(order) + 100 * frame["ensemble_size"]
    frame = frame.sort_values("_order", kind="stable")
    micro_p, macro_p = (_p(report, kind, TABLE2, m) for m in ("micro_f", "macro_f_all_labels"))
    spread = frame.get("seed_sd_macro_f_all_labels", pd.Series(float("nan"), index=frame.index))
    out = pd.DataFrame(
        {
            **_columns(frame),
            "micro_f": frame["micro_f"] * 100,
            "micro_f_ci": _ci(frame, "micro_f"),
            "micro_f_p_vs_scratch": frame["system"].map(micro_p).fillna(""),
            "macro_f_all_labels": frame["macro_f_all_labels"] * 100,
            "macro_f_all_labels_ci": _ci(frame, "macro_f_all_labels"),
            "macro_f": frame["macro_f"] * 100,
            "macro_f_ci": _ci(frame, "macro_f"),
            "macro_f_p_vs_scratch": frame["system"].map(macro_p).fillna(""),
            "seed_sd_macro_f_all_labels": spread * 100,
        }
    )
    return out.reset_index(drop=True)


def table3(report: Report, kind: str) -> pd.DataFrame:
    """The paper's Table 3: the baselines (LR, LR + L2R, LR + L2R + NERC), the CNN without
    transfer and the transfer variant chosen on validation (or fixed in advance), single and
    ensemble, with the gain over LR in points (the paper's "%-Increase"); on baseline rows the
    best CNN's (chosen on validation) gain over that baseline and its p-value; and the paper's
    UKLarge numbers beside ours."""
    frame = report.scores[report.scores["threshold_kind"] == kind].set_index("system")
    table = frame.loc[table3_systems(report.scores, kind, report.choices[kind])].reset_index()
    ref = frame.loc[REFERENCE] if REFERENCE in frame.index else None
    versus = on_all_seeds(report.pvalues)
    if not versus.empty:
        versus = versus[(versus["threshold_kind"] == kind) & (versus["family"] == TABLE3)]
        versus = versus.set_index("against")
    against = table["system"].map(versus["system"]) if len(versus) else None
    paper = [
        PAPER_UKLARGE.get((v, int(n)))
        for v, n in zip(table["variant"], table["ensemble_size"], strict=True)
    ]

    def gain(metric: str) -> pd.Series:
        if ref is None:
            return pd.Series(float("nan"), index=table.index)
        return (table[metric] - ref[metric]) * 100

    def versus_column(column: str) -> pd.Series:
        if against is None:
            return pd.Series(float("nan"), index=table.index)
        return table["system"].map(versus[column]) * 100

    return pd.DataFrame(
        {
            **_columns(table),
            "micro_f": table["micro_f"] * 100,
            "micro_f_ci": _ci(table, "micro_f"),
            "micro_f_gain_over_lr": gain("micro_f"),
            "macro_f_all_labels": table["macro_f_all_labels"] * 100,
            "macro_f_all_labels_ci": _ci(table, "macro_f_all_labels"),
            "macro_f_all_labels_gain_over_lr": gain("macro_f_all_labels"),
            "macro_f": table["macro_f"] * 100,
            "macro_f_ci": _ci(table, "macro_f"),
            "best_cnn": against.fillna("") if against is not None else "",
            "best_cnn_micro_f_gain": versus_column("micro_f_delta"),
            "best_cnn_micro_f_p": _on_baseline_rows(table, report, kind, "micro_f"),
            "best_cnn_macro_f_all_labels_gain": versus_column("macro_f_all_labels_delta"),
            "best_cnn_macro_f_p": _on_baseline_rows(table, report, kind, "macro_f_all_labels"),
            "paper_uklarge_micro_f": [x[0] if x else float("nan") for x in paper],
            "paper_uklarge_macro_f": [x[1] if x else float("nan") for x in paper],
        }
    )


def _on_baseline_rows(table: pd.DataFrame, report: Report, kind: str, metric: str) -> pd.Series:
    """On each baseline row, the printed Holm-adjusted p-value of the best CNN against it."""
    rows = on_all_seeds(report.pvalues)
    printed: dict[str, str] = {}
    if not rows.empty:
        rows = rows[(rows["threshold_kind"] == kind) & (rows["family"] == TABLE3)]
        printed = {r["against"]: _p_text(r, metric) for _, r in rows.iterrows()}
    return table["system"].map(printed).fillna("")


def _common(report: Report, kind: str) -> str:
    return (
        f"Test split ({report.documents} documents). Threshold: {THRESHOLD_TEXT[kind]}."
        f" macro_f_all_labels is the paper's Macro-F (1/L x the sum of per-code F over all"
        f" L={report.labels} codes, F=0 where undefined): compare this one with the paper;"
        f" macro_f averages the {report.labels_present} codes with a positive in the test split."
        " F-scores in points (x100). Single-model rows: the mean over the study's seeds"
        " (column seeds), each model at its own threshold. AVG rows: the mean over every"
        " ensemble of that many of those seeds. 95% intervals from"
        f" {report.replicates} bootstrap replicates that half-sample the seeds and resample"
        " test patients (all of a patient's notes together), so every row's interval holds"
        " seed-to-seed spread. Intervals average over a fixed label set. scratch (CNN"
        " without transfer) has the same architecture as the transfer variants, adaptation"
        " layer included (the project's choice; the paper does not say whether its CNN"
        " baseline has one)."
        + _convergence_note(report, kind)
    )


def _convergence_note(report: Report, kind: str) -> str:
    frame = report.scores[report.scores["threshold_kind"] == kind]
    marked = int(unconverged(frame).sum())
    return (
        " converged: the row's members whose early stopping fired (patience epochs without a"
        " better validation macro-F) / its members; a member that reached the epoch cap first"
        f" did not converge.{UNCONVERGED_MARK.strip()} marks a row with such a member (its"
        f" numbers may understate the configuration): {marked} of the report's {len(frame)}"
        " systems."
    )


def _p_note(report: Report, kind: str, family: str, against: str) -> str:
    return (
        f" p-values: paired bootstrap (same patients) of the observed difference against"
        f" {against}, (1 + m) / (B + 1) two-sided (never 0), Holm-adjusted across the"
        f" table's {_family_size(report, kind, family)} p-values (micro and macro). Every"
        " comparison is also made on each of two disjoint halves of the seeds; '(did not"
        " replicate)': the halves' verdicts at Holm-adjusted 0.05 differ. The macro p-value"
        " holds for both macro conventions (on a fixed label set they differ by a constant"
        " factor)."
    )


def caption2(report: Report, kind: str) -> str:
    return (
        _common(report, kind)
        + " seed_sd: standard deviation of macro_f_all_labels over the seeds' single models."
        + _p_note(report, kind, TABLE2, "scratch of the same ensemble size")
    )


def caption3(report: Report, kind: str) -> str:
    return (
        _common(report, kind)
        + f" Transfer variant shown: {report.choices[kind].how}; nothing in this table is"
        " chosen on test. *_gain_over_lr: the observed difference from LR in points (the"
        " paper's %-Increase). best_cnn: the CNN system with the best validation macro-F;"
        " best_cnn_*_gain: its observed gain over the row's baseline."
        + _p_note(report, kind, TABLE3, "each baseline")
        + f" {PAPER_NOTE}; their macro-F is the paper's, comparable with macro_f_all_labels."
    )
