"""What judges a study's trials: Optuna (the search) and ASHA (early stopping).

One quantity on one clock for each (sweep/trial.py): ASHA sees the first member's validation
macro-F by its epoch (`val_macro_f_first_member` at `member_epoch`); Optuna sees only the
final report, the ensemble's score under the study's metric. A trial ASHA stopped has no
final report and is told to Optuna as PRUNED, without a value; a finished one as COMPLETE
with its ensemble's score.

The Optuna study lives in a SQLite file in the study's working folder, pushed to a URI
storage_path whenever it changes (a trial asked for, a trial told), so a new head resumes the
search where the old one left it. Tune pickles its searcher into the experiment and a resumed
run gets that object back, perhaps on another head whose working folder lies elsewhere; so the
searcher holds no path: the database is looked up by study name in the process that runs the
study (`activate`).
"""

from __future__ import annotations

import json
import logging
import pickle
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from icdtransfer.data.atomic import atomic_file, temp_prefix
from icdtransfer.sweep.faults import fault
from icdtransfer.sweep.reporting import CLOCK, FIRST_MEMBER_CURVE, FIRST_MEMBER_METRIC
from icdtransfer.sweep.storage import StateRoot
from icdtransfer.sweep.study import Study

log = logging.getLogger(__name__)
DATABASE = "optuna.db"  # in the study's state folder

_ACTIVE: dict[str, tuple[StateRoot, str]] = {}  # study name -> (storage root, state folder)


def activate(study: str, root: StateRoot, folder: str) -> None:
    """Name the storage root and state folder of `study` for this process' Tune objects."""
    _ACTIVE[study] = (root, folder)


def _active(study: str) -> tuple[StateRoot, str]:
    if study not in _ACTIVE:
        raise RuntimeError(f"study {study}: no run of it is active in this process")
    return _ACTIVE[study]


def database_url(study: str) -> str:
    root, folder = _active(study)
    path = root.local / folder / DATABASE
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class StudySearch(OptunaSearch):
    """Ray's OptunaSearch, told only final results, and with its Optuna study kept in the
    SQLite file of the study's working folder (module docstring). Each Optuna trial has the
    Tune trial's id as its user attribute `trial_id` (trials.parquet's key)."""

    def __init__(self, study: Study) -> None:
        import optuna

        self._icd_study = study.name
        super().__init__(
            metric=study.metric,
            mode=study.mode,
            seed=study.search_seed,
            storage=optuna.storages.RDBStorage(database_url(study.name)),
            study_name=study.name,
            points_to_evaluate=[dict(p) for p in study.points] or None,
        )

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:  # joins the Optuna study to trials.parquet
            self._ot_trials[trial_id].set_user_attr("trial_id", trial_id)
        if isinstance(config, dict):  # an Optuna trial was asked for (not None, not FINISHED)
            fault("optuna_after_ask")
            push_database(*_active(self._icd_study))
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        fault("optuna_before_tell")
        super().on_trial_complete(trial_id, result, error)
        fault("optuna_after_tell")
        push_database(*_active(self._icd_study))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Intermediate reports are first-member epochs, for ASHA: not the study's metric.
        if self.metric in result:
            super().on_trial_result(trial_id, result)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        study = state.pop("_ot_study")
        del state["_storage"]
        state["_sampler_kept"] = study.sampler if study is not None else None
        state["_ot_trials"] = {k: t._trial_id for k, t in self._ot_trials.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import optuna

        sampler = state.pop("_sampler_kept")
        trial_ids = state.pop("_ot_trials")
        self.__dict__.update(state)
        self._storage = optuna.storages.RDBStorage(database_url(self._icd_study))
        self._ot_study, self._ot_trials = None, {}
        if sampler is not None:
            self._ot_study = optuna.load_study(
                study_name=self._study_name, storage=self._storage, sampler=sampler
            )
            self._ot_trials = {
                k: optuna.trial.Trial(self._ot_study, i) for k, i in trial_ids.items()
            }

    def save(self, checkpoint_path: str) -> None:
        """The searcher's state for Tune's saved experiment, with a copy of the Optuna
        database as it is now: the two are restored together (`restore`)."""
        state = self.__getstate__()
        state["_database_copy"] = database_bytes(*_active(self._icd_study))
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(state, handle)
        fault("searcher_saved")

    def restore(self, checkpoint_path: str) -> None:
        """Tune's saved searcher state, at a resumed run's start, and the Optuna database as
        it was when Tune saved that state. The live database may be ahead of Tune's state (it
        is pushed as it changes, Tune's state every few seconds): a trial told COMPLETE or
        PRUNED there that Tune's state never saw would stay in the study, and the sampler's
        saved random state, older than it, would propose its configuration again. So the
        database goes back to Tune's point; an Optuna trial this state does not know (a state
        saved before this copy was kept) is closed as FAIL."""
        import optuna

        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        copy = state.pop("_database_copy", None)
        if copy is not None:
            restore_database(*_active(state["_icd_study"]), copy)
        self.__setstate__(state)
        if self._ot_study is None:
            return
        known = {t._trial_id for t in self._ot_trials.values()}
        running = (optuna.trial.TrialState.RUNNING,)
        for trial in self._ot_study.get_trials(deepcopy=False, states=running):
            if trial._trial_id not in known:
                log.warning("Optuna trial %d has no Tune trial: closed as FAIL", trial.number)
                self._ot_study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


class ResumableASHA(ASHAScheduler):
    """ASHA that decides each rung on the value at the rung's epoch, even when the report of
    that epoch is missing from its state: a resumed study's scheduler is the one saved in
    Tune's experiment state, which on a URI storage can be older than a trial's checkpoint.
    The trial then resumes after the rung, and plain ASHA would record the first epoch it
    reports (a later, better value) at the rung, moving the cutoff for every later trial.
    Each first-member report carries its curve so far (FIRST_MEMBER_CURVE, sweep/trial.py);
    a rung the trial has passed unrecorded is decided first, on the curve's value there."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:  # noqa: ANN001
        for milestone, value in missed_rungs(self, trial.trial_id, result):
            at_rung = {**result, self._time_attr: milestone, self._metric: value}
            if super().on_trial_result(tune_controller, trial, at_rung) == TrialScheduler.STOP:
                return TrialScheduler.STOP
        return super().on_trial_result(tune_controller, trial, result)


def missed_rungs(scheduler: ASHAScheduler, trial_id: str, result: dict) -> list[tuple[int, float]]:
    """The rungs below this report's epoch that have no value of the trial, each with the
    trial's value at that epoch (from the curve its report carries), lowest first."""
    bracket = scheduler._trial_info.get(trial_id)
    now, curve = result.get(scheduler._time_attr), result.get(FIRST_MEMBER_CURVE)
    if bracket is None or now is None or not curve:
        return []
    values = json.loads(curve)
    return [
        (int(milestone), float(values[int(milestone) - 1]))
        for milestone, recorded in sorted(bracket._rungs, key=lambda rung: rung[0])
        if milestone < now and milestone <= len(values) and trial_id not in recorded
    ]


def asha(study: Study, epoch_cap: int):
    """ASHA on the first member's epochs. Its rungs are at 2, 4, 8, ... epochs; a first member
    that reaches the cap is not stopped for it (stop_last_trials=False): the cap is the
    members' safety limit, and the trial still needs its other members. Resumable: a rung is
    decided on the rung's epoch, whatever the saved state missed (ResumableASHA)."""
    return ResumableASHA(
        time_attr=CLOCK,
        metric=FIRST_MEMBER_METRIC,
        mode="max",
        max_t=epoch_cap,
        grace_period=min(2, epoch_cap),
        reduction_factor=2,
        stop_last_trials=False,
    )


def database_bytes(root: StateRoot, folder: str) -> bytes | None:
    """A consistent copy of the study's Optuna database (SQLite's backup), as bytes."""
    source = root.local / folder / DATABASE
    if not source.exists():
        return None
    snapshot = source.with_name(temp_prefix(source) + "copy")
    try:
        with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(snapshot)) as copy:
            live.backup(copy)
        return snapshot.read_bytes()
    finally:
        snapshot.unlink(missing_ok=True)


def restore_database(root: StateRoot, folder: str, data: bytes) -> None:
    """Put `data` (database_bytes) in place of the study's Optuna database, and push it."""
    target = root.local / folder / DATABASE
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-journal", "-wal"):  # a killed writer's, of the database replaced
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    with atomic_file(target, "wb", durable=True) as handle:
        handle.write(data)
    push_database(root, folder)


def push_database(root: StateRoot, folder: str) -> None:
    source = root.local / folder / DATABASE
    if root.uri is None or not source.exists():
        return
    snapshot = source.with_name(temp_prefix(source) + "snapshot")
    try:
        with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(snapshot)) as copy:
            live.backup(copy)
        root.push(f"{folder}/{DATABASE}", snapshot)
    finally:
        Path(snapshot).unlink(missing_ok=True)
