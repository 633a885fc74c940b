"""How a sweep trial orders its members (sweep/trial.py, obtain_all) and paces their Tune
checkpoints (sweep/reporting.py, TrialCheckpointer)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from icdtransfer.schema import ConfigError
from icdtransfer.sweep import reporting
from icdtransfer.sweep.reporting import TrialCheckpointer
from icdtransfer.sweep.trial import obtain_all


class Store:
    """Seeds another trial is training, each busy for its first `busy[seed]` claims."""

    def __init__(self, busy: dict[int, int]) -> None:
        self.busy = dict(busy)
        self.claims: list[int] = []
        self.obtained: list[int] = []

    def obtain(self, seed: int) -> bool:
        self.claims.append(seed)
        if self.busy.get(seed, 0) > 0:
            self.busy[seed] -= 1
            return False
        self.obtained.append(seed)
        return True


def test_without_a_scheduler_a_busy_first_member_does_not_hold_the_trial_up() -> None:
    store, waits = Store({1: 2}), []
    obtain_all([1, 2, 3], store.obtain, first_member_first=False, wait=lambda: waits.append(1))
    # seed 1 is busy on the first two passes: seeds 2 and 3 are trained meanwhile
    assert store.obtained == [2, 3, 1]
    assert store.claims == [1, 2, 3, 1, 1]
    assert len(waits) == 2


def test_under_asha_the_first_member_comes_before_any_other() -> None:
    store, waits = Store({1: 2}), []
    obtain_all([1, 2, 3], store.obtain, first_member_first=True, wait=lambda: waits.append(1))
    assert store.obtained == [1, 2, 3]
    assert store.claims == [1, 1, 1, 2, 3]
    assert len(waits) == 2


def test_every_seed_is_obtained_once_whatever_is_busy() -> None:
    store = Store({2: 1, 4: 3})
    obtain_all([1, 2, 3, 4, 5, 6], store.obtain, first_member_first=False, wait=lambda: None)
    assert sorted(store.obtained) == [1, 2, 3, 4, 5, 6]
    assert store.obtained == [1, 3, 5, 6, 2, 4]


class Calls:
    """A Reporter that records which epochs went with a checkpoint."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def checkpoint(self, seed: int, snapshot: object, record: SimpleNamespace) -> None:
        self.calls.append(("checkpoint", record.epoch))

    def epoch(self, seed: int, snapshot: object, record: SimpleNamespace) -> None:
        self.calls.append(("epoch", record.epoch))


def test_a_member_is_checkpointed_once_every_30_seconds_of_training() -> None:
    now = [100.0]
    reporter = Calls()
    saver = TrialCheckpointer(1, reporter, None, clock=lambda: now[0])  # type: ignore[arg-type]
    assert saver.every_s == reporting.CHECKPOINT_S == 30.0
    for epoch in range(1, 61):  # 60 epochs of 1.4 s: a checkpoint after 30.8 s, 61.6 s, ...
        now[0] += 1.4
        saver.save(object(), SimpleNamespace(epoch=epoch))  # type: ignore[arg-type]
    checkpointed = [e for kind, e in reporter.calls if kind == "checkpoint"]
    assert checkpointed == [22, 44]
    assert [e for _, e in reporter.calls] == list(range(1, 61))  # every epoch is reported
    saver.save(None, SimpleNamespace(epoch=61))  # type: ignore[arg-type]  (not the master rank)
    assert len(reporter.calls) == 60


def test_at_zero_seconds_every_epoch_is_checkpointed() -> None:
    reporter = Calls()
    saver = TrialCheckpointer(1, reporter, None, every_s=0.0, clock=lambda: 0.0)  # type: ignore[arg-type]
    for epoch in (1, 2, 3):
        saver.save(object(), SimpleNamespace(epoch=epoch))  # type: ignore[arg-type]
    assert reporter.calls == [("checkpoint", 1), ("checkpoint", 2), ("checkpoint", 3)]


def test_the_cadence_is_the_users_else_every_epoch_under_the_fault_test(monkeypatch) -> None:
    monkeypatch.delenv("ICDTRANSFER_FAULT", raising=False)
    monkeypatch.delenv("ICDTRANSFER_CHECKPOINT_S", raising=False)
    assert reporting.checkpoint_seconds() == 30.0
    monkeypatch.setenv("ICDTRANSFER_FAULT", "trial_after_report:2")
    assert reporting.checkpoint_seconds() == 0.0
    monkeypatch.setenv("ICDTRANSFER_CHECKPOINT_S", "12.5")
    assert reporting.checkpoint_seconds() == 12.5
    for bad in ("-1", "soon", "nan", "inf"):
        monkeypatch.setenv("ICDTRANSFER_CHECKPOINT_S", bad)
        with pytest.raises(ConfigError, match=f"ICDTRANSFER_CHECKPOINT_S={bad!r}: expected"):
            reporting.checkpoint_seconds()
