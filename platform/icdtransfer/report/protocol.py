"""The protocol-sensitivity panel (issue 21): would a headline verdict change if the
comparison were scored the way another paper scores?

The comparisons are the report's: Table 2's (each transfer variant against scratch of the same
ensemble size) and Table 3's (the best CNN on validation against each baseline), with the
systems of the report (a single-model row is the mean over its seeds, an ensemble its
averaged probabilities). Each is recomputed under every protocol of evaluate/protocols.py:
macro-F under 3 thresholds x 2 definitions x 2 label sets, and micro-F under the 3
thresholds. A verdict is `+` (the first system is better), `-` (worse) or `=` (no
difference): the paired bootstrap on the report's draws (report/bootstrap.py; single-model
rows half-sample seeds too, as the report does), Holm-adjusted as the report's verdicts are
(report/verdicts.py): within the family, macro-F under a protocol together with micro-F at its
threshold, at 5%. The headline is the report's own protocol: the paper's Macro-F over all L
labels, and micro-F, at the tuned global threshold. Its cells are the report's comparisons on
all seeds (the forest plot's verdicts, not a second draw of them); every other verdict is
compared with it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from icdtransfer.evaluate.metrics import f_score, label_counts
from icdtransfer.evaluate.protocols import (
    LABEL_SETS,
    MACROS,
    THRESHOLD_TEXT,
    THRESHOLDS,
    Protocol,
    every_protocol,
    macro_f,
    thresholds,
)
from icdtransfer.report.aggregate import TABLE2, TABLE3, Report, best_cnn, table2_pairs
from icdtransfer.report.bootstrap import draws, holm, paired_p_value, seed_weights
from icdtransfer.report.systems import Gold, System
from icdtransfer.report.verdicts import BETTER, NONE, WORSE, on_all_seeds

PANEL_ID = "fig-protocols"
TABLE_ID = "table-protocols"
ALPHA = 0.05
HEADLINE_THRESHOLD = "tuned"  # the report's first threshold kind
HEADLINE = Protocol(HEADLINE_THRESHOLD, "mean_f", "all")


@dataclass(frozen=True)
class Measure:
    metric: str  # "macro_f" or "micro_f"
    protocol: Protocol  # for micro-F only the threshold matters

    @property
    def key(self) -> str:
        if self.metric == "micro_f":
            return f"micro-F {self.protocol.threshold}"
        p = self.protocol
        return f"macro-F {p.threshold} {'CAML' if p.macro == 'caml' else 'mean'} {p.labels}"

    @property
    def text(self) -> str:
        p = self.protocol
        return p.text if self.metric == "macro_f" else THRESHOLD_TEXT[p.threshold]

    @property
    def headline(self) -> Measure:
        if self.metric == "micro_f":
            return Measure("micro_f", Protocol(HEADLINE_THRESHOLD, "mean_f", "all"))
        return Measure("macro_f", HEADLINE)


MEASURES = [Measure("macro_f", p) for p in every_protocol()] + [
    Measure("micro_f", Protocol(t, "mean_f", "all")) for t in THRESHOLDS
]


def _model(gold: Gold, probs: tuple[np.ndarray, np.ndarray], weights: np.ndarray) -> dict:
    """One model's point value and [B] replicates for every measure."""
    validation, test = probs
    y = gold.test.astype(np.float32)
    present = gold.test.any(axis=0)
    out = {}
    for t in THRESHOLDS:
        pred = test >= thresholds(t, gold.validation, validation)
        counts = label_counts(gold.test, pred)
        p = pred.astype(np.float32)
        reps = (weights @ (y * p), weights @ ((1 - y) * p), weights @ (y * (1 - p)))
        out[("micro_f", t)] = (
            float(f_score(*(c.sum() for c in counts))),
            f_score(*(c.sum(axis=1) for c in reps)),
        )
        for m in MACROS:
            for s in LABEL_SETS:
                keep = np.ones_like(present) if s == "all" else present
                out[("macro_f", t, m, s)] = (
                    float(macro_f(*counts, m, keep)),
                    np.asarray(macro_f(*reps, m, keep), dtype=float),
                )
    return out


def _measure_key(measure: Measure) -> tuple:
    p = measure.protocol
    if measure.metric == "micro_f":
        return ("micro_f", p.threshold)
    return ("macro_f", p.threshold, p.macro, p.labels)


def system_scores(
    system: System, gold: Gold, weights: np.ndarray, rng: np.random.Generator
) -> dict[str, tuple[float, np.ndarray]]:
    """Point value (mean over the row's models: every k-subset of its seeds) and replicates
    (seeds half-sampled, as the report does: report/bootstrap.py) of every measure."""
    models = [_model(gold, probs, weights) for probs in system.scored()]
    size = min(system.ensemble_size, len(system.members))
    mix = seed_weights(len(system.members), size, weights.shape[0], rng)  # [B, subsets]
    out = {}
    for measure in MEASURES:
        k = _measure_key(measure)
        point = float(np.mean([m[k][0] for m in models]))
        stacked = np.stack([m[k][1] for m in models], axis=1)  # [B, subsets]
        reps = (stacked * mix).sum(axis=1) if len(models) > 1 else stacked[:, 0]
        out[measure.key] = (point, reps)
    return out


def _adjust(part: dict[str, list[dict]]) -> None:
    """Holm as the report's verdicts do it (report/verdicts.py): a family's comparisons under
    macro-F and micro-F at one threshold together. Each macro-F protocol is adjusted with
    micro-F at its threshold; micro-F's own adjusted p is the one it gets beside macro-F over
    all labels, mean of per-label F (the report's pairing)."""
    for measure in MEASURES:
        if measure.metric == "micro_f":
            continue
        micro = Measure("micro_f", Protocol(measure.protocol.threshold, "mean_f", "all")).key
        cells = part[measure.key] + part[micro]
        adjusted = holm(np.array([r["p"] for r in cells]))
        owns = measure.protocol.macro == "mean_f" and measure.protocol.labels == "all"
        for row, p_holm in zip(cells, adjusted, strict=True):
            if row["measure"] == measure.key or owns:
                row["p_holm"] = float(p_holm)
    for rows in part.values():
        for row in rows:
            significant = row["p_holm"] < ALPHA
            row["verdict"] = "=" if not significant else ("+" if row["delta"] > 0 else "-")


SIGN = {BETTER: "+", WORSE: "-", NONE: "="}


def _report_headline(part: dict[str, list[dict]], report: Report, family: str) -> None:
    """Under the headline protocol the panel shows the report's own comparisons (all seeds,
    tuned threshold: the forest plot's verdicts), not a second draw of them."""
    pvalues = on_all_seeds(report.pvalues)
    if pvalues.empty:
        return
    mine = pvalues[
        (pvalues["threshold_kind"] == HEADLINE_THRESHOLD) & (pvalues["family"] == family)
    ]
    by_pair = {f"{r['system']} vs {r['against']}": r for _, r in mine.iterrows()}
    for metric, column in (("macro_f", "macro_f_all_labels"), ("micro_f", "micro_f")):
        for row in part[Measure(metric, HEADLINE).key]:
            theirs = by_pair.get(row["comparison"])
            if theirs is None:
                continue
            row["delta"] = float(theirs[f"{column}_delta"])
            row["p"] = float(theirs[f"{column}_p"])
            row["p_holm"] = float(theirs[f"{column}_p_holm"])
            row["verdict"] = SIGN[theirs[f"{column}_verdict"]]


def comparison_pairs(report: Report) -> dict[str, list[tuple[str, str]]]:
    """The report's Table 2 and Table 3 comparisons (chosen at the headline threshold)."""
    frame = report.scores[report.scores["threshold_kind"] == HEADLINE_THRESHOLD]
    cnn = best_cnn(frame)
    baselines = list(frame[frame["baseline"]]["system"])
    return {TABLE2: table2_pairs(frame), TABLE3: [(cnn, b) for b in baselines] if cnn else []}


def sensitivity(
    report: Report, systems: list[System], gold: Gold, replicates: int, seed: int
) -> pd.DataFrame:
    """One row per comparison x measure: delta (first minus second, on test), p, Holm p,
    verdict, the headline's verdict and whether they differ."""
    pairs = comparison_pairs(report)
    wanted = {name for family in pairs.values() for pair in family for name in pair}
    weights = draws(gold.groups, replicates, seed)
    rng = np.random.default_rng([seed, 2])
    scores = {s.name: system_scores(s, gold, weights, rng) for s in systems if s.name in wanted}
    rows = []
    for family, family_pairs in pairs.items():
        if not family_pairs:
            continue
        part = {
            measure.key: [
                {
                    "family": family,
                    "comparison": f"{a} vs {b}",
                    "measure": measure.key,
                    "headline_measure": measure.headline.key,
                    "protocol": measure.text,
                    "delta": scores[a][measure.key][0] - scores[b][measure.key][0],
                    "p": paired_p_value(scores[a][measure.key][1], scores[b][measure.key][1]),
                }
                for a, b in family_pairs
            ]
            for measure in MEASURES
        }
        _adjust(part)
        _report_headline(part, report, family)
        rows.extend(row for measure in MEASURES for row in part[measure.key])
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    verdict = frame.set_index(["family", "comparison", "measure"])["verdict"]
    frame["headline_verdict"] = [
        verdict[(r.family, r.comparison, r.headline_measure)] for r in frame.itertuples()
    ]
    frame["changed"] = frame["verdict"] != frame["headline_verdict"]
    return frame


def wide_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison; per measure `+1.2 +` (delta in points, verdict), `!` where the
    verdict differs from the headline's; and how many measures change it."""
    cells = frame.assign(
        cell=[
            f"{100 * d:+.1f} {v}{' !' if c else ''}"
            for d, v, c in zip(frame["delta"], frame["verdict"], frame["changed"], strict=True)
        ]
    )
    wide = cells.pivot_table(
        index=["family", "comparison"],
        columns="measure",
        values="cell",
        aggfunc="first",
        sort=False,
    )[[m.key for m in MEASURES]]
    changes = frame.groupby(["family", "comparison"], sort=False)["changed"].sum()
    wide.insert(0, "verdicts changed", changes.reindex(wide.index).astype(int))
    return wide.reset_index()


VERDICT_STYLE = {  # verdict -> (legend name, colour)
    "+": ("first system better", "#27ae60"),
    "=": ("no difference", "#bdc3c7"),
    "-": ("first system worse", "#e74c3c"),
}


def figure(frame: pd.DataFrame) -> go.Figure:
    """Verdicts as a grid of squares, comparisons x measures (one trace per verdict: green
    better, grey no difference, red worse); the text is the difference in points, `!` where
    the verdict differs from the headline's."""
    labels = [f"{f}: {c}" for f, c in zip(frame["family"], frame["comparison"], strict=True)]
    frame = frame.assign(label=labels)
    fig = go.Figure()
    for verdict, (name, colour) in VERDICT_STYLE.items():
        part = frame[frame["verdict"] == verdict]
        text = [
            f"{100 * d:+.1f}{' !' if c else ''}"
            for d, c in zip(part["delta"], part["changed"], strict=True)
        ]
        fig.add_trace(
            go.Scatter(
                x=part["measure"],
                y=part["label"],
                mode="markers+text",
                name=name,
                text=text,
                textfont={"size": 10},
                marker={"symbol": "square", "size": 34, "color": colour},
                hovertemplate="%{y}<br>%{x}: %{text} points<extra></extra>",
            )
        )
    order = list(dict.fromkeys(labels))
    fig.update_layout(
        title=f"Verdict by scoring protocol (headline: {Measure('macro_f', HEADLINE).key})",
        height=260 + 40 * len(order),
        xaxis={
            "tickangle": -40,
            "categoryorder": "array",
            "categoryarray": [m.key for m in MEASURES],
        },
        yaxis={"categoryorder": "array", "categoryarray": order[::-1]},
    )
    return fig


def protocol_section(
    report: Report, systems: list[System], gold: Gold, replicates: int, seed: int, render
) -> str:
    """The dashboard's panel: heading, caption, the figure and the table (`render` is the
    dashboard's (figure, div id) -> HTML)."""
    frame = sensitivity(report, systems, gold, replicates, seed)
    head = "<h2>Protocol sensitivity: do the verdicts depend on how they are scored?</h2>"
    if frame.empty:
        return head + "<p class='note'>No Table 2 or Table 3 comparison to recompute.</p>"
    changed = int(frame.groupby(["family", "comparison"])["changed"].any().sum())
    total = frame.groupby(["family", "comparison"]).ngroups
    note = (
        f"{changed} of {total} comparisons change verdict under at least one protocol. Cells:"
        " difference on test in points, then the verdict (+ better, - worse, = no difference:"
        f" paired bootstrap, {replicates} replicates, Holm within the family: macro-F under"
        f" a protocol with micro-F at its threshold, as the verdicts above; {ALPHA:.0%}; the"
        " headline's cells are the verdict table's own); ! marks a verdict that differs from"
        " the headline's (macro-F: the"
        " paper's mean of per-label F over all codes at the tuned threshold; micro-F: the"
        " tuned threshold). Thresholds: fixed 0.5, one global tuned on validation, or one per"
        " label tuned on validation. CAML: F of macro-P and macro-R (caml-mimic); mean: mean"
        " of per-label F. all: every code; present: codes with a test positive."
    )
    table = wide_table(frame)
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    return (
        head
        + f"<p class='note'>{html.escape(note)}</p>"
        + render(figure(frame), PANEL_ID)
        + f"<div class='scroll'><table id='{TABLE_ID}' class='sortable'><thead><tr>{header}"
        + f"</tr></thead><tbody>{cells}</tbody></table></div>"
    )
