"""What a sweep trial tells Tune about the members it trains: each epoch's report, its Tune
checkpoints (the training loop's snapshot and the trial's progress), and what a restarted
trial finds of them (sweep/trial.py's module docstring says what the reports mean)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icdtransfer.sweep.faults import fault
from icdtransfer.train.state import EpochRecord, Snapshot

CHECKPOINT_S = 30.0  # a member's training between two Tune checkpoints (TrialCheckpointer)
CHECKPOINT_S_VARIABLE = "ICDTRANSFER_CHECKPOINT_S"  # the user's choice instead (seconds)
FIRST_MEMBER_METRIC = "val_macro_f_first_member"  # ASHA's metric ...
CLOCK = "member_epoch"  # ... and its time attribute: epochs of the first member
FIRST_MEMBER_CURVE = "val_macro_f_first_member_curve"  # its values so far, JSON (search.py)
SNAPSHOT_FILE = "snapshot.pt"
PROGRESS_FILE = "progress.json"


@dataclass
class Progress:
    """What a trial's Tune checkpoint records besides the loop's snapshot: the member whose
    snapshot it holds, and how many epochs of the first member Tune has seen."""

    key: str
    seed: int | None = None
    first_reported: int = 0


class Reporter:
    """The trial's reports to Tune (sweep/trial.py's module docstring), and its Tune
    checkpoints."""

    def __init__(self, progress: Progress, first_seed: int) -> None:
        self.progress = progress
        self.first_seed = first_seed

    def metrics(
        self, seed: int, epoch: int, val_macro_f: float, curve: list[float]
    ) -> dict[str, Any]:
        """An epoch's report; the first member's carries ASHA's value, clock and the curve up
        to this epoch (a resumed scheduler may have missed a rung's report: search.py)."""
        out: dict[str, Any] = {"member_seed": seed, "seed_epoch": epoch, "final": False}
        if seed == self.first_seed:
            out.update({FIRST_MEMBER_METRIC: val_macro_f, CLOCK: epoch})
            out[FIRST_MEMBER_CURVE] = json.dumps([round(float(v), 6) for v in curve])
        return out

    def replay(self, curve: list[float]) -> None:
        """The stored first member's validation curve, from the first epoch Tune has not seen."""
        from ray import tune

        for epoch, value in enumerate(curve, start=1):
            if epoch > self.progress.first_reported:
                report = self.metrics(self.first_seed, epoch, value, curve[:epoch])
                tune.report({**report, "replayed": True})
                self.progress.first_reported = epoch

    def epoch(self, seed: int, snapshot: Snapshot, record: EpochRecord) -> None:
        """Report an epoch of a member trained here, without a checkpoint."""
        from ray import tune

        if seed == self.first_seed:
            self.progress.first_reported = record.epoch
        curve = [r.val_macro_f for r in snapshot.loop.history]
        tune.report(
            {**self.metrics(seed, record.epoch, record.val_macro_f, curve), "replayed": False}
        )

    def checkpoint(self, seed: int, snapshot: Snapshot, record: EpochRecord) -> None:
        """Report an epoch of a member trained here, with the loop's snapshot as checkpoint."""
        from ray import tune

        if seed == self.first_seed:
            self.progress.first_reported = record.epoch
        self.progress.seed = seed
        with tempfile.TemporaryDirectory(prefix="icdtransfer-ckpt-") as folder:
            snapshot.save(Path(folder) / SNAPSHOT_FILE)
            (Path(folder) / PROGRESS_FILE).write_text(json.dumps(dataclasses.asdict(self.progress)))
            fault("trial_before_report")
            curve = [r.val_macro_f for r in snapshot.loop.history]
            report = self.metrics(seed, record.epoch, record.val_macro_f, curve)
            tune.report(
                {**report, "replayed": False},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
            fault("trial_after_report")


def restored(key: str) -> tuple[Progress, Snapshot | None]:
    """The trial's progress and member snapshot from its last Tune checkpoint (a restarted
    trial), or a fresh start."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return Progress(key), None
    with checkpoint.as_directory() as folder:
        progress = Progress(**json.loads((Path(folder) / PROGRESS_FILE).read_text()))
        if progress.key != key:
            return Progress(key), None
        # `is not None`: seed 0 is a seed (a falsy test lost its snapshot, retraining it)
        has = progress.seed is not None and (Path(folder) / SNAPSHOT_FILE).exists()
        snapshot = Snapshot.load(Path(folder) / SNAPSHOT_FILE) if has else None
    return progress, snapshot


def checkpoint_seconds() -> float:
    """Seconds of a member's training between two of its Tune checkpoints, read in the driver
    (the runner sends it to every trial): ICDTRANSFER_CHECKPOINT_S where set (0: every epoch,
    for nodes that may vanish often), else 0 under the fault-injection test (it kills a trial
    at its checkpoints), else CHECKPOINT_S."""
    from icdtransfer.schema import ConfigError

    raw = os.environ.get(CHECKPOINT_S_VARIABLE, "").strip()
    if not raw:
        return 0.0 if os.environ.get("ICDTRANSFER_FAULT") else CHECKPOINT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0.0 or seconds == float("inf"):
        raise ConfigError(
            f"environment variable {CHECKPOINT_S_VARIABLE}={raw!r}: expected a number of "
            "seconds >= 0 (0: a Tune checkpoint after every epoch)"
        )
    return seconds


@dataclass
class TrialCheckpointer:
    """The training loop's Checkpointer in a trial: it resumes from the trial's restored
    snapshot when that was of this member, and hands every epoch to the Reporter, with a
    Tune checkpoint once `every_s` seconds have passed since the member's last one (or since
    its training began).

    Every Tune checkpoint is kept (runner._checkpoints) and is a whole snapshot, 35-60 MB at
    the default dimensions: one per epoch took a quarter of a default sweep's time (0.25 s of
    each 1.4 s epoch) and ~40 GB of disk per study. A trial restarted from an earlier
    checkpoint retrains the epochs after it, which end as they did (randomness is fixed by
    seed and epoch: train/loop.py), and reports them again."""

    seed: int
    reporter: Reporter
    snapshot: Snapshot | None
    every_s: float = CHECKPOINT_S
    clock: Callable[[], float] = time.monotonic
    last: float | None = None  # when the last checkpoint was written (or training began)

    def __post_init__(self) -> None:
        if self.last is None:
            self.last = self.clock()

    def load(self) -> Snapshot | None:
        return self.snapshot

    def save(self, snapshot: Snapshot | None, record: EpochRecord) -> None:
        if snapshot is None:
            return
        now = self.clock()
        assert self.last is not None
        if now - self.last >= self.every_s:
            self.reporter.checkpoint(self.seed, snapshot, record)
            self.last = now
        else:
            self.reporter.epoch(self.seed, snapshot, record)
