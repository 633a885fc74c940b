"""The sweep's table rows (docs/DESIGN.md section 6): what a trial reports and what
trials.parquet and members.parquet hold (`TrialOutcome`, `MemberRow`), the metric columns
they share, and reading trials.parquet. The files themselves are artifacts.py's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from icdtransfer.artifacts import THRESHOLD_KINDS, Metrics, ThresholdKind, Training

# --- sweep rows (trials.parquet, members.parquet) ----------------------------------------------

TRIAL_MEASURES = ("micro_f", "macro_f", "macro_f_all_labels", "micro_p", "micro_r")
TrialStatus = Literal["TERMINATED", "EARLY_STOPPED", "ERROR"]


def test_column(measure: str, kind: ThresholdKind) -> str:
    """A test-split column of the sweep tables, e.g. `test_macro_f_tuned`."""
    return f"test_{measure}_{kind}"


def metric_columns(metrics: Metrics) -> dict[str, Any]:
    """The headline numbers of a metrics.json as the sweep tables' flat columns."""
    out: dict[str, Any] = {}
    for kind in THRESHOLD_KINDS:
        scores = metrics.at(kind)
        for measure in TRIAL_MEASURES:
            out[test_column(measure, kind)] = getattr(scores, measure)
        out[test_column("decile_macro_f", kind)] = scores.decile_macro_f
    out["threshold_tuned"] = metrics.tuned.threshold
    out["val_macro_f"] = metrics.validation["tuned"].macro_f
    out["val_micro_f"] = metrics.validation["tuned"].micro_f
    return out


@dataclass
class TrialOutcome:
    """A finished trial's last report to Tune; its fields and metric columns become the
    trial's row in trials.parquet (next to trial_id, status, error and config_* columns).

    The convergence columns summarise the ensemble's members (docs/DESIGN.md section 4), one
    list entry per seed in `seeds` order: `converged` is true when every member converged
    (early stopping fired), `unconverged_members` counts those the epoch cap stopped."""

    variant: str
    ensemble_size: int
    member_key: str
    seeds: list[int]
    members_trained_here: int
    node: str
    data_from: Literal["driver folder", "object store"]
    trial_seconds: float
    metrics: Metrics
    converged: bool
    unconverged_members: int
    member_best_epochs: list[int]
    member_epochs_run: list[int]
    epoch_cap: int
    patience: int
    member_validation_curves: list[list[float]]  # validation macro-F by epoch, per member

    @staticmethod
    def convergence(trainings: Sequence[Training]) -> dict[str, Any]:
        """The convergence fields of an ensemble whose members ended as `trainings`."""
        return {
            "converged": all(t.converged for t in trainings),
            "unconverged_members": sum(not t.converged for t in trainings),
            "member_best_epochs": [t.best_epoch for t in trainings],
            "member_epochs_run": [t.epochs_run for t in trainings],
            "epoch_cap": max(t.epoch_cap for t in trainings),
            "patience": max(t.patience for t in trainings),
            "member_validation_curves": [t.validation_curve for t in trainings],
        }

    def report(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del fields["metrics"]
        return {**metric_columns(self.metrics), **fields, "final": True}


# trials.parquet keeps these columns of a trial's reports, besides test_* and val_* ones
TRIAL_COLUMNS = (
    *(f.name for f in dataclasses.fields(TrialOutcome) if f.name != "metrics"),
    "threshold_tuned",
    "time_total_s",
    "training_iteration",
)


@dataclass
class MemberRow:
    """One trained member in members.parquet (and in the member store's index)."""

    variant: str
    adaptation_size: int
    word_dropout: float
    learning_rate: float
    epochs: int
    node: str
    train_seconds: float
    study: str  # the study whose trial trained it (members are shared between studies)
    trial_id: str
    training: Training
    metrics: Metrics
    gpus: str = ""  # the GPU ids Ray gave the trial, e.g. "0" ("" on CPU)

    def row(self) -> dict[str, Any]:
        training = dataclasses.asdict(self.training)
        # the curve as JSON text, like trials.parquet's lists (history.json has every column)
        for curve in ("validation_curve", "validation_loss_curve", "train_loss_curve"):
            training[curve] = json.dumps(training[curve])
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del fields["training"], fields["metrics"]
        return {**fields, **training, **metric_columns(self.metrics)}


def read_trials(path: Path) -> pd.DataFrame:
    """trials.parquet; tables written before the threshold kinds were named one way
    (`test_micro_f_0.5`) read with today's column names."""
    frame = pd.read_parquet(path)
    return frame.rename(columns=lambda c: c.replace("_0.5", "_fixed") if c[:5] == "test_" else c)
