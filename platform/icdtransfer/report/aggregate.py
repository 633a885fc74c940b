"""From stored probabilities to the paper's tables, with intervals and p-values (pandas).

Systems are rebuilt from what the sweep stored: a trial's ensemble is the mean of its members'
probabilities, the LR baseline is its member directory. Every number is recomputed here from
those probabilities at both threshold kinds: `fixed` (0.5) and `tuned` (one global threshold
per system, tuned for micro-F on validation and applied to test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from icdtransfer.artifacts import (
    FIXED_THRESHOLD,
    THRESHOLD_KINDS,
    THRESHOLD_TEXT,
    ThresholdKind,
    average_members,
    read_probs,
    read_trials,
)
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import (
    MACRO_CONVENTION,
    decile_macro_f,
    dense,
    scores_at,
    tune_threshold,
)
from icdtransfer.model.transfer import VARIANTS
from icdtransfer.report.bootstrap import draws, interval, paired_p_value, replicate_scores
from icdtransfer.report.paper import PAPER_NOTE, PAPER_UKLARGE

# The paper's Table 3 baselines: variant name -> (system name, label in the tables)
BASELINES = {
    "lr": ("LR", "LR (tf-idf n-grams)"),
    "lr_l2r": ("LR + L2R", "LR + L2R (LR and kNN scores, LightGBM lambdarank)"),
    "lr_l2r_nerc": ("LR + L2R + NERC", "LR + L2R + NERC (also dictionary NERC codes)"),
}


@dataclass
class System:
    name: str  # e.g. "tune_all x3", "LR"
    variant: str  # a VARIANTS name, or a BASELINES name
    paper: str
    ensemble_size: int
    validation: np.ndarray
    test: np.ndarray
    seeds: list[int] = field(default_factory=list)
    member_test: list[np.ndarray] = field(default_factory=list)  # one per seed (for spread)


def study_systems(results: Path) -> list[System]:
    """One system per finished trial of a grid study over variant x ensemble_size."""
    trials = read_trials(results / "trials.parquet")
    trials = trials[trials["status"] == "TERMINATED"]
    systems = []
    for row in trials.itertuples():
        seeds = json.loads(row.seeds) if isinstance(row.seeds, str) else list(row.seeds)
        probs = [read_probs(results / "members" / row.member_key / f"seed{s}") for s in seeds]
        variant = row.variant
        size = int(row.ensemble_size)
        validation, test = average_members(probs)
        systems.append(
            System(
                name=f"{variant} x{size}" if size > 1 else variant,
                variant=variant,
                paper=VARIANTS[variant].paper + (" AVG" if size > 1 else ""),
                ensemble_size=size,
                validation=validation,
                test=test,
                seeds=seeds,
                member_test=[p[1] for p in probs],
            )
        )
    return systems


def baseline_system(folder: Path, method: str = "lr") -> System:
    validation, test = read_probs(folder)
    name, label = BASELINES[method]
    return System(name, method, label, 1, validation, test)


@dataclass
class Report:
    """Everything the tables, summary and dashboard show."""

    scores: pd.DataFrame  # one row per system x threshold
    deciles: pd.DataFrame  # tidy: system x threshold x decile
    frequency: pd.DataFrame  # label training frequencies, ranked
    pvalues: pd.DataFrame  # paired bootstrap comparisons
    replicates: int


def build_report(systems: list[System], corpus: Corpus, replicates: int, seed: int) -> Report:
    y_val = dense(corpus.labels[corpus.split("validation")])
    y_test = dense(corpus.labels[corpus.split("test")])
    freq = corpus.label_table["train_frequency"].to_numpy()
    weights = draws(len(y_test), replicates, seed)
    rows, decile_rows, reps = [], [], {}
    for system in systems:
        thresholds: dict[ThresholdKind, float] = {
            "tuned": tune_threshold(y_val, system.validation),
            "fixed": FIXED_THRESHOLD,
        }
        for name, threshold in thresholds.items():
            pred = system.test >= threshold
            point = scores_at(y_test, pred)
            rep = replicate_scores(y_test, pred, weights, freq)
            reps[(system.name, name)] = rep
            row = {
                "system": system.name,
                "variant": system.variant,
                "paper": system.paper,
                "ensemble_size": system.ensemble_size,
                "threshold_kind": name,
                "threshold": threshold,
                # chooses the best CNN of Table 3 (never chosen on test)
                "val_macro_f": scores_at(y_val, system.validation >= threshold).macro_f,
                **vars(point),
            }
            row["micro_f_low"], row["micro_f_high"] = interval(rep.micro_f)
            row["macro_f_low"], row["macro_f_high"] = interval(rep.macro_f)
            if len(system.member_test) > 1:  # the spread of the single models behind it
                per_seed = [scores_at(y_test, t >= threshold) for t in system.member_test]
                row["seed_micro_f_sd"] = float(np.std([s.micro_f for s in per_seed], ddof=1))
                row["seed_macro_f_sd"] = float(np.std([s.macro_f for s in per_seed], ddof=1))
            rows.append(row)
            for d, value in enumerate(decile_macro_f(y_test, pred, freq), start=1):
                low, high = interval(rep.deciles[:, d - 1])
                decile_rows.append(
                    {
                        "system": system.name,
                        "variant": system.variant,
                        "paper": system.paper,
                        "ensemble_size": system.ensemble_size,
                        "threshold_kind": name,
                        "decile": d,
                        "macro_f": value,
                        "macro_f_low": low,
                        "macro_f_high": high,
                    }
                )
    scores = pd.DataFrame(rows)
    frequency = pd.DataFrame(
        {
            "code": corpus.label_table["code"],  # codes only: reports hold no text
            "train_frequency": freq,
        }
    ).sort_values("train_frequency", ascending=False, kind="stable")
    frequency.insert(0, "rank", np.arange(1, len(frequency) + 1))
    return Report(
        scores, pd.DataFrame(decile_rows), frequency, _comparisons(scores, reps), replicates
    )


def _comparisons(scores: pd.DataFrame, reps: dict) -> pd.DataFrame:
    """Paired bootstrap p-values: each variant against scratch (same ensemble size), the best
    CNN (by validation macro-F) against each baseline, and the best system against the second
    best, by macro-F and by micro-F."""
    rows = []
    for kind in THRESHOLD_KINDS:
        frame = scores[scores["threshold_kind"] == kind]
        cnn = frame[~frame["variant"].isin(BASELINES)]
        if not cnn.empty:
            best = cnn.sort_values("val_macro_f", ascending=False, kind="stable").iloc[0]
            for base in frame[frame["variant"].isin(BASELINES)].itertuples():
                rows.append(_pair(reps, kind, best["system"], base.system, "best CNN vs baseline"))
        for row in cnn.itertuples():
            base = cnn[(cnn["variant"] == "scratch") & (cnn["ensemble_size"] == row.ensemble_size)]
            if row.variant == "scratch" or base.empty:
                continue
            rows.append(_pair(reps, kind, row.system, base.iloc[0]["system"], "vs scratch"))
        ranked = frame.sort_values("macro_f", ascending=False)
        if len(ranked) >= 2:
            rows.append(
                _pair(
                    reps,
                    kind,
                    ranked.iloc[0]["system"],
                    ranked.iloc[1]["system"],
                    "best vs second best (macro-F)",
                )
            )
    return pd.DataFrame(rows)


def _pair(reps: dict, kind: str, a: str, b: str, comparison: str) -> dict:
    ra, rb = reps[(a, kind)], reps[(b, kind)]
    return {
        "threshold_kind": kind,
        "comparison": comparison,
        "system": a,
        "against": b,
        "macro_f_delta": float(np.mean(ra.macro_f - rb.macro_f)),
        "macro_f_p": paired_p_value(ra.macro_f, rb.macro_f),
        "micro_f_delta": float(np.mean(ra.micro_f - rb.micro_f)),
        "micro_f_p": paired_p_value(ra.micro_f, rb.micro_f),
    }


def table2(report: Report, kind: ThresholdKind) -> pd.DataFrame:
    """The paper's Table 2: variants as single models, then as ensembles (AVG)."""
    frame = report.scores[
        (report.scores["threshold_kind"] == kind) & ~report.scores["variant"].isin(BASELINES)
    ].copy()
    order = {name: i for i, name in enumerate(VARIANTS)}
    frame["_order"] = frame["variant"].map(order) + 100 * (frame["ensemble_size"] > 1)
    frame = frame.sort_values("_order")
    pvals = report.pvalues[
        (report.pvalues["threshold_kind"] == kind) & (report.pvalues["comparison"] == "vs scratch")
    ]
    p = dict(zip(pvals["system"], pvals["macro_f_p"], strict=True))
    out = pd.DataFrame(
        {
            "method": frame["paper"],
            "variant": frame["variant"],
            "ensemble_size": frame["ensemble_size"],
            "micro_f": frame["micro_f"] * 100,
            "micro_f_ci": _ci(frame, "micro_f"),
            "macro_f": frame["macro_f"] * 100,
            "macro_f_ci": _ci(frame, "macro_f"),
            "macro_f_p_vs_scratch": frame["system"].map(p),
            "seed_sd_macro_f": frame.get("seed_macro_f_sd", pd.Series(np.nan, index=frame.index))
            * 100,
        }
    )
    return out.reset_index(drop=True)


def table3(report: Report, kind: ThresholdKind) -> pd.DataFrame:
    """The paper's Table 3: the baselines (LR, LR + L2R, LR + L2R + NERC), the CNN without
    transfer and the best transfer variant (by validation macro-F; single and ensemble), with
    the improvement over LR in points; on baseline rows the best CNN's gain over that baseline
    and its paired-bootstrap p-value; and the paper's UKLarge numbers beside ours."""
    frame = report.scores[report.scores["threshold_kind"] == kind]
    lr = frame[frame["variant"] == "lr"].iloc[0]
    transfer = frame[~frame["variant"].isin([*BASELINES, "scratch"])]
    best = transfer.sort_values("val_macro_f", ascending=False, kind="stable").iloc[0]["variant"]
    rows = [frame[frame["variant"] == b].iloc[0] for b in BASELINES if b in set(frame["variant"])]
    for variant in ("scratch", best):
        part = frame[frame["variant"] == variant].sort_values("ensemble_size")
        rows.extend(row for _, row in part.iterrows())
    table = pd.DataFrame(rows)
    versus = report.pvalues[
        (report.pvalues["threshold_kind"] == kind)
        & (report.pvalues["comparison"] == "best CNN vs baseline")
    ].set_index("against")
    paper = [
        PAPER_UKLARGE.get((v, int(n)))
        for v, n in zip(table["variant"], table["ensemble_size"], strict=True)
    ]
    return pd.DataFrame(
        {
            "method": table["paper"],
            "variant": table["variant"],
            "ensemble_size": table["ensemble_size"],
            "micro_f": table["micro_f"] * 100,
            "micro_f_ci": _ci(table, "micro_f"),
            "micro_f_gain_over_lr": (table["micro_f"] - lr["micro_f"]) * 100,
            "macro_f": table["macro_f"] * 100,
            "macro_f_ci": _ci(table, "macro_f"),
            "macro_f_gain_over_lr": (table["macro_f"] - lr["macro_f"]) * 100,
            "best_cnn": table["system"].map(versus["system"]),
            "best_cnn_micro_f_gain": table["system"].map(versus["micro_f_delta"]) * 100,
            "best_cnn_micro_f_p": table["system"].map(versus["micro_f_p"]),
            "best_cnn_macro_f_gain": table["system"].map(versus["macro_f_delta"]) * 100,
            "best_cnn_macro_f_p": table["system"].map(versus["macro_f_p"]),
            "paper_uklarge_micro_f": [p[0] if p else np.nan for p in paper],
            "paper_uklarge_macro_f": [p[1] if p else np.nan for p in paper],
        }
    ).reset_index(drop=True)


def table3_caption(kind: ThresholdKind, replicates: int) -> str:
    return (
        caption(kind, replicates)
        + " best_cnn: the CNN system with the highest validation macro-F; best_cnn_*_gain: its"
        " mean paired-bootstrap gain over the row's baseline, with the p-value. " + PAPER_NOTE + "."
    )


def _ci(frame: pd.DataFrame, metric: str) -> list[str]:
    return [
        f"[{lo * 100:.1f}, {hi * 100:.1f}]"
        for lo, hi in zip(frame[f"{metric}_low"], frame[f"{metric}_high"], strict=True)
    ]


def caption(kind: ThresholdKind, replicates: int) -> str:
    return (
        f"Test split. Threshold: {THRESHOLD_TEXT[kind]}. Macro convention: {MACRO_CONVENTION}."
        f" F-scores in points (x100); 95% intervals from {replicates} bootstrap replicates"
        " of the test documents; p-values (against scratch of the same ensemble size) from a"
        " paired bootstrap; seed_sd: standard deviation across seeds of an ensemble's single"
        " members."
    )
