"""Verdicts that replicate (docs/DESIGN.md section 5): every comparison on all seeds and on
each of two disjoint halves of them.

A comparison (system against reference) is made three times: on all S seeds, on the first
floor(S/2) seeds and on the rest. Each time, the two systems are restricted to those seeds and
rescored from their probabilities (rows as in report/aggregate.py: the mean over k-subsets,
half-sampled seeds x resampled patients), the paired difference on test is computed replicate
by replicate, and its p-value is Holm-adjusted within the family (its comparisons, over both
headline metrics: micro-F and macro-F over all labels; the rarest and most frequent decile's
macro-F are a second family). The verdict at Holm-adjusted 0.05 is `better`, `worse` or `no
detectable difference`; a comparison whose two halves get different verdicts **did not
replicate**, and every table and figure says so.

What is compared is fixed on all seeds (and on validation) before the halves are scored: the
halves test the same pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from icdtransfer.artifacts import THRESHOLD_KINDS
from icdtransfer.report.bootstrap import Replicates, holm, interval, paired_p_value
from icdtransfer.report.systems import Gold, System

ALPHA = 0.05
SEED_SETS = ("all seeds", "first half", "second half")
HEADLINE = ("micro_f", "macro_f_all_labels")  # one Holm family
ENDS = ("rarest_macro_f", "frequent_macro_f")  # deciles 1 and 10 (all labels): another
METRICS = HEADLINE + ENDS
BETTER, WORSE, NONE = "better", "worse", "no detectable difference"
REPLICATED, NOT_REPLICATED = "replicated", "did not replicate"


def halves(seeds: list[int]) -> tuple[list[int], list[int]]:
    """Two disjoint halves of the seeds (sorted): the first floor(S/2) and the rest."""
    ordered = sorted(seeds)
    cut = len(ordered) // 2
    return ordered[:cut], ordered[cut:]


def seed_sets(systems: list[System]) -> dict[str, list[int] | None]:
    """The three seed sets of a study: None means every seed a system has."""
    seeds = sorted({s for system in systems for s in system.seeds})
    first, second = halves(seeds)
    return {SEED_SETS[0]: None, SEED_SETS[1]: first, SEED_SETS[2]: second}


def verdict(delta: float, p_holm: float) -> str:
    if np.isnan(p_holm) or p_holm >= ALPHA:
        return NONE
    return BETTER if delta > 0 else WORSE


def _metric(rep: Replicates, name: str) -> np.ndarray:
    if name == "rarest_macro_f":
        return rep.deciles_all_labels[:, 0]
    if name == "frequent_macro_f":
        return rep.deciles_all_labels[:, 9]
    return getattr(rep, name)


def _point(scores: pd.DataFrame, deciles: pd.DataFrame, system: str, kind: str) -> dict:
    row = scores[(scores["system"] == system) & (scores["threshold_kind"] == kind)].iloc[0]
    part = deciles[(deciles["system"] == system) & (deciles["threshold_kind"] == kind)]
    ends = part.set_index("decile")["macro_f_all_labels"]
    return {
        "micro_f": row["micro_f"],
        "macro_f": row["macro_f"],
        "macro_f_all_labels": row["macro_f_all_labels"],
        "rarest_macro_f": ends.get(1, np.nan),
        "frequent_macro_f": ends.get(10, np.nan),
    }


def compare(
    systems: list[System],
    pairs: dict[str, list[tuple[str, str]]],
    family: str,
    gold: Gold,
    replicates: int,
    seed: int,
    scorer: Callable[..., tuple[pd.DataFrame, pd.DataFrame, dict]],
) -> pd.DataFrame:
    """One family's comparisons (pairs per threshold kind: system, reference) on the three
    seed sets, with verdicts, and on the all-seeds rows whether they replicated."""
    wanted = {name for kind_pairs in pairs.values() for pair in kind_pairs for name in pair}
    chosen = [s for s in systems if s.name in wanted]
    rows = []
    for label, seeds in seed_sets(chosen).items():
        subset = chosen if seeds is None else [s.restricted(seeds) for s in chosen]
        if any(not s.members for s in subset):
            continue
        scores, deciles, reps = scorer(subset, gold, replicates, seed)
        for kind in THRESHOLD_KINDS:
            kind_rows = []
            for system, against in pairs.get(kind, []):
                a, b = reps[(system, kind)], reps[(against, kind)]
                pa = _point(scores, deciles, system, kind)
                pb = _point(scores, deciles, against, kind)
                row = {
                    "threshold_kind": kind,
                    "family": family,
                    "seed_set": label,
                    "seeds": ",".join(map(str, seeds)) if seeds is not None else "all",
                    "system": system,
                    "against": against,
                }
                row["macro_f_delta"] = float(pa["macro_f"] - pb["macro_f"])
                for metric in METRICS:
                    diff = _metric(a, metric) - _metric(b, metric)
                    row[f"{metric}_delta"] = float(pa[metric] - pb[metric])
                    if np.isnan(diff).any():
                        row[f"{metric}_delta_low"] = row[f"{metric}_delta_high"] = np.nan
                        row[f"{metric}_p"] = np.nan
                        continue
                    row[f"{metric}_delta_low"], row[f"{metric}_delta_high"] = interval(diff)
                    row[f"{metric}_p"] = paired_p_value(_metric(a, metric), _metric(b, metric))
                kind_rows.append(row)
            _adjust(kind_rows)
            rows.extend(kind_rows)
    frame = pd.DataFrame(rows)
    return mark_replication(frame) if not frame.empty else frame


def _adjust(rows: list[dict]) -> None:
    """Holm within the family: the headline metrics together, the decile ends together."""
    for group in (HEADLINE, ENDS):
        cells = [(i, m) for i, r in enumerate(rows) for m in group if not np.isnan(r[f"{m}_p"])]
        adjusted = holm(np.array([rows[i][f"{m}_p"] for i, m in cells])) if cells else []
        for (i, m), value in zip(cells, adjusted, strict=True):
            rows[i][f"{m}_p_holm"] = float(value)
        for r in rows:
            for m in group:
                r.setdefault(f"{m}_p_holm", np.nan)
                r[f"{m}_verdict"] = verdict(r[f"{m}_delta"], r[f"{m}_p_holm"])
            r[f"family_size_{'headline' if group == HEADLINE else 'ends'}"] = len(cells)


def mark_replication(frame: pd.DataFrame) -> pd.DataFrame:
    """`<metric>_replication` on every row: `replicated` when both halves got the same
    verdict, `did not replicate` otherwise (empty where a half is missing)."""
    keys = ["threshold_kind", "family", "system", "against"]
    halves_ = frame[frame["seed_set"] != SEED_SETS[0]]
    for metric in METRICS:
        column = f"{metric}_verdict"
        by_pair = halves_.pivot_table(
            index=keys, columns="seed_set", values=column, aggfunc="first"
        )
        status = {}
        for key, row in by_pair.iterrows():
            if all(s in row and isinstance(row[s], str) for s in SEED_SETS[1:]):
                same = row[SEED_SETS[1]] == row[SEED_SETS[2]]
                status[key] = REPLICATED if same else NOT_REPLICATED
        frame[f"{metric}_replication"] = [
            status.get(tuple(r[k] for k in keys), "") for _, r in frame.iterrows()
        ]
    return frame


def on_all_seeds(pvalues: pd.DataFrame) -> pd.DataFrame:
    """The comparisons made on all seeds (the ones the tables print)."""
    return pvalues[pvalues["seed_set"] == SEED_SETS[0]] if not pvalues.empty else pvalues


def verdict_text(row: pd.Series | dict, metric: str) -> str:
    """A comparison's verdict as printed: 'better', 'worse' or 'no detectable difference',
    with ', did not replicate' when the halves disagree."""
    text = row[f"{metric}_verdict"]
    if row.get(f"{metric}_replication") == NOT_REPLICATED:
        text += f", {NOT_REPLICATED}"
    return text


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """How two runs' all-seeds verdicts agree (the replication check across machines): the
    share of (comparison, metric) verdicts that are equal, and the opposite ones."""
    keys = ["threshold_kind", "family", "system", "against"]
    left = a[a["seed_set"] == SEED_SETS[0]].set_index(keys)
    right = b[b["seed_set"] == SEED_SETS[0]].set_index(keys)
    common = left.index.intersection(right.index)
    same = opposite = total = 0
    for key in common:
        for metric in METRICS:
            va, vb = left.loc[key, f"{metric}_verdict"], right.loc[key, f"{metric}_verdict"]
            total += 1
            same += va == vb
            opposite += {va, vb} == {BETTER, WORSE}
    return {
        "verdicts": total,
        "agree": same,
        "opposite": opposite,
        "share": same / total if total else float("nan"),
    }
