"""reports/dashboard.html: one self-contained file (plotly.js embedded, nothing fetched), so it
opens offline on a closed hospital network.

Sections: the members' convergence (a warning listing every member the epoch cap stopped
before early stopping fired), overview, Table 2 and Table 3 with intervals, the report
study's learning curves, macro-F by frequency decile, the protocol-sensitivity panel
(report/protocol.py), the ablation study's macro-F against
each dimension and per decile, the label frequency distribution, and per study a sortable
trial table; for Optuna studies also Optuna's parameter importances, parallel coordinates and
optimisation history. Only ids,
codes and numbers appear: never note text (not even code descriptions, which notes quote).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from icdtransfer.artifacts import THRESHOLD_KINDS
from icdtransfer.config import ReportConfig
from icdtransfer.data.corpus import Corpus
from icdtransfer.report.ablation import Ablation
from icdtransfer.report.ablation_view import (
    DECILE_DIV_ID,
    ablation_div_id,
    dimension_figure,
)
from icdtransfer.report.ablation_view import decile_figure as ablation_decile_figure
from icdtransfer.report.aggregate import BEST, TESTED, Report
from icdtransfer.report.bootstrap import format_p
from icdtransfer.report.convergence import Convergence
from icdtransfer.report.cost import Costs, cost_section, costed_like
from icdtransfer.report.curves import curve_div_id, curve_figures
from icdtransfer.report.data_size import DataSize, data_size_section
from icdtransfer.report.forest import (
    ENDS_ORDER,
    FOREST_DIV_ID,
    FOREST_ENDS_DIV_ID,
    HEADLINE_ORDER,
    compact,
    forest_figure,
    verdict_table,
)
from icdtransfer.report.page import ERROR_PROBE, SORTER, STYLE
from icdtransfer.report.protocol import protocol_section
from icdtransfer.report.systems import Gold, System
from icdtransfer.report.tables import caption2, caption3, table2, table3
from icdtransfer.report.verdicts import on_all_seeds, verdict_text
from icdtransfer.rows import read_trials, test_column

log = logging.getLogger(__name__)

@dataclass
class Views:
    """What the dashboard shows besides the report's tables."""

    systems: list[System]  # the report study's (learning curves)
    convergence: Convergence  # every study's members
    ablation: Ablation | None
    report_systems: list[System] = field(default_factory=list)  # all, baselines too (protocols)
    gains_by: list[DataSize] = field(default_factory=list)  # by training size, pooling
    costs: Costs | None = None  # set with verdicts by render.run_report
    verdicts: pd.DataFrame | None = None  # every comparison, with its cost (verdicts.csv)


def _table(frame: pd.DataFrame, sortable: bool = False, digits: int = 1) -> str:
    def fmt(value: object) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.{digits}f}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    cls = ' class="sortable"' if sortable else ""
    table = f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _figure(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 60})
    return fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False}
    )


def table2_figure(report: Report) -> go.Figure:
    """The paper-comparable macro-F of every variant, single models and ensembles."""
    frame = report.scores[(report.scores["threshold_kind"] == "tuned") & ~report.scores["baseline"]]
    fig = go.Figure()
    for label, part in (
        ("single model (mean over seeds)", frame[frame["ensemble_size"] == 1]),
        ("ensemble", frame[frame["ensemble_size"] > 1]),
    ):
        if part.empty:
            continue
        value = part["macro_f_all_labels"] * 100
        fig.add_bar(
            x=part["variant"],
            y=value,
            name=f"macro-F, {label}",
            error_y={
                "type": "data",
                "symmetric": False,
                "array": part["macro_f_all_labels_high"] * 100 - value,
                "arrayminus": value - part["macro_f_all_labels_low"] * 100,
            },
        )
    fig.update_layout(
        title="Macro-F over all codes (the paper's) by transfer variant (tuned threshold, 95% CI)",
        barmode="group",
        yaxis_title="macro-F (points)",
    )
    return fig


def pvalue_table(report: Report) -> pd.DataFrame:
    """The paired comparisons as printed: observed differences in points, Holm-adjusted p."""
    frame = on_all_seeds(report.pvalues)
    out = frame[["threshold_kind", "family", "system", "against"]].copy()
    for metric in TESTED:
        out[f"{metric}_delta"] = frame[f"{metric}_delta"] * 100
        out[f"{metric}_p_holm"] = [format_p(p) for p in frame[f"{metric}_p_holm"]]
        out[f"{metric}_verdict"] = [verdict_text(r, metric) for _, r in frame.iterrows()]
    return out


def decile_figure(report: Report) -> go.Figure:
    frame = report.deciles[report.deciles["threshold_kind"] == "tuned"]
    fig = go.Figure()
    for system, part in frame.groupby("system", sort=False):
        fig.add_scatter(
            x=part["decile"],
            y=part["macro_f_all_labels"] * 100,
            mode="lines+markers",
            name=system,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (part["macro_f_all_labels_high"] - part["macro_f_all_labels"]) * 100,
                "arrayminus": (part["macro_f_all_labels"] - part["macro_f_all_labels_low"]) * 100,
                "visible": False,
            },
        )
    fig.update_layout(
        title="Macro-F over all codes of each label-frequency decile (1 = rarest 10% of codes)",
        xaxis={"title": "decile", "dtick": 1},
        yaxis_title="macro-F (points)",
    )
    return fig


def frequency_figure(report: Report) -> go.Figure:
    freq = report.frequency
    fig = go.Figure(
        go.Bar(
            x=freq["rank"],
            y=freq["train_frequency"],
            hovertext=freq["code"],
            name="training documents",
        )
    )
    fig.update_layout(
        title="Code frequency distribution (training documents per code)",
        xaxis_title="code rank",
        yaxis={"title": "documents", "type": "log"},
    )
    return fig


def answer_section(
    report: Report, ablation: Ablation | None, costed: pd.DataFrame | None = None
) -> str:
    """The page's first figures: every comparison's paired effect, verdict and replication;
    the table also each comparison's cost where `costed` (verdicts.csv's rows) is given."""
    parts = [report.pvalues[report.pvalues["family"] != BEST]] if not report.pvalues.empty else []
    if ablation is not None and not ablation.comparisons.empty:
        parts.append(ablation.comparisons)
    if not parts:
        return ""
    comparisons = pd.concat(parts, ignore_index=True)
    return (
        "<h2>The answer: does transfer help, and which recipe?</h2><p class='note'>Each"
        " comparison's paired difference on test (points, threshold tuned on validation) with"
        " its 95% interval (patients resampled, seeds half-sampled). Colour: the verdict on"
        " all seeds at Holm-adjusted 0.05 (green better, red worse, grey no detectable"
        " difference). Every comparison is repeated on two disjoint halves of the seeds: an"
        " open marker did not replicate (the halves' verdicts differ). Numbers:"
        " reports/tables/verdicts.csv.</p>"
        + _figure(
            forest_figure(comparisons, HEADLINE_ORDER, "Effects on macro-F and micro-F"),
            FOREST_DIV_ID,
        )
        + _figure(
            forest_figure(
                comparisons, ENDS_ORDER, "Effects on the rarest and the most frequent 10% of codes"
            ),
            FOREST_ENDS_DIV_ID,
        )
        + _table(verdict_table(comparisons if costed is None else costed_like(comparisons, costed)))
    )


def convergence_section(convergence: Convergence) -> str:
    """A warning box listing every unconverged member, or one line saying all converged."""
    members = convergence.members
    unrecorded = (
        f" {convergence.unrecorded} members have no convergence record (trained before it"
        " was recorded)."
        if convergence.unrecorded
        else ""
    )
    if convergence.unconverged.empty:
        return (
            f"<p class='ok' id='convergence'>All {len(members) - convergence.unrecorded}"
            f" members converged by the rule ({html.escape(convergence.rule())}): early"
            f" stopping fired before the epoch cap.{html.escape(unrecorded)}</p>"
        )
    listing = convergence.listing()
    return (
        "<div class='warning' id='convergence'><h2>Not converged: "
        f"{len(listing)} of {len(members)} members</h2><p>These members reached their epoch"
        " cap while still improving (early stopping never fired; rule:"
        f" {html.escape(convergence.rule())}). Rows built on them are marked \u2020 in the"
        " tables: their numbers may understate what the configuration reaches, and a"
        f" comparison with them measures the epoch budget too.{html.escape(unrecorded)}</p>"
        + _table(listing)
        + "</div>"
    )


def curves_section(systems: list[System]) -> str:
    figures = curve_figures(systems)
    if not figures:
        return ""
    return (
        "<h2>Learning curves</h2><p class='note'>Each single-model member of the report study:"
        " validation macro-F (the early-stopping criterion) and training loss by epoch."
        " Dotted: a member the epoch cap stopped (not converged).</p>"
        + "".join(_figure(fig, curve_div_id(v)) for v, fig in figures.items())
    )


def ablation_section(ablation: Ablation) -> str:
    parts = [
        f"<h2>Ablation: study {html.escape(ablation.study)}</h2>",
        f"<p class='note'>{html.escape(ablation.caption())} Numbers: reports/ablation.csv.</p>",
    ]
    for dimension in ablation.dimensions:
        parts.append(_figure(dimension_figure(ablation, dimension), ablation_div_id(dimension)))
    if ablation.dimensions:
        parts.append(_figure(ablation_decile_figure(ablation), DECILE_DIV_ID))
    else:
        parts.append("<p class='note'>No dimension has two values among the points.</p>")
    return "".join(parts)


def optuna_section(name: str, db: Path) -> str:
    """Optuna's own plots of a study: importances (its default fANOVA evaluator),
    parallel coordinates, optimisation history."""
    import optuna
    from optuna import visualization

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    parts = [f"<p class='note'>{len(complete)} complete Optuna trials of {len(study.trials)}.</p>"]
    plots = (
        ("importance", visualization.plot_param_importances),
        ("parallel", visualization.plot_parallel_coordinate),
        ("history", visualization.plot_optimization_history),
    )
    for label, plot in plots:
        try:
            parts.append(_figure(plot(study), f"optuna-{name}-{label}"))
        except (ValueError, RuntimeError) as err:  # too few trials for importances
            parts.append(f"<p class='note'>{label}: not available ({html.escape(str(err))})</p>")
    return "".join(parts)


def study_sections(results: Path) -> str:
    parts = []
    for folder in sorted(p for p in results.iterdir() if (p / "trials.parquet").exists()):
        trials = read_trials(folder / "trials.parquet")
        columns = [c for c in trials.columns if c.startswith("config_")] + [
            c
            for c in (
                "status",
                "val_macro_f",
                "val_micro_f",
                *(test_column(m, k) for k in THRESHOLD_KINDS for m in ("micro_f", "macro_f")),
                "converged",
                "unconverged_members",
                "member_best_epochs",
                "member_epochs_run",
                "epoch_cap",
                "members_trained_here",
                "trial_seconds",
                "node",
                "trial_id",
            )
            if c in trials.columns
        ]
        view = trials[columns].copy()
        for c in view.columns:
            if view[c].dtype == float and c.startswith(("val_", "test_")):
                view[c] = view[c] * 100
        parts.append(
            f"<h2>Study {html.escape(folder.name)}: trials</h2>"
            "<p class='note'>Click a column to sort. F-scores in points; val_* on "
            "validation at the tuned threshold; test_*_tuned / test_*_fixed on test.</p>"
            + _table(view, sortable=True, digits=2)
        )
        db = folder / "search" / "optuna.db"
        if db.exists():
            parts.append(
                f"<h2>Study {html.escape(folder.name)}: Optuna</h2>"
                + optuna_section(folder.name, db)
            )
    return "".join(parts)


def write_dashboard(
    path: Path,
    report: Report,
    results: Path,
    corpus: Corpus,
    cfg: ReportConfig,
    views: Views,
) -> None:
    stats = corpus.stats
    overview = pd.DataFrame(
        [
            {
                "corpus": "EMR target",
                "instances": stats["instances"],
                "labels": stats["labels"],
                "label cardinality": stats["label_cardinality"],
                "words per document": stats["words_per_document"],
                "code combinations": stats["code_combinations"],
            }
        ]
    )
    sections = [
        "<h1>icdtransfer: transfer-learning ablation</h1>",
        f"<p class='note'>Study <b>{html.escape(cfg.study)}</b>; systems evaluated on "
        f"{stats['splits']['test']} test documents.</p>",
        answer_section(report, views.ablation, views.verdicts),
        convergence_section(views.convergence),
        "<h2>Overview</h2>",
        _table(overview, digits=2),
        "<h2>Table 2: layer-by-layer analysis</h2>",
    ]
    for kind in THRESHOLD_KINDS:
        sections.append(f"<p class='note'>{html.escape(caption2(report, kind))}</p>")
        sections.append(_table(compact(table2(report, kind))))
    sections.append(_figure(table2_figure(report), "fig-table2"))
    sections.append(curves_section(views.systems))
    sections.append("<h2>Table 3: the paper's baselines against the CNNs</h2>")
    for kind in THRESHOLD_KINDS:
        sections.append(f"<p class='note'>{html.escape(caption3(report, kind))}</p>")
        sections.append(_table(compact(table3(report, kind))))
    sections.append(
        "<h2>Paired bootstrap comparisons</h2><p class='note'>Observed differences on test in"
        " points; p-values Holm-adjusted within each family (one table's comparisons).</p>"
        + _table(pvalue_table(report))
    )
    sections.append(
        "<h2>Macro-F by code frequency</h2>" + _figure(decile_figure(report), "fig-deciles")
    )
    panel = protocol_section(
        report, views.report_systems, Gold.of(corpus), cfg.bootstrap, cfg.seed, _figure
    )
    sections.append(panel)
    if views.ablation is not None:
        sections.append(ablation_section(views.ablation))
    sections.extend(data_size_section(by, _figure) for by in views.gains_by)
    if views.costs is not None:
        sections.append(cost_section(views.costs, _figure, _table))
    sections.append("<h2>Code frequency</h2>" + _figure(frequency_figure(report), "fig-frequency"))
    sections.append(study_sections(results))
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>icdtransfer report: {html.escape(cfg.study)}</title>"
        f"<script>{ERROR_PROBE}</script><style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        + "".join(sections)
        + f"<script>{SORTER}</script></body></html>"
    )
    path.write_text(page, encoding="utf-8")
    log.info("dashboard: %s (%.1f MB)", path, path.stat().st_size / 1e6)
