"""How much EMR data until transfer stops helping (`report.data_size`; docs/DESIGN.md
section 3, "Training size"): each transfer variant's paired gain over `scratch` at the same
training size, against the size, and where the gain crosses zero. The same comparison per
value of another dimension: whether transfer helps a label-attention coder too
(`report.pooling`; docs/DESIGN.md section 4, "Pooling"), without a crossing.

* **Systems**: one per finished trial of a study that sweeps `train_fraction` (nested patient
  subsamples, each member's drawn with its seed: data/splits.py). A transfer variant at
  fraction f is compared with `scratch` at f whose every other setting is equal.
* **Gains and verdicts**: report/verdicts.py's `compare`, in one family ("data size: vs
  scratch", Holm over every size and variant), on all seeds and on each half of them: the
  interval half-samples seeds (so it holds the subsample's variation too: each seed has its
  own subsample) and resamples test patients.
* **Crossing**: the gain in macro-F over all codes is interpolated linearly in log training
  size between the sizes run; the crossing is the first size, going up, where the gain falls
  from above zero to zero or below. It is computed on the point gains and on each bootstrap
  replicate's gains (the same replicates as the all-seeds comparison); its interval is the
  replicates' 2.5th-97.5th percentiles, where a replicate without a crossing counts as below
  the smallest size (no gain there) or above the largest (gain at every size). Where the
  point gains do not cross, the report says "not within the sizes run"; an interval end
  beyond the sizes run is printed as such ("below 10%", "above 100%").
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from icdtransfer.artifacts import THRESHOLD_KINDS, MemberInfo
from icdtransfer.data.errors import InputError
from icdtransfer.report.aggregate import score_systems
from icdtransfer.report.systems import Gold, System, study_systems
from icdtransfer.report.verdicts import SEED_SETS, compare, verdict_text

FAMILIES = {"train_fraction": "data size: vs scratch", "pooling": "pooling: vs scratch"}
FAMILY = FAMILIES["train_fraction"]
METRIC = "macro_f_all_labels"  # the paper's Macro-F: the crossing's metric
NOT_WITHIN = "not within the sizes run"
SHOWN = "tuned"  # the threshold kind of the figure and the crossing


@dataclass
class Crossing:
    """Where one variant's gain over scratch reaches zero, as a training fraction."""

    variant: str  # the line: the variant and its other settings
    point: float | None  # None: the point gains do not cross within the sizes run
    low: float  # interval ends; -inf: below the smallest size, inf: above the largest
    high: float
    why: str = ""  # where `point` is None: gain at every size, or none at the smallest

    def text(self, sizes: list[float], documents: dict[float, float]) -> str:
        """One line, e.g. "...: the gain crosses zero at 38% of the training patients (~120
        training documents; 95% interval 22% to above 100%)"."""

        def size(f: float) -> str:
            if f == -math.inf:
                return f"below {100 * min(sizes):g}%"
            if f == math.inf:
                return f"above {100 * max(sizes):g}%"
            return f"{100 * f:.0f}%"

        if self.point is None:
            return f"{self.variant}: {NOT_WITHIN} ({self.why})"
        docs = (
            f" (~{_documents_at(self.point, documents):.0f} training documents)"
            if documents
            else ""
        )
        open_ = (
            " (undetermined: the interval spans every size run)"
            if self.low == -math.inf and self.high == math.inf
            else ""
        )
        interval = (
            "undetermined (a replicate's gain is not a number)"
            if math.isnan(self.low) or math.isnan(self.high)
            else f"{size(self.low)} to {size(self.high)}{open_}"
        )
        return (
            f"{self.variant}: the gain crosses zero at {size(self.point)} of the training "
            f"patients{docs}; 95% interval {interval}"
        )


@dataclass
class DataSize:
    """Each transfer variant's gain over scratch per value of `dimension` (train_fraction:
    also the crossings and training documents)."""

    study: str
    gains: pd.DataFrame  # the compare rows (every seed set, both threshold kinds)
    crossings: list[Crossing]
    documents: dict[float, float]  # fraction -> mean training documents of its members
    replicates: int
    lines: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # line -> systems
    systems: list[System] = field(default_factory=list)  # the compared, by their names
    dimension: str = "train_fraction"

    @property
    def div_id(self) -> str:
        return DIV_ID if self.dimension == "train_fraction" else f"fig-gain-{self.dimension}"

    @property
    def table(self) -> str:  # its file in reports/tables/
        return "data_size" if self.dimension == "train_fraction" else self.dimension

    @property
    def title(self) -> str:
        what = "Training size" if self.dimension == "train_fraction" else self.dimension.title()
        return f"{what}: study {self.study}"

    @property
    def sizes(self) -> list[float]:
        return sorted({f for points in self.lines.values() for f, _ in points})

    def verdicts(self) -> dict[str, str]:
        """Each compared system's verdict on macro-F over all codes (all seeds, tuned)."""
        every = self.gains[
            (self.gains["seed_set"] == SEED_SETS[0]) & (self.gains["threshold_kind"] == SHOWN)
        ]
        return {r["system"]: verdict_text(r, METRIC) for _, r in every.iterrows()}

    def texts(self) -> list[str]:
        return [c.text(self.sizes, self.documents) for c in self.crossings]

    def caption(self) -> str:
        if self.dimension != "train_fraction":
            return (
                f"Study {self.study}: each transfer variant's paired gain in test macro-F over"
                f" all codes (the paper's) over scratch with the same {self.dimension} and"
                " every other setting equal, tuned threshold, in points; 95% intervals from"
                f" {self.replicates} bootstrap replicates that half-sample seeds and resample"
                f" test patients; verdicts Holm-adjusted over every {self.dimension} and"
                " variant, on all seeds and on each half of them."
            )
        return (
            f"Study {self.study}: each transfer variant's paired gain in test macro-F over all"
            " codes (the paper's) over scratch trained on the same fraction of the training"
            " patients (nested subsamples, each seed its own), tuned threshold, in points;"
            f" 95% intervals from {self.replicates} bootstrap replicates that half-sample"
            " seeds and resample test patients; verdicts Holm-adjusted over every size and"
            " variant, on all seeds and on each half of them. Where the gain crosses zero:"
            " linear in log size between the sizes run, its interval from the same"
            " replicates."
        )


def _documents_at(fraction: float, documents: dict[float, float]) -> float:
    sizes = sorted(documents)
    return float(np.interp(math.log(fraction), np.log(sizes), [documents[s] for s in sizes]))


def crossing(sizes: list[float], gains: np.ndarray) -> tuple[float | None, str]:
    """The first size, going up, where the gain (linear in log size) falls from above zero to
    zero or below; (None, why) when it does not within `sizes` (sorted ascending).

    `gains` is [n sizes] or [B, n sizes]: for B rows, an array of B crossings with -inf
    (no gain at the smallest size) and inf (gain at every size) for rows without one, and NaN
    for rows with a gain that is not a number (no crossing can be read from them)."""
    logs = np.log(np.asarray(sizes, dtype=float))
    g = np.atleast_2d(np.asarray(gains, dtype=float))
    out = np.full(len(g), np.inf)
    out[g[:, 0] <= 0] = -np.inf
    undefined = np.isnan(g).any(axis=1)
    open_ = g[:, 0] > 0  # rows still above zero, going up
    for i in range(1, len(sizes)):
        hit = open_ & (g[:, i] <= 0)
        t = g[hit, i - 1] / (g[hit, i - 1] - g[hit, i])
        out[hit] = np.exp(logs[i - 1] + t * (logs[i] - logs[i - 1]))
        open_ &= ~hit
    out[undefined] = np.nan
    if np.ndim(gains) == 2:
        return out, ""  # type: ignore[return-value]
    value = float(out[0])
    if math.isnan(value):
        return None, "undetermined: a gain is not a number (a metric undefined on test)"
    if value == -math.inf:
        return None, f"no gain at the smallest size, {100 * sizes[0]:g}%"
    if value == math.inf:
        return None, f"a gain at every size up to {100 * sizes[-1]:g}%"
    return value, ""


def _label(config: dict, skip: tuple[str, ...]) -> str:
    return ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in config.items()
        if k not in skip
    )


def build_data_size(
    folder: Path, gold: Gold, replicates: int, seed: int, dimension: str = "train_fraction"
) -> DataSize:
    """Score the study's gains over scratch by training size, or by another dimension
    (module docstring)."""
    key_name = "data_size" if dimension == "train_fraction" else dimension
    trials = folder / "trials.parquet"
    if not trials.exists():
        raise InputError(
            trials,
            None,
            f"not found: run `icdtransfer sweep --study {folder.name}`, or set"
            f" report.{key_name} to null",
        )
    systems = study_systems(folder)
    if not systems:
        raise InputError(trials, None, "no finished trial to report")
    if dimension not in systems[0].config:
        raise InputError(trials, None, f"the study does not sweep {dimension}")
    named = [replace(s, name=_label(s.config, ())) for s in systems]
    twice = sorted({s.name for s in named if [t.name for t in named].count(s.name) > 1})
    if twice:  # a grid with num_samples > 1: one configuration, several trials
        raise InputError(trials, None, f"two finished trials of one configuration: {twice[0]}")
    rest = ("variant", dimension)
    sized = dimension == "train_fraction"
    scratch = {
        (_label(s.config, rest), s.config[dimension]): s for s in named if s.variant == "scratch"
    }
    lines: dict[str, list[tuple]] = {}
    for s in named:
        key = (_label(s.config, rest), s.config[dimension])
        if s.variant != "scratch" and key in scratch:
            line = _label(s.config, (dimension,))
            value = float(key[1]) if sized else key[1]
            lines.setdefault(line, []).append((value, s.name, scratch[key].name))
    if not lines:
        raise InputError(
            trials, None, f"no transfer variant has a scratch trial of the same {dimension}"
        )
    for points in lines.values():
        points.sort()
    pairs = [(a, b) for points in lines.values() for _, a, b in points]
    captured: dict = {}

    def scorer(subset: list[System], *args):  # keeps the all-seeds replicates (compare's first)
        out = score_systems(subset, *args)
        captured.setdefault("all", out[2])
        return out

    gains = compare(
        named,
        {k: pairs for k in THRESHOLD_KINDS},
        FAMILIES.get(dimension, f"{dimension}: vs scratch"),
        gold,
        replicates,
        seed,
        scorer,
    )
    fraction = {a: f for points in lines.values() for f, a, _ in points}
    gains.insert(2, dimension, gains["system"].map(fraction))
    if not sized:
        return DataSize(folder.name, gains, [], {}, replicates, _shown(lines), named, dimension)
    reps = captured["all"]
    every = gains[(gains["seed_set"] == SEED_SETS[0]) & (gains["threshold_kind"] == SHOWN)]
    crossings = []
    for line, points in lines.items():
        sizes = [f for f, _, _ in points]
        point = [every[every["system"] == a][f"{METRIC}_delta"].item() for _, a, _ in points]
        per_rep = np.stack(
            [
                getattr(reps[(a, SHOWN)], METRIC) - getattr(reps[(b, SHOWN)], METRIC)
                for _, a, b in points
            ],
            axis=1,
        )
        value, why = crossing(sizes, np.array(point))
        spread = crossing(sizes, per_rep)[0]
        low, high = (float(v) for v in np.percentile(spread, [2.5, 97.5], method="lower"))
        crossings.append(Crossing(line, value, low, high, why))
    documents: dict[float, list[int]] = {}
    for s in named:
        for f in s.folders:
            docs = MemberInfo.read(f).details.get("train_documents")
            if docs is not None:
                documents.setdefault(float(s.config["train_fraction"]), []).append(int(docs))
    return DataSize(
        study=folder.name,
        gains=gains,
        crossings=crossings,
        documents={f: float(np.mean(d)) for f, d in sorted(documents.items())},
        replicates=replicates,
        lines=_shown(lines),
        systems=named,
    )


def _shown(lines: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    return {k: [(f, a) for f, a, _ in v] for k, v in lines.items()}


DIV_ID = "fig-data-size"


def data_size_figure(result: DataSize):
    """Gain over scratch (points, 95% interval) against the training fraction (log axis), one
    line per transfer variant, the crossing marked."""
    import plotly.graph_objects as go

    every = result.gains[
        (result.gains["seed_set"] == SEED_SETS[0]) & (result.gains["threshold_kind"] == SHOWN)
    ]
    fig = go.Figure()
    for line, points in result.lines.items():
        part = every.set_index("system").loc[[a for _, a in points]]
        delta = part[f"{METRIC}_delta"] * 100
        fig.add_scatter(
            x=[f if result.dimension == "train_fraction" else str(f) for f, _ in points],
            y=delta,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": part[f"{METRIC}_delta_high"] * 100 - delta,
                "arrayminus": delta - part[f"{METRIC}_delta_low"] * 100,
            },
            mode="lines+markers",
            name=line,
            hovertext=[verdict_text(r, METRIC) for _, r in part.iterrows()],
        )
    for c in result.crossings:
        if c.point is not None:
            fig.add_vline(x=c.point, line_dash="dot")  # its label: log10 on a log axis
            fig.add_annotation(
                x=math.log10(c.point),
                xref="x",
                y=1,
                yref="paper",
                text=f"{c.variant}: zero",
                showarrow=False,
            )
    fig.add_hline(y=0, line_color="grey")
    sized = result.dimension == "train_fraction"
    fig.update_layout(
        title=f"Study {result.study}: gain over scratch by"
        f" {'training size' if sized else result.dimension} (tuned threshold, 95% CI)",
        xaxis={"title": "fraction of the training patients", "type": "log"}
        if sized
        else {"title": result.dimension, "type": "category"},
        yaxis_title="macro-F gain over scratch (points)",
    )
    return fig


def data_size_csv(result: DataSize) -> pd.DataFrame:
    """data_size.csv: the gains on every seed set, with the training documents per size."""
    frame = result.gains.copy()
    if result.dimension == "train_fraction":
        frame.insert(3, "train_documents", frame["train_fraction"].map(result.documents))
    return frame


def crossings_frame(result: DataSize) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "line": c.variant,
                "crossing_fraction": c.point,
                "crossing_low": c.low,
                "crossing_high": c.high,
                "text": c.text(result.sizes, result.documents),
            }
            for c in result.crossings
        ]
    )


def data_size_section(result: DataSize, figure: Callable[[object, str], str]) -> str:
    """The dashboard's section: caption, figure, one line per crossing (`figure` draws a
    Plotly figure into a div of the given id)."""
    items = "".join(f"<li>{html.escape(t)}</li>" for t in result.texts())
    return (
        f"<h2>{html.escape(result.title)}</h2>"
        f"<p class='note'>{html.escape(result.caption())} Numbers:"
        f" reports/tables/{result.table}.csv"
        + (", data_size_crossings.csv" if result.crossings else "")
        + ".</p>"
        + figure(data_size_figure(result), result.div_id)
        + (f"<ul id='data-size-crossings'>{items}</ul>" if result.crossings else "")
    )
