"""What each answer cost (docs/DESIGN.md section 6, "Cost accounting"): compute per study and
per variant, stage 1's share, and each comparison's gain per compute-hour.

* **A member's hours**: its member.json `cpu_seconds` (process CPU time, all threads) plus
  `gpu_seconds` (wall seconds x GPUs), over 3600: CPU core-hours and GPU-hours added, both
  also kept apart. A transfer member also carries an equal share of its stage-1 member's
  hours: stage 1's over the number of distinct transfer members (key, seed) under results/
  that start from it. A member without a compute record (written before it was recorded) has
  no hours (NaN), and the tables say how many members lack one.
* **A baseline's hours**: its member.json's CPU seconds (fitting and scoring, one process);
  the table lists each baseline under the study "baselines".
* **Per study**: every member its results hold, reused ones included (what the study's answer
  rests on); the total over all studies counts each member once.
* **A system's hours**: what one of its models costs: the mean hours of its members times the
  ensemble size (an ensemble of k averages k members).
* **Gain per compute-hour** of a comparison: the paired gain in macro-F over all codes (points,
  the comparison's own threshold kind and seed set) over the compared system's hours, with
  `extra_hours`, its hours minus the reference's.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from icdtransfer.artifacts import MemberInfo
from icdtransfer.report.systems import System

DIV_ID = "fig-cost"
MEMBER_FILE = "member.json"
COST_COLUMNS = ("system_hours", "against_hours", "extra_hours", "gain_per_hour")


@dataclass
class Costs:
    """Every member under results/ (one row per study it is in) and stage 1's record."""

    members: pd.DataFrame  # study, key, seed, variant, cpu_hours, gpu_hours, stage1_hours, hours
    stage1_hours: dict[str, float]  # pretrained folder -> its hours (NaN: no record)
    baseline_hours: dict[str, float] = field(default_factory=dict)  # method -> hours

    def hours(self, folder: Path) -> float:
        """A member folder's hours, stage-1 share included (NaN without a record)."""
        row = self.members[
            (self.members["key"] == folder.parent.name) & (self.members["seed"] == _seed(folder))
        ]
        return float(row["hours"].iloc[0]) if len(row) else math.nan

    def system_hours(self, system: System) -> float:
        if system.baseline:
            return self.baseline_hours.get(system.variant, math.nan)
        if not system.folders:
            return math.nan
        hours = [self.hours(f) for f in system.folders]
        return float(np.mean(hours)) * min(system.ensemble_size, len(hours))

    def per_variant(self) -> pd.DataFrame:
        """Compute per study and variant, and a total per study (variant "all")."""
        frame = self.members
        rows = []
        for (study, variant), part in frame.groupby(["study", "variant"], sort=True):
            rows.append(_summed(part, study=study, variant=variant))
        for study, part in frame.groupby("study", sort=True):
            rows.append(_summed(part, study=study, variant="all"))
        if len(frame):
            once = frame.drop_duplicates(["key", "seed"])
            rows.append(_summed(once, study="all studies (each member once)", variant="all"))
        for method, hours in sorted(self.baseline_hours.items()):  # one member each, no stage 1
            own = {"epochs": 0, "cpu_hours": hours, "gpu_hours": 0.0, "stage1_hours": 0.0}
            part = pd.DataFrame([{**own, "hours": hours}])
            rows.append(_summed(part, study="baselines", variant=method))
        return pd.DataFrame(rows)

    def caption(self) -> str:
        stage1 = ", ".join(
            f"{Path(k).name}: {_fmt(v)} h" for k, v in sorted(self.stage1_hours.items())
        )
        return (
            "Compute per study and variant: CPU core-hours (process CPU time, all threads) and"
            " GPU-hours (wall x GPUs) from each member's member.json, and their sum, with each"
            " transfer member's equal share of its stage-1 member's hours"
            f" ({stage1 or 'no transfer member'}). A study counts every member its results hold,"
            " reused ones included; the last row counts each member once. Members without a"
            " compute record count as none and are listed. Each baseline's own CPU hours are under"
            ' the study "baselines".'
        )


def _fmt(value: float) -> str:
    return "no record" if math.isnan(value) else f"{value:.3f}"


def _seed(folder: Path) -> int:
    return int(folder.name.removeprefix("seed"))


def _summed(part: pd.DataFrame, **head) -> dict:
    recorded = part["cpu_hours"].notna()
    return {
        **head,
        "members": len(part),
        "without_record": int((~recorded).sum()),
        "epochs": int(part["epochs"].sum()),
        "cpu_hours": float(part["cpu_hours"].sum()),
        "gpu_hours": float(part["gpu_hours"].sum()),
        "stage1_share_hours": float(part["stage1_hours"].sum()),
        "hours": float(part["hours"].sum()),
        "hours_per_member": float(part["hours"].mean()) if recorded.any() else math.nan,
    }


def _own_hours(pretrained: str) -> float:
    """A single member folder's own hours (stage 1's, or a baseline's); NaN: no record."""
    path = Path(pretrained) / MEMBER_FILE
    if not path.exists():
        return math.nan
    compute = MemberInfo.read(Path(pretrained)).compute
    return math.nan if compute is None else (compute.cpu_seconds + compute.gpu_seconds) / 3600


def build_costs(
    results: Path, stage1_dir: str | None = None, baselines: dict[str, str] | None = None
) -> Costs:
    """Read every member.json under results/<study>/members/<key>/seed<s>/. Stage 1's hours
    come from `stage1_dir`'s member.json for the transfer members that record it as their
    start (any other: from the path each records); each baseline's (method -> member
    directory) from its own."""
    rows = []
    for path in sorted(results.glob(f"*/members/*/seed*/{MEMBER_FILE}")):
        info = MemberInfo.read(path.parent)
        c = info.compute
        rows.append(
            {
                "study": path.parents[3].name,
                "key": path.parent.parent.name,
                "seed": _seed(path.parent),
                "variant": info.variant or "",
                "pretrained": info.pretrained,
                "device": c.device if c else "",
                "epochs": c.epochs if c else 0,
                "cpu_hours": c.cpu_seconds / 3600 if c else math.nan,
                "gpu_hours": c.gpu_seconds / 3600 if c else math.nan,
            }
        )
    columns = ["study", "key", "seed", "variant", "pretrained", "device", "epochs"]
    frame = pd.DataFrame(rows, columns=[*columns, "cpu_hours", "gpu_hours"])
    once = frame.drop_duplicates(["key", "seed"])
    users = once[once["pretrained"].notna()].groupby("pretrained").size()
    transfer = once["pretrained"].notna()
    if stage1_dir:  # every transfer member's stage 1 (on another node it records its own copy)
        stage1 = {stage1_dir: _own_hours(stage1_dir)} if transfer.any() else {}
        share = {p: next(iter(stage1.values())) / int(transfer.sum()) for p in users.index}
    else:
        stage1 = {str(p): _own_hours(str(p)) for p in users.index}
        share = {p: stage1[p] / n for p, n in users.items()}
    frame["stage1_hours"] = [
        share.get(p, math.nan) if isinstance(p, str) else 0.0 for p in frame["pretrained"]
    ]
    # a stage 1 without a record adds nothing (the caption says "no record"); own hours stay
    frame["hours"] = frame["cpu_hours"] + frame["gpu_hours"] + frame["stage1_hours"].fillna(0.0)
    own = {
        m: _own_hours(d) for m, d in (baselines or {}).items() if (Path(d) / MEMBER_FILE).exists()
    }
    return Costs(frame, stage1, own)


def with_cost(comparisons: pd.DataFrame, systems: list[System], costs: Costs) -> pd.DataFrame:
    """The comparisons with each side's hours, the extra hours and the gain per hour."""
    if comparisons.empty:
        return comparisons
    hours = {s.name: costs.system_hours(s) for s in systems}
    out = comparisons.copy()
    out["system_hours"] = out["system"].map(hours).astype(float)
    out["against_hours"] = out["against"].map(hours).astype(float)
    out["extra_hours"] = out["system_hours"] - out["against_hours"]
    out["gain_per_hour"] = out["macro_f_all_labels_delta"] * 100 / out["system_hours"]
    return out


def cost_figure(table: pd.DataFrame):
    """Hours per variant in each study: own compute and stage-1 share, stacked."""
    import plotly.graph_objects as go

    part = table[table["variant"] != "all"]
    x = [part["study"].tolist(), part["variant"].tolist()]
    fig = go.Figure()
    fig.add_bar(x=x, y=part["cpu_hours"] + part["gpu_hours"], name="own (CPU + GPU hours)")
    fig.add_bar(x=x, y=part["stage1_share_hours"], name="stage-1 share")
    fig.update_layout(
        barmode="stack",
        title="Compute per study and variant",
        yaxis_title="hours (CPU core-hours + GPU-hours)",
    )
    return fig


KEYS = ["threshold_kind", "family", "seed_set", "system", "against"]


def costed_like(comparisons: pd.DataFrame, costed: pd.DataFrame) -> pd.DataFrame:
    """`comparisons` with the cost columns of the same rows of `costed` (with_cost's)."""
    if comparisons.empty or "gain_per_hour" not in costed:
        return comparisons
    extra = costed[[*KEYS, *COST_COLUMNS]].drop_duplicates(KEYS)
    return comparisons.merge(extra, on=KEYS, how="left")


def cost_section(
    costs: Costs,
    figure: Callable[[object, str], str],
    table: Callable[..., str],
) -> str:
    """The dashboard's section: caption, the per-variant table and figure, and the members
    without a compute record (ids only)."""
    spent = costs.per_variant()
    shown = spent.rename(columns=lambda c: c.replace("_", " "))
    missing = costs.members[costs.members["cpu_hours"].isna()]
    note = (
        f"<p class='note'>Without a compute record: {len(missing)} members"
        f" ({html.escape(', '.join(sorted(set(missing['key']))))}).</p>"
        if len(missing)
        else ""
    )
    return (
        "<h2>Cost: compute per study and variant</h2>"
        f"<p class='note'>{html.escape(costs.caption())} Each comparison's gain per hour is in"
        " the verdict table above and reports/tables/verdicts.csv; these numbers:"
        " reports/tables/cost.csv.</p>"
        + table(shown, digits=3)
        + (figure(cost_figure(spent), DIV_ID) if len(spent) else "")
        + note
    )
