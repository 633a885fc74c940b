"""The stopping rule, and the audit that says whether a stopped member had stopped learning
(docs/DESIGN.md section 4).

A rule watches the validation macro-F curve (at the threshold tuned on validation each epoch).
Validation macro-F on a few hundred notes is noisy: three epochs without a new best happen
inside plateaus of a curve that is still rising. So a rule may watch a moving average of the
curve (`smoothing` epochs) and may grow its patience with the epoch of the best so far
(`relative`: a member whose best came at epoch 30 waits longer than one whose best came at 8).
The weights kept are still those of the best raw epoch.

The audit: continue a stopped member with patience 10 from where it stopped (same seed,
optimiser state and data order, so the same curve an uninterrupted run records) and measure
how much better its best validation macro-F gets. A rule is accepted when that gain is at most
0.01 for every audited member (bench/convergence_audit.py measures the candidates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

AUDIT_PATIENCE = 10  # the audit's continuation: 10 epochs without a better validation macro-F
AUDIT_TOLERANCE = 0.01  # a converged member gains at most this when continued


@dataclass(frozen=True)
class StoppingRule:
    patience: int
    min_epochs: int = 1
    min_delta: float = 0.0
    smoothing: int = 1  # the rule watches the mean of the last `smoothing` epochs' macro-F
    relative: float = 0.0  # patience is at least relative x the epoch of the best so far

    def watched(self, curve: Sequence[float]) -> np.ndarray:
        """The curve the rule watches: a trailing moving average (shorter at the start)."""
        values = np.asarray(curve, dtype=float)
        if self.smoothing <= 1 or not len(values):
            return values
        sums = np.cumsum(np.insert(values, 0, 0.0))
        ends = np.arange(1, len(values) + 1)
        starts = np.maximum(0, ends - self.smoothing)
        return (sums[ends] - sums[starts]) / (ends - starts)

    def best_epoch(self, curve: Sequence[float]) -> int:
        """1-based epoch of the best watched value (a later one counts when it beats the best
        by more than min_delta); 0 for an empty curve."""
        best, best_epoch = -math.inf, 0
        for epoch, value in enumerate(self.watched(curve), start=1):
            if value > best + self.min_delta:
                best, best_epoch = value, epoch
        return best_epoch

    def waits(self, best_epoch: int) -> int:
        """Epochs without a better watched value before the rule fires."""
        return max(self.patience, math.ceil(self.relative * best_epoch))

    def fires(self, curve: Sequence[float]) -> bool:
        """Whether training stops after the epochs of `curve`."""
        epoch = len(curve)
        if epoch < self.min_epochs or epoch == 0:
            return False
        best = self.best_epoch(curve)
        return epoch - best >= self.waits(best)

    def stop_epoch(self, curve: Sequence[float]) -> int:
        """The epoch after which the rule stops on a recorded curve (its length if never)."""
        for epoch in range(1, len(curve) + 1):
            if self.fires(curve[:epoch]):
                return epoch
        return len(curve)

    def describe(self) -> str:
        parts = [f"patience {self.patience}"]
        if self.relative:
            parts.append(f"at least {self.relative:g} x the best epoch")
        if self.smoothing > 1:
            parts.append(f"on the {self.smoothing}-epoch mean")
        parts.append(f"from epoch {self.min_epochs}")
        return ", ".join(parts)


def continuation_gain(
    history: Sequence[dict], stop: int, patience: int = AUDIT_PATIENCE, key: str = "val_macro_f"
) -> float:
    """Best validation macro-F (`key`) gained by continuing from epoch `stop` with `patience`
    (counting from the stop) over the best at the stop, on a recorded curve that is the
    uninterrupted run."""
    curve = [float(r[key]) for r in history]
    best = max(curve[:stop]) if stop else -math.inf
    start, waited = best, 0
    for value in curve[stop:]:
        if value > best:
            best, waited = value, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return max(0.0, best - start)


def schedule_stop(
    history: Sequence[dict],
    patience: int,
    min_epochs: int,
    lr_patience: int,
    lr_reductions: int,
    criterion: str = "val_macro_f",
    smoothing: int = 1,
    floor: float = -1.0,
) -> int:
    """The epoch after which the loop's rule (train/state.py: learning-rate reductions on
    plateau, then early stopping, on `criterion` smoothed over `smoothing` epochs, not before
    it beats `floor`) stops on a recorded curve. Exact for a curve recorded with the same
    lr_patience, lr_factor, lr_reductions, criterion and smoothing: the reductions fall on
    the same epochs, so the run up to the stop is the recorded one."""
    from icdtransfer.train.state import EpochRecord, LoopState

    state = LoopState(floor=floor)
    keys = EpochRecord.__dataclass_fields__
    for row in history:
        record = EpochRecord(**{k: v for k, v in row.items() if k in keys})
        state.record(record, criterion=criterion, smoothing=smoothing)
        state.reduce_lr(lr_patience, lr_reductions)
        if state.stopped(patience, min_epochs, lr_reductions):
            return state.epoch
    return len(history)


def schedule_rules(
    lr_patience: int,
    lr_reductions: int,
    criterion: str = "val_macro_f",
    smoothing: int = 1,
    floor: float = -1.0,
) -> dict:
    """Final patiences after the last reduction, for curves recorded with that schedule."""
    return {
        f"lr x0.5 after {lr_patience} (x{lr_reductions}), then patience {p}": (
            lambda history, p=p: schedule_stop(
                history, p, 5, lr_patience, lr_reductions, criterion, smoothing, floor
            )
        )
        for p in (1, 2, 3, 4, 5, 6, 8, 10, 12)
    }


def _rule(key: str = "val_macro_f", **kwargs) -> Callable[[Sequence[dict]], int]:
    rule = StoppingRule(**kwargs)
    return lambda history: rule.stop_epoch([float(r[key]) for r in history])


def criterion_rules(key: str) -> dict[str, Callable[[Sequence[dict]], int]]:
    """Plain and smoothed patience rules on one validation curve (`key`), and smoothed ones
    that count only a rise above min_delta (a curve creeping up by less is a plateau)."""
    rules = {
        f"{key}: patience {p}{f', {m}-epoch mean' if m > 1 else ''}": _rule(
            key, patience=p, min_epochs=5, smoothing=m
        )
        for m in (1, 3)
        for p in (3, 4, 5, 6, 8)
    }
    for p in (8, 10, 12):
        for delta in (0.001, 0.002, 0.003):
            rules[f"{key}: patience {p}, 3-epoch mean, min_delta {delta:g}"] = _rule(
                key, patience=p, min_epochs=5, smoothing=3, min_delta=delta
            )
    return rules


# The candidates bench/convergence_audit.py replays (today's rule first).
RULES: dict[str, Callable[[Sequence[dict]], int]] = {
    "patience 3 from 5 (before issue 18)": _rule(patience=3, min_epochs=5),
    "patience 5 from 5": _rule(patience=5, min_epochs=5),
    "patience 8 from 5": _rule(patience=8, min_epochs=5),
    "patience 10 from 5": _rule(patience=10, min_epochs=5),
    "patience 3, 3-epoch mean": _rule(patience=3, min_epochs=5, smoothing=3),
    "patience 4, 3-epoch mean": _rule(patience=4, min_epochs=5, smoothing=3),
    "patience 5, 3-epoch mean": _rule(patience=5, min_epochs=5, smoothing=3),
    "patience 5, 5-epoch mean": _rule(patience=5, min_epochs=5, smoothing=5),
    "patience 3, >= 0.25 x best epoch": _rule(patience=3, min_epochs=5, relative=0.25),
    "patience 4, >= 0.3 x best epoch": _rule(patience=4, min_epochs=5, relative=0.3),
    "patience 5, >= 0.3 x best epoch": _rule(patience=5, min_epochs=5, relative=0.3),
    "patience 4, 3-mean, >= 0.25 x best": _rule(
        patience=4, min_epochs=5, smoothing=3, relative=0.25
    ),
    "patience 5, 3-mean, >= 0.3 x best": _rule(patience=5, min_epochs=5, smoothing=3, relative=0.3),
    "patience 6, >= 0.4 x best epoch": _rule(patience=6, min_epochs=5, relative=0.4),
}
