"""The training loop's state and its checkpoints: what a killed run needs to resume.

A checkpoint (`Snapshot`) holds the current weights, the optimizer, the best weights so far
and the loop's bookkeeping (`LoopState`). Where it goes is a `Checkpointer`: a local file
(`FileCheckpointer`, the single-process path), Ray Train's checkpoints (train/distributed.py),
or nowhere (`NoCheckpoints`). The loop calls `save` on every rank after every epoch; only the
master rank has a snapshot to give.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import torch

from icdtransfer.artifacts import Training
from icdtransfer.data.atomic import atomic_file

log = logging.getLogger(__name__)
# below the floor, early stopping may fire once the validation loss has not improved for
# this many times the patience: a model whose loss has stopped falling is not in the plateau
# before learning starts that the floor guards, it is overfitting (DESIGN section 4)
LOSS_GATE = 2


@dataclass
class EpochRecord:
    """One epoch in history.json (and in each Ray Train report)."""

    epoch: int  # 1-based
    train_loss: float
    train_docs_per_s: float
    val_macro_f: float  # at the threshold tuned on validation this epoch
    val_micro_f: float
    val_threshold: float
    workers: int | None = None  # Ray Train runs: the number of DDP workers
    val_loss: float | None = None  # J_CE on validation (the training loss's definition)
    # lower-variance companions of val_macro_f, for the convergence audit (train/audit.py):
    # macro-F at the threshold best for macro-F, and its mean over thresholds 0.05-0.5
    val_macro_f_best: float | None = None
    val_macro_f_band: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class LoopState:
    """Early-stopping bookkeeping, saved in every checkpoint."""

    epoch: int = 0  # epochs finished
    best_epoch: int = -1  # 1-based; -1 before the first epoch
    best_f: float = -1.0  # the best validation macro-F so far
    epochs_without_improvement: int = 0  # of the watched (smoothed) criterion
    history: list[EpochRecord] = field(default_factory=list)
    best_watched: float = -1.0  # the best mean of `smoothing` epochs' criterion so far
    # the criterion of predicting every code (train/validation.py, trivial_macro_f): a model
    # whose watched criterion has not beaten it has not started learning, and may not stop,
    # unless its validation loss has not improved for LOSS_GATE x patience epochs
    floor: float = -1.0
    best_val_loss: float | None = None  # the lowest validation loss so far
    loss_waited: int = 0  # epochs since the validation loss last fell below that
    audit_stop: int = 0  # a convergence audit: the epoch the rule stopped at (0: not yet)
    audit_best: float = -1.0  # ... and the best criterion then
    lr_reductions: int = 0  # learning-rate reductions on plateau so far
    last_reduction: int = 0  # the epoch after which the last one was made

    def waited(self) -> int:
        """Epochs without a better validation macro-F since the best or since the learning
        rate was last reduced, whichever came later."""
        return min(self.epochs_without_improvement, self.epoch - self.last_reduction)

    def stopped(self, patience: int, min_epochs: int = 1, lr_reductions: int = 0) -> bool:
        """Early stopping: once the learning rate has been reduced `lr_reductions` times,
        `patience` epochs in a row without a better validation criterion, once at least
        `min_epochs` epochs have run and the model has started learning: its criterion has
        beaten `floor`, the score of predicting every code, or its validation loss has not
        improved for LOSS_GATE x `patience` epochs (docs/DESIGN.md section 4)."""
        return (
            self.epoch >= min_epochs
            and self.lr_reductions >= lr_reductions
            and self.waited() >= patience
            and self.learning(patience)
        )

    def learning(self, patience: int) -> bool:
        """Whether the model has started learning: its watched criterion has beaten `floor`,
        or its validation loss has not improved for LOSS_GATE x `patience` epochs (it is
        overfitting, not in the plateau before learning starts)."""
        return self.best_watched > self.floor or self.loss_waited >= LOSS_GATE * patience

    def reduce_lr(self, lr_patience: int, lr_reductions: int) -> bool:
        """Whether to reduce the learning rate now: `lr_patience` epochs without a better
        validation macro-F since the best or the last reduction, reductions left, and the
        model has started learning (`learning`: a plateau before it starts is not one)."""
        if lr_patience <= 0 or self.lr_reductions >= lr_reductions:
            return False
        if self.waited() < lr_patience or not self.learning(lr_patience):
            return False
        self.lr_reductions += 1
        self.last_reduction = self.epoch
        return True

    def record(
        self,
        record: EpochRecord,
        min_delta: float = 0.0,
        criterion: str = "val_macro_f",
        smoothing: int = 1,
    ) -> bool:
        """Add a finished epoch; returns whether it is the new best on `criterion` (an
        EpochRecord field; the weights kept are that epoch's). Early stopping counts the
        epochs since the mean of the last `smoothing` epochs' criterion last beat its best by
        more than `min_delta` (docs/DESIGN.md section 4)."""
        self.history.append(record)
        self.epoch = record.epoch
        value = getattr(record, criterion)
        improved = value > self.best_f + min_delta
        if improved:
            self.best_f, self.best_epoch = value, record.epoch
        # the rule watches the mean of the last `smoothing` epochs' criterion
        recent = [getattr(r, criterion) for r in self.history[-smoothing:]]
        watched = sum(recent) / len(recent)
        if watched > self.best_watched + min_delta:
            self.best_watched = watched
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        loss = record.val_loss
        if loss is not None and math.isfinite(loss):
            if self.best_val_loss is None or loss < self.best_val_loss:
                self.best_val_loss, self.loss_waited = loss, 0
            else:
                self.loss_waited += 1
        return improved

    def training(
        self,
        epoch_cap: int,
        patience: int,
        min_delta: float = 0.0,
        min_epochs: int = 1,
        lr_reductions: int = 0,
        criterion: str = "val_macro_f",
    ) -> Training:
        """How the run ended (docs/DESIGN.md section 4): converged when early stopping fired,
        also where it fired at the cap's epoch; otherwise the cap ended it."""
        converged = self.stopped(patience, min_epochs, lr_reductions)
        return Training(
            converged=converged,
            stop_reason="early_stopping" if converged else "epoch_cap",
            best_epoch=self.best_epoch,
            epochs_run=self.epoch,
            epoch_cap=epoch_cap,
            patience=patience,
            validation_curve=[getattr(r, criterion) for r in self.history],
            criterion=criterion,
            min_delta=min_delta,
            min_epochs=min_epochs,
            lr_reductions=self.lr_reductions,
            audit_stop_epoch=self.audit_stop or None,
            audit_gain=round(self.best_f - self.audit_best, 6) if self.audit_stop else None,
            validation_loss_curve=[r.val_loss for r in self.history],
            train_loss_curve=[r.train_loss for r in self.history],
        )

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["history"] = [r.to_json() for r in self.history]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        return cls(**{**data, "history": [EpochRecord(**r) for r in data["history"]]})


@dataclass
class Snapshot:
    """Everything a resumed run starts from (plain tensors and dicts: loads weights_only)."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    best_model: dict[str, torch.Tensor]
    loop: LoopState
    average: dict[str, torch.Tensor] | None = None  # the weight average, where one is kept

    def save(self, path: Path | BinaryIO) -> None:
        torch.save(
            {
                "model": self.model,
                "optimizer": self.optimizer,
                "best_model": self.best_model,
                "loop": self.loop.to_json(),
                **({"average": self.average} if self.average is not None else {}),
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return cls(
            saved["model"],
            saved["optimizer"],
            saved["best_model"],
            LoopState.from_json(saved["loop"]),
            saved.get("average"),
        )


class Checkpointer(Protocol):
    """Where the loop's snapshots go, and where a resumed run finds the last one."""

    def load(self) -> Snapshot | None: ...

    def save(self, snapshot: Snapshot | None, record: EpochRecord) -> None:
        """Called on every rank after every epoch; `snapshot` is None off the master rank."""


class NoCheckpoints:
    """A run that is never resumed (tests, benches)."""

    def load(self) -> Snapshot | None:
        return None

    def save(self, snapshot: Snapshot | None, record: EpochRecord) -> None:
        pass


@dataclass
class FileCheckpointer:
    """One local file, replaced atomically and durably (fsync) after every epoch, with the
    previous epoch's file kept beside it (`<name>.prev`); both removed once the run is done.

    A file that does not load (a power loss before its data reached the disk, a bad sector,
    a copy cut short) is moved aside (`<name>.corrupt`, kept for inspection) and the run
    resumes from the previous epoch's file; when neither loads it starts at epoch 1 with a
    warning, as the Ray Train path does (distributed.recover_run_state). Without this a
    damaged file failed every rerun with the same traceback.
    """

    path: Path

    @property
    def previous(self) -> Path:
        return self.path.with_name(self.path.name + ".prev")

    def load(self) -> Snapshot | None:
        damaged = []
        for candidate in (self.path, self.previous):
            if not candidate.exists():
                continue
            try:
                snapshot = Snapshot.load(candidate)
            except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
                aside = candidate.with_name(candidate.name + ".corrupt")
                os.replace(candidate, aside)
                log.warning(
                    "checkpoint %s does not load (%s: %s); moved to %s",
                    candidate,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                    aside.name,
                )
                damaged.append(candidate)
                continue
            log.info("resuming from %s (epoch %d)", candidate, snapshot.loop.epoch)
            return snapshot
        if damaged:
            log.warning("no checkpoint of %s loads: starting at epoch 1", self.path)
        return None

    def save(self, snapshot: Snapshot | None, record: EpochRecord) -> None:
        if snapshot is None:
            return
        with atomic_file(self.path, "wb", durable=True) as handle:
            snapshot.save(handle)
            if self.path.exists():  # the new file is whole: keep the last one as .prev
                os.replace(self.path, self.previous)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.previous.unlink(missing_ok=True)
