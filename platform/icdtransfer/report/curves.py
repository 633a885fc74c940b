"""Learning curves of the report study's members: validation macro-F and training loss by
epoch, one figure per variant, seeds overlaid, each member's best epoch marked (the epoch
whose weights it kept). Read from each member's history.json and member.json."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from icdtransfer.artifacts import read_history
from icdtransfer.report.systems import System


def curve_div_id(variant: str) -> str:
    return f"fig-curves-{variant}"


def curve_figures(systems: list[System]) -> dict[str, go.Figure]:
    """variant -> its figure, for the single-model systems (they hold every seed)."""
    figures = {}
    for system in systems:
        if system.baseline or system.ensemble_size != 1 or not system.folders:
            continue
        fig = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.08,
            subplot_titles=("validation macro-F (tuned threshold)", "training loss"),
        )
        for i, (seed, folder, training) in enumerate(
            zip(system.seeds, system.folders, system.trainings, strict=True)
        ):
            history = read_history(folder)
            color = qualitative.Plotly[i % len(qualitative.Plotly)]
            ended = "" if training is None or training.converged else ", epoch cap: not converged"
            name = f"seed {seed}{ended}"
            line = {"color": color, "dash": "solid" if not ended else "dot"}
            fig.add_scatter(
                x=history["epoch"], y=history["val_macro_f"] * 100, mode="lines+markers",
                name=name, legendgroup=name, line=line, row=1, col=1,
            )  # fmt: skip
            fig.add_scatter(
                x=history["epoch"], y=history["train_loss"], mode="lines+markers",
                name=name, legendgroup=name, line=line, showlegend=False, row=2, col=1,
            )  # fmt: skip
            if training is not None:
                best = history[history["epoch"] == training.best_epoch]
                fig.add_scatter(
                    x=best["epoch"], y=best["val_macro_f"] * 100, mode="markers",
                    marker={"symbol": "star", "size": 14, "color": color},
                    name=f"seed {seed}: best epoch {training.best_epoch}",
                    legendgroup=name, row=1, col=1,
                )  # fmt: skip
        fig.update_layout(
            title=f"Learning curves: {system.variant} ({system.paper}), seeds overlaid;"
            " star = best epoch (the weights kept)",
            height=560,
        )
        fig.update_yaxes(title_text="macro-F (points)", row=1, col=1)
        fig.update_yaxes(title_text="loss", row=2, col=1)
        fig.update_xaxes(title_text="epoch", dtick=1 if len(history) <= 20 else None, row=2, col=1)
        figures[system.variant] = fig
    return figures
