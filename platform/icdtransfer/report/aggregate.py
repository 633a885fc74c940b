"""From stored probabilities to the numbers of the paper's tables, with intervals and p-values.

Every number is recomputed here from the systems' probabilities (`report/systems.py`) at two
thresholds: `fixed` (0.5; the paper states no threshold) and `tuned` (one global threshold per
model, tuned for micro-F on validation and applied to test).

* A row of ensemble size k is the mean over every k-subset of the study's seeds (k = 1: the
  mean over the single models, each with its own threshold; k > 1: every ensemble of k of
  them); its intervals half-sample seeds and resample patients (report/bootstrap.py), so
  seed-to-seed spread is in every row, ensembles included; `seed_sd_*` gives the spread of
  the single models behind it.
* Nothing is chosen on test: Table 3's transfer variant and the "best vs second best"
  comparison are chosen on validation macro-F (or the variant is fixed in advance).
* p-values compare the observed difference on test with a paired bootstrap (same patients
  for both systems) and are Holm-adjusted across the p-values of one family. Each
  comparison is made on all seeds and on each of two disjoint halves of them, and gets a
  verdict per seed set (report/verdicts.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from icdtransfer.artifacts import FIXED_THRESHOLD, THRESHOLD_KINDS, ThresholdKind
from icdtransfer.evaluate.metrics import decile_macro_f, scores_at, tune_threshold
from icdtransfer.model.transfer import VARIANTS
from icdtransfer.report.bootstrap import (
    Replicates,
    draws,
    interval,
    replicate_scores,
    seed_replicates,
    seed_weights,
)
from icdtransfer.report.systems import Gold, Probs, System
from icdtransfer.report.verdicts import compare

POINT = ("micro_p", "micro_r", "micro_f", "macro_p", "macro_r", "macro_f", "macro_f_all_labels")
INTERVALS = ("micro_f", "macro_f", "macro_f_all_labels")
TESTED = ("micro_f", "macro_f_all_labels")  # macro_f's replicates are proportional: same p
REFERENCE = "LR"  # Table 3's gains are against this baseline, as the paper's %-Increase
TABLE2, TABLE3, BEST = "table2: vs scratch", "table3: best CNN vs baseline", "best vs second best"


@dataclass
class Choice:
    """Table 3's transfer variant and how it was chosen (for the caption)."""

    variant: str | None  # None: the study has no transfer variant
    how: str


@dataclass
class Report:
    """Everything the tables, summary and dashboard show."""

    scores: pd.DataFrame  # one row per system x threshold kind (points, intervals, validation)
    deciles: pd.DataFrame  # tidy: system x threshold kind x decile
    frequency: pd.DataFrame  # label training frequencies, ranked
    pvalues: pd.DataFrame  # paired comparisons, one row per pair, by family
    choices: dict[str, Choice]  # Table 3's variant per threshold kind
    replicates: int
    documents: int  # test documents
    labels: int  # L
    labels_present: int  # labels with a positive in the test split


@dataclass
class Scored:
    """One model (a single model or an ensemble) at one threshold."""

    threshold: float
    test: dict[str, float]
    validation: dict[str, float]
    deciles: list[float | None]
    deciles_all_labels: list[float | None]


def score(gold: Gold, probs: Probs, kind: ThresholdKind) -> Scored:
    validation, test = probs
    threshold = tune_threshold(gold.validation, validation) if kind == "tuned" else FIXED_THRESHOLD
    pred = test >= threshold
    return Scored(
        threshold,
        vars(scores_at(gold.test, pred)),
        vars(scores_at(gold.validation, validation >= threshold)),
        decile_macro_f(gold.test, pred, gold.train_frequency),
        decile_macro_f(gold.test, pred, gold.train_frequency, "all"),
    )


def build_report(
    systems: list[System], gold: Gold, replicates: int, seed: int, table3_variant: str
) -> Report:
    scores, deciles, _ = score_systems(systems, gold, replicates, seed)
    choices = {kind: table3_choice(scores, kind, table3_variant) for kind in THRESHOLD_KINDS}
    frequency = pd.DataFrame(
        {"code": gold.codes, "train_frequency": gold.train_frequency}
    ).sort_values("train_frequency", ascending=False, kind="stable")
    frequency.insert(0, "rank", np.arange(1, len(frequency) + 1))
    return Report(
        scores=scores,
        deciles=deciles,
        frequency=frequency,
        pvalues=comparisons(systems, scores, gold, replicates, seed),
        choices=choices,
        replicates=replicates,
        documents=len(gold.test),
        labels=gold.test.shape[1],
        labels_present=int(gold.test.any(axis=0).sum()),
    )


def score_systems(
    systems: list[System], gold: Gold, replicates: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str], Replicates]]:
    """Every system at both threshold kinds, on the same bootstrap draws: a scores row and
    ten decile rows each, and its replicates by (system, kind) for paired comparisons."""
    weights = draws(gold.groups, replicates, seed)
    rng = np.random.default_rng([seed, 1])  # seed half-samples, independent per system
    rows, decile_rows, reps = [], [], {}
    for system in systems:
        for kind in THRESHOLD_KINDS:
            row, deciles, reps[(system.name, kind)] = _system_rows(system, gold, kind, weights, rng)
            rows.append(row)
            decile_rows.extend(deciles)
    return pd.DataFrame(rows), pd.DataFrame(decile_rows), reps


def converged_text(converged: int, recorded: int) -> str:
    """A row's convergence as printed: "3/3" (members that converged / members), "" for a
    baseline (no epochs)."""
    return f"{converged}/{recorded}" if recorded else ""


def _system_rows(
    system: System,
    gold: Gold,
    kind: ThresholdKind,
    weights: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict, list[dict], Replicates]:
    """One system at one threshold kind: its scores row, its ten decile rows, its replicates
    (the mean over its single models, seeds resampled; or its ensemble)."""
    scored = system.scored()  # every k-subset of the seeds (bootstrap.subsets' order)
    models = [score(gold, probs, kind) for probs in scored]
    size = min(system.ensemble_size, len(system.members))
    rep = seed_replicates(
        [
            replicate_scores(gold.test, probs[1] >= m.threshold, weights, gold.train_frequency)
            for probs, m in zip(scored, models, strict=True)
        ],
        seed_weights(len(system.members), size, len(weights), rng),
    )
    ident = {
        "system": system.name,
        "variant": system.variant,
        "paper": system.paper,
        "baseline": system.baseline,
        "ensemble_size": system.ensemble_size,
        "threshold_kind": kind,
    }
    row = {
        **ident,
        "seeds": len(system.members),
        "members_converged": system.converged[0],
        "members_recorded": system.converged[1],  # members with a training record
        "threshold": float(np.mean([m.threshold for m in models])),
        **{k: float(np.mean([m.test[k] for m in models])) for k in POINT},
        **{f"val_{k}": float(np.mean([m.validation[k] for m in models])) for k in INTERVALS},
    }
    for metric in INTERVALS:
        row[f"{metric}_low"], row[f"{metric}_high"] = interval(getattr(rep, metric))
    row.update(_seed_spread(gold, system, models, kind))
    deciles = []
    for d in range(10):
        decile = {**ident, "decile": d + 1}
        for name, points, values in (
            ("macro_f", [m.deciles[d] for m in models], rep.deciles[:, d]),
            (
                "macro_f_all_labels",
                [m.deciles_all_labels[d] for m in models],
                rep.deciles_all_labels[:, d],
            ),
        ):
            decile[name] = None if points[0] is None else float(np.mean(points))
            decile[f"{name}_low"], decile[f"{name}_high"] = interval(values)
        deciles.append(decile)
    return row, deciles, rep


def _seed_spread(gold: Gold, system: System, models: list[Scored], kind: ThresholdKind) -> dict:
    """Standard deviation over seeds of the single models behind a row (each at its own
    threshold): the row's own models, or an ensemble's members."""
    if len(system.members) < 2:
        return {}
    singles = (
        models if system.ensemble_size == 1 else [score(gold, p, kind) for p in system.members]
    )
    return {f"seed_sd_{k}": float(np.std([m.test[k] for m in singles], ddof=1)) for k in INTERVALS}


def table2_pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Each transfer variant against scratch of the same ensemble size."""
    cnn = frame[~frame["baseline"]]
    pairs = []
    for row in cnn.itertuples():
        base = cnn[(cnn["variant"] == "scratch") & (cnn["ensemble_size"] == row.ensemble_size)]
        if row.variant != "scratch" and not base.empty:
            pairs.append((row.system, base.iloc[0]["system"]))
    return pairs


def table3_choice(scores: pd.DataFrame, kind: str, setting: str) -> Choice:
    """Table 3's transfer variant: fixed in advance (`setting` is a variant), or the one whose
    largest ensemble has the best validation macro-F (`setting` is "validation")."""
    frame = scores[(scores["threshold_kind"] == kind) & ~scores["baseline"]]
    transfer = frame[frame["variant"] != "scratch"]
    if setting != "validation":
        if setting not in VARIANTS or setting == "scratch":
            raise ValueError(
                f"report.table3_variant: {setting!r} is neither 'validation' nor a transfer "
                f"variant ({', '.join(v for v in VARIANTS if v != 'scratch')})"
            )
        if setting not in set(transfer["variant"]):
            raise ValueError(f"report.table3_variant: {setting!r} is not in the study's results")
        return Choice(setting, f"{setting}, fixed in advance (report.table3_variant)")
    if transfer.empty:
        return Choice(None, "none (the study has no transfer variant)")
    largest = transfer.sort_values("ensemble_size", kind="stable").groupby("variant").tail(1)
    ranked = largest.sort_values("val_macro_f_all_labels", ascending=False, kind="stable")
    ranking = "; ".join(
        f"{r.system} {100 * r.val_macro_f_all_labels:.1f}" for r in ranked.itertuples()
    )
    best = ranked.iloc[0]["variant"]
    return Choice(
        best, f"{best}, chosen on validation macro-F of each variant's largest ensemble ({ranking})"
    )


def table3_systems(scores: pd.DataFrame, kind: str, choice: Choice) -> list[str]:
    """Table 3's rows: every baseline (in the order given), then scratch and the chosen
    transfer variant, each as a single model and as ensembles."""
    frame = scores[scores["threshold_kind"] == kind]
    names = list(frame[frame["baseline"]]["system"])
    for variant in ("scratch", *([choice.variant] if choice.variant else [])):
        part = frame[(frame["variant"] == variant) & ~frame["baseline"]]
        names.extend(part.sort_values("ensemble_size", kind="stable")["system"])
    return names


def best_cnn(frame: pd.DataFrame) -> str | None:
    """The CNN system (any variant, single or ensemble) with the best validation macro-F."""
    cnn = frame[~frame["baseline"]]
    if cnn.empty:
        return None
    ranked = cnn.sort_values("val_macro_f_all_labels", ascending=False, kind="stable")
    return str(ranked.iloc[0]["system"])


def best_pair(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The two systems with the best validation macro-F (chosen on validation, tested on
    test)."""
    ranked = frame.sort_values("val_macro_f_all_labels", ascending=False, kind="stable")
    return [(ranked.iloc[0]["system"], ranked.iloc[1]["system"])] if len(ranked) >= 2 else []


def comparisons(
    systems: list[System], scores: pd.DataFrame, gold: Gold, replicates: int, seed: int
) -> pd.DataFrame:
    """Paired-bootstrap comparisons in three families (Table 2's against scratch; Table 3's
    best CNN, chosen on validation, against each baseline; best vs second best on
    validation), chosen on all seeds and made on all seeds and on each half of them, with
    Holm-adjusted p-values and verdicts per family (report/verdicts.py)."""
    families: dict[str, dict[str, list[tuple[str, str]]]] = {TABLE2: {}, TABLE3: {}, BEST: {}}
    for kind in THRESHOLD_KINDS:
        frame = scores[scores["threshold_kind"] == kind]
        cnn = best_cnn(frame)
        families[TABLE2][kind] = table2_pairs(frame)
        families[TABLE3][kind] = (
            [(cnn, b) for b in frame[frame["baseline"]]["system"]] if cnn else []
        )
        families[BEST][kind] = best_pair(frame)
    parts = [
        compare(systems, pairs, family, gold, replicates, seed, score_systems)
        for family, pairs in families.items()
        if any(pairs.values())
    ]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
