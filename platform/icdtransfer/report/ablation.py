"""The ablation study (`report.ablation`): test macro-F against each dimension's values, one
factor at a time, with the intervals of Table 2, and per frequency decile.

* **Reference configuration**: the most common value of every dimension among the study's
  finished trials (ties: the first in trial order). For a dimension, the points are the
  trials that differ from the reference only in that dimension; the reference trial is in
  every dimension's points.
* **Dimensions**: the trial config keys (variant, adaptation_size, word_dropout,
  ensemble_size, ...) with more than one value among the finished trials.
* **Numbers**: each trial is scored as a Table 2 row (aggregate.score_systems): a point of
  ensemble size k is the mean over every k-subset of the configuration's seeds, so the
  ensemble-size points (1, 2, 3, ...) average over all seed subsets of their size and share
  one kind of interval (half-sampled seeds x resampled patients). A point that is an
  ensemble is also shown as its single models (`model` column), so every dimension can be
  read either way.
* **Comparisons**: every point against the reference configuration, on all seeds and on
  each half of them, with verdicts (report/verdicts.py, family "ablation: vs reference").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from icdtransfer.artifacts import THRESHOLD_KINDS
from icdtransfer.data.errors import InputError
from icdtransfer.model.transfer import VARIANTS
from icdtransfer.report.aggregate import INTERVALS, score_systems
from icdtransfer.report.systems import Gold, System, study_systems
from icdtransfer.report.verdicts import compare

ORDER = ("variant", "adaptation_size", "word_dropout", "ensemble_size")  # figures' order
DECILES = {1: "rarest", 10: "most_frequent"}  # the paper's two ends of the frequency scale
ABLATION = "ablation: vs reference"  # the comparisons' family


@dataclass
class Ablation:
    study: str
    trials: int  # finished trials
    reference: dict[str, Any]
    dimensions: list[str]  # each with at least two values among its points
    # one row per dimension x value x model (the trial's; its single models: derived) x
    # threshold kind
    scores: pd.DataFrame
    deciles: pd.DataFrame  # the same x decile (1 = rarest 10% of codes)
    replicates: int
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)  # points vs reference
    systems: list[System] = field(default_factory=list)  # the compared, by their names

    def caption(self) -> str:
        reference = ", ".join(f"{k} {_text(v)}" for k, v in self.reference.items())
        return (
            f"Study {self.study}, {self.trials} finished trials, one factor at a time. Reference"
            f" configuration: the most common value of every dimension among those trials"
            f" ({reference}); each dimension's points are the trials that differ from it only"
            " in that dimension. Test macro-F over all codes (the paper's) at the tuned"
            " threshold, in points. A point of ensemble size k is the mean over every k-subset"
            " of its configuration's seeds (k = 1: the mean over single models) and, outside"
            " the ensemble_size dimension, also the single models behind it; 95% intervals"
            f" from {self.replicates} bootstrap replicates that half-sample seeds and"
            " resample test patients, one kind for every ensemble size. A point whose"
            " members did not all converge is marked \u2020 (converged column of"
            " ablation.csv)."
        )


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _sort_key(dimension: str, value: Any) -> tuple:
    if dimension == "variant":
        return (list(VARIANTS).index(value) if value in VARIANTS else len(VARIANTS), str(value))
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def reference_of(systems: list[System]) -> dict[str, Any]:
    """The most common value of each config key (ties: the first in trial order)."""
    keys = [k for k in ORDER if k in systems[0].config]
    keys += [k for k in systems[0].config if k not in keys]
    return {
        k: max((counts := Counter(s.config[k] for s in systems)), key=counts.__getitem__)
        for k in keys
    }


def build_ablation(folder: Path, gold: Gold, replicates: int, seed: int) -> Ablation:
    """Score the study's one-factor-at-a-time points (module docstring)."""
    if not (folder / "trials.parquet").exists():
        raise InputError(
            folder / "trials.parquet",
            None,
            f"not found: run `icdtransfer sweep --study {folder.name}`, or set report.ablation"
            " to null for a report without ablation figures",
        )
    systems = study_systems(folder)
    if not systems:
        raise InputError(folder / "trials.parquet", None, "no finished trial to report")
    reference = reference_of(systems)
    varying = [k for k in reference if len({s.config[k] for s in systems}) > 1]
    points: dict[str, list[System]] = {}
    for dimension in varying:
        chosen = [
            s
            for s in systems
            if all(s.config[k] == v for k, v in reference.items() if k != dimension)
        ]
        unique = {s.config[dimension]: s for s in reversed(chosen)}  # first trial per value
        if len(unique) > 1:
            points[dimension] = [
                unique[v] for v in sorted(unique, key=lambda v: _sort_key(dimension, v))
            ]
    named = {id(s): replace(s, name=_label(s.config)) for ss in points.values() for s in ss}
    singles = {  # an ensemble point's single models: the mean over its seeds
        i: replace(s, name=f"{s.name} (single models)", ensemble_size=1)
        for i, s in named.items()
        if s.ensemble_size > 1
    }
    everything = [*named.values(), *singles.values()]
    scored, deciles, _ = score_systems(everything, gold, replicates, seed)
    reference_name = next(
        (
            named[id(s)].name
            for ss in points.values()
            for s in ss
            if all(s.config[k] == v for k, v in reference.items())
        ),
        None,
    )
    pairs = (
        sorted(
            {(named[id(s)].name, reference_name) for ss in points.values() for s in ss}
            - {(reference_name, reference_name)}
        )
        if reference_name
        else []
    )
    compared = (
        compare(
            everything,
            {k: pairs for k in THRESHOLD_KINDS},
            ABLATION,
            gold,
            replicates,
            seed,
            score_systems,
        )
        if pairs
        else pd.DataFrame()
    )
    rows, decile_rows = [], []
    for dimension, chosen in points.items():
        for system in chosen:
            head = {
                "dimension": dimension,
                "value": _text(system.config[dimension]),
                "reference": system.config[dimension] == reference[dimension],
                **{f"config_{k}": v for k, v in system.config.items()},
            }
            shown = [named[id(system)]]
            if dimension != "ensemble_size" and id(system) in singles:
                shown.append(singles[id(system)])
            for derived, name in enumerate(s.name for s in shown):
                rows.extend(_rows({**head, "derived": bool(derived)}, scored, deciles, name))
                part = deciles[deciles["system"] == name]
                decile_rows.extend({**head, **r} for r in part.to_dict("records"))
    return Ablation(
        systems=everything,
        study=folder.name,
        trials=len(systems),
        reference=reference,
        dimensions=list(points),
        scores=pd.DataFrame(rows),
        deciles=pd.DataFrame(decile_rows),
        replicates=replicates,
        comparisons=compared,
    )


def _rows(head: dict, scored: pd.DataFrame, deciles: pd.DataFrame, name: str) -> list[dict]:
    out = []
    for _, row in scored[scored["system"] == name].iterrows():
        model = "ensemble" if row["ensemble_size"] > 1 else "single model"
        ends = _ends(deciles, name, row["threshold_kind"])
        out.append({**head, "model": model, **row.to_dict(), **ends})
    return out


def _label(config: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_text(v)}" for k, v in config.items())


def _ends(deciles: pd.DataFrame, name: str, kind: str) -> dict[str, float]:
    """The rarest and the most frequent decile's macro-F (all codes) with intervals."""
    part = deciles[(deciles["system"] == name) & (deciles["threshold_kind"] == kind)]
    out = {}
    for decile, label in DECILES.items():
        row = part[part["decile"] == decile].iloc[0]
        for suffix in ("", "_low", "_high"):
            out[f"{label}_decile_macro_f_all_labels{suffix}"] = row[f"macro_f_all_labels{suffix}"]
    return out


CSV_COLUMNS = (
    "dimension",
    "value",
    "reference",
    "model",
    "system",
    "threshold_kind",
    "seeds",
    "ensemble_size",
    "members_converged",
    "members_recorded",
    *(f"{m}{s}" for m in INTERVALS for s in ("", "_low", "_high")),
    *(f"{d}_decile_macro_f_all_labels{s}" for d in DECILES.values() for s in ("", "_low", "_high")),
)


def ablation_csv(ablation: Ablation) -> pd.DataFrame:
    """ablation.csv: the figures' numbers (F-scores as fractions, like systems.csv), with the
    trial's config_* columns."""
    config = [c for c in ablation.scores.columns if c.startswith("config_")]
    return ablation.scores[[*CSV_COLUMNS[:5], *config, *CSV_COLUMNS[5:]]]
