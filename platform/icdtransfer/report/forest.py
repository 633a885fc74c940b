"""The answer first: forest plots of every comparison's paired effect (report/verdicts.py),
and the tables in a form that fits the page.

One row per comparison (Table 2's variants against scratch, the ablation's values against
its reference, Table 3's best CNN against each baseline), at the threshold tuned on
validation (the headline): the observed difference on test in points, its 95% paired
bootstrap interval, the verdict on all seeds at Holm-adjusted 0.05 (colour) and whether the
two seed halves agreed (a filled marker: replicated; an open one: did not replicate).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from icdtransfer.report.verdicts import (
    BETTER,
    HEADLINE,
    NOT_REPLICATED,
    SEED_SETS,
    WORSE,
    verdict_text,
)

FOREST_DIV_ID = "fig-forest"
FOREST_ENDS_DIV_ID = "fig-forest-deciles"
LABELS = {
    "macro_f_all_labels": "macro-F, all codes (the paper's)",
    "micro_f": "micro-F",
    "rarest_macro_f": "macro-F, rarest 10% of codes",
    "frequent_macro_f": "macro-F, most frequent 10% of codes",
}
COLOURS = {BETTER: "#1e8449", WORSE: "#c0392b"}  # no detectable difference: grey
HEADLINE_ORDER = ("macro_f_all_labels", "micro_f")
ENDS_ORDER = ("rarest_macro_f", "frequent_macro_f")


def headline(comparisons: pd.DataFrame, kind: str = "tuned") -> pd.DataFrame:
    """The all-seeds comparisons at one threshold kind, in the figure's order."""
    if comparisons.empty:
        return comparisons
    frame = comparisons[
        (comparisons["seed_set"] == SEED_SETS[0]) & (comparisons["threshold_kind"] == kind)
    ]
    return frame.reset_index(drop=True)


def forest_figure(comparisons: pd.DataFrame, metrics: tuple[str, ...], title: str) -> go.Figure:
    frame = headline(comparisons)
    labels = [f"{r.system} vs {r.against}  [{r.family.split(':')[0]}]" for r in frame.itertuples()]
    fig = make_subplots(
        rows=1, cols=len(metrics), shared_yaxes=True, subplot_titles=[LABELS[m] for m in metrics]
    )
    for col, metric in enumerate(metrics, start=1):
        delta = frame[f"{metric}_delta"] * 100
        for verdict_value in (BETTER, WORSE, "no detectable difference"):
            for replicated in (True, False):
                mask = (frame[f"{metric}_verdict"] == verdict_value) & (
                    (frame[f"{metric}_replication"] != NOT_REPLICATED) == replicated
                )
                if not mask.any():
                    continue
                part = frame[mask]
                fig.add_scatter(
                    row=1,
                    col=col,
                    x=delta[mask],
                    y=[labels[i] for i in part.index],
                    mode="markers",
                    marker={
                        "color": COLOURS.get(verdict_value, "#7f8c8d"),
                        "size": 9,
                        "symbol": "circle" if replicated else "circle-open",
                    },
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": part[f"{metric}_delta_high"] * 100 - delta[mask],
                        "arrayminus": delta[mask] - part[f"{metric}_delta_low"] * 100,
                    },
                    name=verdict_value + ("" if replicated else f", {NOT_REPLICATED}"),
                    legendgroup=f"{verdict_value}{replicated}",
                    showlegend=col == 1,
                    hovertext=[verdict_text(r, metric) for _, r in part.iterrows()],
                )
        fig.add_vline(x=0, line_dash="dot", line_color="#555", row=1, col=col)
        fig.update_xaxes(title_text="difference on test (points)", row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title=title,
        height=max(320, 120 + 26 * len(frame)),
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def verdict_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Every all-seeds comparison's verdicts as printed (tuned threshold), both halves'
    verdicts beside it."""
    frame = headline(comparisons)
    if frame.empty:
        return frame
    halves = comparisons[
        (comparisons["seed_set"] != SEED_SETS[0]) & (comparisons["threshold_kind"] == "tuned")
    ]
    keys = ["family", "system", "against"]
    rows = []
    for _, row in frame.iterrows():
        out = {k: row[k] for k in keys}
        for metric in HEADLINE:
            out[f"{metric} (points)"] = (
                f"{100 * row[f'{metric}_delta']:+.1f} [{100 * row[f'{metric}_delta_low']:+.1f},"
                f" {100 * row[f'{metric}_delta_high']:+.1f}]"
            )
            out[f"{metric} verdict"] = verdict_text(row, metric)
            match = halves[(halves[keys] == row[keys]).all(axis=1)]
            out[f"{metric} halves"] = " / ".join(match[f"{metric}_verdict"]) or "-"
        if "gain_per_hour" in row:  # report/cost.py: the compared model's hours
            out["hours (vs reference)"] = (
                "-"
                if pd.isna(row["system_hours"])
                else f"{row['system_hours']:.3g}"
                + ("" if pd.isna(row["extra_hours"]) else f" ({row['extra_hours']:+.2g})")
            )
            out["macro-F points per hour"] = (
                "-" if pd.isna(row["gain_per_hour"]) else f"{row['gain_per_hour']:+.3g}"
            )
        rows.append(out)
    return pd.DataFrame(rows)


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """A table as the page shows it: each estimate and its interval in one cell ("37.6 [33.1,
    41.0]"); the CSV files keep the separate columns."""
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        if column.endswith("_ci") and column[:-3] in frame.columns:
            continue
        if f"{column}_ci" in frame.columns:
            out[column] = [
                "" if pd.isna(v) else f"{v:.1f} {ci}"
                for v, ci in zip(frame[column], frame[f"{column}_ci"], strict=True)
            ]
        else:
            out[column] = frame[column]
    return out.rename(columns=lambda c: c.replace("_", " "))
