"""The convergence audit and the stopping rule it sized (train/audit.py, docs/DESIGN.md
section 4): an audit run is the rule's run up to its stop, then goes on; the rule's parts
(weight average, criterion, smoothing) behave as stated; the replay matches the loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builders import loop_settings as settings
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import dense, scores_at
from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.train.audit import StoppingRule, continuation_gain
from icdtransfer.train.average import WeightAverage
from icdtransfer.train.loop import fit
from icdtransfer.train.state import LOSS_GATE, EpochRecord, LoopState
from icdtransfer.train.validation import trivial_macro_f


def _model(corpus: Corpus) -> TargetModel:
    torch.manual_seed(0)
    return TargetModel(
        EncoderShape(len(corpus.vocab), 16, 16, (2, 3)), len(corpus.label_table), 16, 0.1
    )


def _rule(**kw):
    return settings(
        epochs=40,
        patience=2,
        min_epochs=2,
        weight_average=0.9,
        criterion="val_macro_f_best",
        smoothing=2,
        **kw,
    )


def test_an_audit_run_is_the_rules_run_then_goes_on(tiny: dict) -> None:
    corpus = Corpus.open(tiny["target"])
    ruled = fit(_model(corpus), corpus, _rule()).state
    audited = fit(_model(corpus), corpus, _rule(audit_patience=4)).state
    stop = ruled.epoch
    assert ruled.stopped(2, 2) and stop < 40  # the rule fired before the cap
    assert audited.audit_stop == stop  # the audit's run stops where the rule's run stopped
    same = [(r.val_macro_f_best, r.train_loss) for r in ruled.history]
    assert [(r.val_macro_f_best, r.train_loss) for r in audited.history[:stop]] == same
    assert audited.epoch >= stop + 4  # then 4 more epochs at least, without a better best
    assert audited.epoch - max(audited.best_epoch, stop) == 4
    gain = max(r.val_macro_f_best for r in audited.history) - ruled.best_f
    training = audited.training(40, 2, 0.0, 2, 0, "val_macro_f_best")
    assert training.audit_stop_epoch == stop and training.audit_gain == pytest.approx(gain)
    assert training.criterion == "val_macro_f_best"
    assert training.validation_curve == [r.val_macro_f_best for r in audited.history]
    # the replay of the same rule on the audit's recorded curve finds the same stop and gain
    rule = StoppingRule(patience=2, min_epochs=2, smoothing=2)
    curve = [r.val_macro_f_best for r in audited.history]
    assert rule.stop_epoch(curve) == stop
    rows = [{"val_macro_f": v} for v in curve]
    assert continuation_gain(rows, stop, patience=4) == pytest.approx(gain)


def test_the_weight_average_follows_the_steps() -> None:
    model = torch.nn.Linear(3, 2)
    frozen = torch.nn.Linear(1, 1)
    for p in frozen.parameters():
        p.requires_grad_(False)
    both = torch.nn.ModuleList([model, frozen])
    average = WeightAverage(both, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    average.update()  # halfway: 0.5 x old + 0.5 x new
    assert torch.allclose(average.model[0].weight, start + 1.0)
    average.update()
    assert torch.allclose(average.model[0].weight, start + 1.5)
    assert torch.equal(average.model[1].weight, frozen.weight)  # frozen parameters: unchanged
    assert not any(p.requires_grad for p in average.model.parameters())


def test_smoothing_waits_out_a_single_dip_and_keeps_the_best_raw_epoch() -> None:
    def run(values: list[float], smoothing: int) -> LoopState:
        state = LoopState()
        for epoch, value in enumerate(values, start=1):
            record = EpochRecord(epoch, 1.0, 1.0, 0.0, 0.0, 0.5, val_macro_f_best=value)
            state.record(record, 0.0, "val_macro_f_best", smoothing)
        return state

    # 0.30 at epoch 3 is the best raw value; the 2-epoch means are .10 .20 .25 .30 .35 .35
    values = [0.1, 0.3, 0.2, 0.4, 0.3, 0.4]
    raw, smooth = run(values, 1), run(values, 2)
    assert raw.best_epoch == smooth.best_epoch == 4  # the weights kept: the best raw epoch
    assert raw.epochs_without_improvement == 2  # epochs 5 and 6 did not beat 0.4
    # means: 0.1, 0.2, 0.25, 0.3, 0.35, 0.35 -> the last one did not beat 0.35
    assert smooth.epochs_without_improvement == 1
    assert np.isclose(smooth.best_watched, 0.35)


def test_replayed_rules_by_hand() -> None:
    curve = [0.1, 0.2, 0.3, 0.3, 0.29, 0.31, 0.3, 0.3, 0.3]
    assert StoppingRule(patience=2, min_epochs=1).stop_epoch(curve) == 5
    assert StoppingRule(patience=2, min_epochs=6).stop_epoch(curve) == 8  # 6 beat 3's 0.3
    history = [{"val_macro_f": v} for v in curve]
    assert continuation_gain(history, 5, patience=10) == pytest.approx(0.01)
    assert continuation_gain(history, 9, patience=10) == 0.0


def test_below_the_floor_a_member_stops_once_its_validation_loss_stops_falling() -> None:
    # a frozen encoder: its criterion never beats predicting every code + 0.02, and its
    # validation loss is lowest at epoch 5; 16 epochs later (LOSS_GATE x patience 8) it stops
    def run(losses: list[float]) -> list[bool]:
        state, stops = LoopState(floor=0.1295), []
        for epoch, loss in enumerate(losses, start=1):
            record = EpochRecord(epoch, 1.0, 1.0, 0.0, 0.0, 0.5, val_loss=loss)
            record.val_macro_f_best = 0.12 if epoch < 4 else 0.118
            state.record(record, 0.0, "val_macro_f_best", 3)
            stops.append(state.stopped(8, 5))
        return stops

    overfitting = [14.0, 13.8, 13.7, 13.65, 13.6] + [13.6 + 0.05 * k for k in range(1, 40)]
    stops = run(overfitting)
    assert LOSS_GATE == 2 and stops.index(True) + 1 == 5 + 16
    still_fitting = [14.0 - 0.01 * k for k in range(44)]  # the loss falls: no stop, ever
    assert not any(run(still_fitting))


def test_a_member_at_the_all_codes_level_has_not_started_and_does_not_stop(tiny: dict) -> None:
    # the first epochs of a slow learner: the criterion sits at what predicting every code
    # scores; patience runs out there, but the rule may not fire until it beats that + 0.02
    state = LoopState(floor=0.1295)
    for epoch in range(1, 13):
        value = 0.109 + (0.01 if epoch == 3 else 0.0)  # one bump inside the noise
        record = EpochRecord(epoch, 1.0, 1.0, 0.0, 0.0, 0.5, val_macro_f_best=value)
        state.record(record, 0.0, "val_macro_f_best", 3)
    assert state.waited() >= 8 and not state.stopped(8, 5)
    record = EpochRecord(13, 1.0, 1.0, 0.0, 0.0, 0.5, val_macro_f_best=0.4)
    state.record(record, 0.0, "val_macro_f_best", 1)
    assert state.best_watched > state.floor
    corpus = Corpus.open(tiny["target"])
    y = dense(corpus.labels[corpus.split("validation")])
    positives = y.sum(axis=0)
    by_hand = np.mean(
        [scores_at(y[:, [j]], np.ones((len(y), 1), bool)).micro_f for j in range(y.shape[1])]
    )
    assert trivial_macro_f(y, "val_macro_f_best") == pytest.approx(by_hand)
    assert trivial_macro_f(y, "val_macro_f_best") == pytest.approx(
        np.mean(2 * positives / (positives + len(y)))
    )
    assert trivial_macro_f(y, "val_macro_f") is None


def test_the_learning_rate_is_not_reduced_before_the_model_starts_learning() -> None:
    # a slow learner's first epochs sit at what predicting every code scores; 5 epochs
    # without a better criterion there are the plateau before learning, not one to cut
    def reductions(values: list[float], floor: float) -> list[int]:
        state, at = LoopState(floor=floor), []
        for epoch, value in enumerate(values, start=1):
            record = EpochRecord(epoch, 1.0, 1.0, 0.0, 0.0, 0.5, val_loss=14.0 - 0.01 * epoch)
            record.val_macro_f_best = value
            state.record(record, 0.0, "val_macro_f_best", 1)
            if state.reduce_lr(lr_patience=5, lr_reductions=3):
                at.append(epoch)
        return at

    start = [0.12] * 8 + [0.15, 0.2, 0.25] + [0.25] * 12
    assert reductions(start, floor=0.1295) == [16, 21]  # 5 and 10 epochs after the best, 11
    assert reductions(start, floor=-1.0) == [6, 16, 21]  # without the floor: at epoch 6 too
