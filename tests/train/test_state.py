"""Early-stopping bookkeeping: what counts as an improvement."""

from __future__ import annotations

from icdtransfer.train.state import EpochRecord, LoopState


def _run(curve: list[float], min_delta: float) -> LoopState:
    state = LoopState()
    for epoch, value in enumerate(curve, start=1):
        state.record(EpochRecord(epoch, 1.0, 1.0, value, value, 0.5), min_delta)
    return state


def test_gains_up_to_min_delta_are_epochs_without_improvement() -> None:
    curve = [0.30, 0.305, 0.309, 0.35]
    state = _run(curve[:3], min_delta=0.01)
    assert (state.best_epoch, state.epochs_without_improvement) == (1, 2)
    assert state.stopped(patience=2)
    training = state.training(epoch_cap=10, patience=2, min_delta=0.01)
    assert training.converged and training.best_epoch == 1 and training.min_delta == 0.01
    # without min_delta each small gain is a new best; a gain above it is one either way
    assert _run(curve[:3], min_delta=0.0).best_epoch == 3
    assert _run(curve, min_delta=0.01).best_epoch == 4


def test_early_stopping_waits_for_min_epochs() -> None:
    # a plateau before learning starts: epochs 2-4 do not beat epoch 1
    curve = [0.05, 0.04, 0.05, 0.03, 0.08]
    state = _run(curve[:4], min_delta=0.0)
    assert state.stopped(patience=3)  # the rule without a warm-up would stop here, at 4
    assert not state.stopped(patience=3, min_epochs=5)
    training = state.training(epoch_cap=10, patience=3, min_epochs=5)
    assert not training.converged and training.min_epochs == 5
    state = _run(curve + [0.07, 0.07, 0.06], min_delta=0.0)  # 3 epochs without a gain at 8
    assert state.stopped(patience=3, min_epochs=5)
    assert state.training(epoch_cap=10, patience=3, min_epochs=5).converged
