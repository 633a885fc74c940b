"""The systems a report compares, rebuilt from stored probabilities, and the gold labels.

A grid study over variant x ensemble_size gives one system per finished trial:

* every system holds every seed the study trained for its member configuration (the
  ensembles' members are single models too), and its ensemble size k: its row is the mean
  over all k-subsets of those seeds (k = 1: the mean over seeds; k > 1: the mean over every
  ensemble of k of them, each the average of its members' probabilities), not one seed or one
  ensemble picked out (report/bootstrap.py, Seeds).

Baselines (the paper's Table 3: LR, LR + L2R, LR + L2R + NERC) are one model each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from icdtransfer.artifacts import MemberInfo, Training, average_members, read_probs
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import dense
from icdtransfer.model.transfer import VARIANTS
from icdtransfer.report.bootstrap import subsets
from icdtransfer.rows import read_trials

Probs = tuple[np.ndarray, np.ndarray]  # (validation, test) probabilities, documents x labels
# The paper's Table 3 baselines, in its order: method -> (system name, label in the tables)
BASELINES = {
    "lr": ("LR", "LR (tf-idf n-grams)"),
    "lr_l2r": ("LR + L2R", "LR + L2R (LR and kNN scores, LightGBM lambdarank)"),
    "lr_l2r_nerc": ("LR + L2R + NERC", "LR + L2R + NERC (also dictionary NERC codes)"),
}


@dataclass
class System:
    name: str  # e.g. "tune_all x3", "LR"
    variant: str  # a VARIANTS name, or a BASELINES method
    paper: str  # the paper's name for the row
    ensemble_size: int
    members: list[Probs]  # one per seed (a baseline: its one model)
    seeds: list[int] = field(default_factory=list)
    baseline: bool = False
    folders: list[Path] = field(default_factory=list)  # each member's folder, seeds' order
    trainings: list[Training | None] = field(default_factory=list)  # how each member ended
    config: dict[str, Any] = field(default_factory=dict)  # the trial's config (no prefix)

    @property
    def converged(self) -> tuple[int, int]:
        """(members that converged, members with a training record): (0, 0) for a
        baseline, which has no epochs."""
        recorded = [t for t in self.trainings if t is not None]
        return sum(t.converged for t in recorded), len(recorded)

    def scored(self) -> list[Probs]:
        """What the row scores: every k-subset of its seeds as a model (a single model, or an
        ensemble: the paper's Gamma-model average of probabilities), in the order of
        bootstrap.subsets; the row is their mean."""
        size = min(self.ensemble_size, len(self.members))
        if size == 1:
            return self.members
        return [
            average_members([self.members[i] for i in combo])
            for combo in subsets(len(self.members), size)
        ]

    def restricted(self, seeds: list[int]) -> System:
        """The same system on a subset of its seeds (a replication half)."""
        if self.baseline or not self.seeds:
            return self
        keep = [i for i, s in enumerate(self.seeds) if s in set(seeds)]
        return replace(
            self,
            members=[self.members[i] for i in keep],
            seeds=[self.seeds[i] for i in keep],
            folders=[self.folders[i] for i in keep] if self.folders else [],
            trainings=[self.trainings[i] for i in keep] if self.trainings else [],
        )


@dataclass
class Gold:
    """True labels of the evaluation splits and the label table's training frequencies."""

    validation: np.ndarray  # bool, documents x labels
    test: np.ndarray
    train_frequency: np.ndarray
    codes: list[str]
    test_patients: np.ndarray | None = None  # each test document's patient (the bootstrap's unit)

    @classmethod
    def of(cls, corpus: Corpus) -> Gold:
        test = corpus.split("test")
        return cls(
            dense(corpus.labels[corpus.split("validation")]),
            dense(corpus.labels[test]),
            corpus.label_table["train_frequency"].to_numpy(),
            list(corpus.label_table["code"]),  # codes only: reports hold no text
            corpus.docs["patient_id"].to_numpy()[test],
        )

    @property
    def groups(self) -> np.ndarray | int:
        """What the bootstrap resamples: the test documents' patients (one document each
        where they are unknown)."""
        return len(self.test) if self.test_patients is None else self.test_patients


def study_systems(results: Path) -> list[System]:
    """One system per finished trial of a grid study over variant x ensemble_size."""
    trials = read_trials(results / "trials.parquet")
    trials = trials[trials["status"] == "TERMINATED"]
    column = "member_seeds" if "member_seeds" in trials else "seeds"  # every_seed studies
    seeds_of = trials[column].map(lambda s: json.loads(s) if isinstance(s, str) else list(s))
    trained: dict[str, set[int]] = {}  # member key -> every seed the study trained for it
    for key, seeds in zip(trials["member_key"], seeds_of, strict=True):
        trained.setdefault(key, set()).update(int(s) for s in seeds)
    systems = []
    for row in trials.itertuples():
        size = int(row.ensemble_size)
        used = sorted(trained[row.member_key])  # every seed of the configuration
        folder = results / "members" / row.member_key
        folders = [folder / f"seed{s}" for s in used]
        systems.append(
            System(
                name=f"{row.variant} x{size}" if size > 1 else row.variant,
                variant=row.variant,
                paper=VARIANTS[row.variant].paper + (" AVG" if size > 1 else ""),
                ensemble_size=size,
                members=[read_probs(f) for f in folders],
                seeds=used,
                folders=folders,
                trainings=[MemberInfo.read(f).training for f in folders],
                config={
                    c.removeprefix("config_"): getattr(row, c)
                    for c in trials.columns
                    if c.startswith("config_")
                },
            )
        )
    return systems


def baseline_system(folder: Path, method: str = "lr") -> System:
    name, label = BASELINES[method]
    return System(name, method, label, 1, [read_probs(folder)], baseline=True)
