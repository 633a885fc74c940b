"""The ablation's dashboard figures: test macro-F against each dimension, and the rarest and
most frequent decile against each dimension, with 95% intervals (report/ablation.py)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from icdtransfer.report.ablation import DECILES, Ablation
from icdtransfer.report.tables import UNCONVERGED_MARK, unconverged

SHOWN = "tuned"  # the threshold kind the figures show (ablation.csv has both)


def ablation_div_id(dimension: str) -> str:
    return f"fig-ablation-{dimension}"


DECILE_DIV_ID = "fig-ablation-deciles"


def _error(part: pd.DataFrame, metric: str) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": (part[f"{metric}_high"] - part[metric]) * 100,
        "arrayminus": (part[metric] - part[f"{metric}_low"]) * 100,
    }


def _ticks(part: pd.DataFrame) -> list[str]:
    """x labels: the value, `(ref)` at the reference, a dagger where not all converged."""
    return [
        f"{v}{' (ref)' if r else ''}{UNCONVERGED_MARK if u else ''}"
        for v, r, u in zip(part["value"], part["reference"], unconverged(part), strict=True)
    ]


def dimension_figure(ablation: Ablation, dimension: str) -> go.Figure:
    frame = ablation.scores
    part = frame[(frame["dimension"] == dimension) & (frame["threshold_kind"] == SHOWN)]
    fig = go.Figure()
    metric = "macro_f_all_labels"
    for derived, label in ((False, "the trial"), (True, "its single models (mean over seeds)")):
        line = part[part["derived"] == derived]
        if line.empty:
            continue
        if dimension != "ensemble_size" and not derived:
            size = int(line["ensemble_size"].max())
            label += f" (ensemble of {size})" if size > 1 else " (single model, mean over seeds)"
        fig.add_scatter(
            x=_ticks(line), y=line[metric] * 100, error_y=_error(line, metric),
            mode="lines+markers", name=label, hovertext=line["system"],
        )  # fmt: skip
    fig.update_layout(
        title=f"Ablation {ablation.study}: test macro-F (all codes) by {dimension} (other"
        " dimensions at the reference; tuned threshold, 95% CI)",
        xaxis={"title": dimension, "type": "category"},
        yaxis_title="macro-F (points)",
    )
    return fig


def decile_figure(ablation: Ablation) -> go.Figure:
    """One panel per dimension; the rarest and the most frequent 10% of codes."""
    dims = ablation.dimensions
    fig = make_subplots(rows=1, cols=len(dims), subplot_titles=dims, shared_yaxes=True)
    scores = ablation.scores
    frame = scores[(scores["threshold_kind"] == SHOWN) & ~scores["derived"]]  # the trials
    for col, dimension in enumerate(dims, start=1):
        part = frame[frame["dimension"] == dimension]
        for i, (decile, label) in enumerate(DECILES.items()):
            metric = f"{label}_decile_macro_f_all_labels"
            fig.add_scatter(
                x=_ticks(part), y=part[metric] * 100, error_y=_error(part, metric),
                mode="lines+markers", name=f"decile {decile} ({label.replace('_', ' ')} 10%)",
                legendgroup=label, showlegend=col == 1, marker={"color": ("#d62728", "#1f77b4")[i]},
                row=1, col=col,
            )  # fmt: skip
        fig.update_xaxes(type="category", row=1, col=col)
    fig.update_layout(
        title=f"Ablation {ablation.study}: macro-F (all codes) of the rarest and the most"
        " frequent 10% of codes, by dimension (tuned threshold, 95% CI)",
        yaxis_title="macro-F (points)",
        height=460,
    )
    return fig
