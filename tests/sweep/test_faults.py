"""Fault injection: a small Optuna study with ASHA, its sweep killed (SIGKILL to the driver,
its Ray processes and workers: a lost head) at named points in the code
(`ICDTRANSFER_FAULT=<point>:<n>`, sweep/faults.py), resumed after each kill by the same
command, on local storage and on a local S3 server (moto). Each storage runs its kill points
as one sequence of kill/resume cycles on one study, then a last run that finishes it.

Kill points, each storage in its list's order (LOCAL, S3 below; 21 distinct points, so
that the test fits in a few minutes, the points where storage matters on S3):
    optuna_after_ask          Optuna asked for a trial, its database not yet pushed
    training                  mid-epoch (a member training, between two epoch reports)
    trial_before_report       an epoch's checkpoint written, not yet reported to Tune
    trial_after_report        an epoch reported, before the next begins
    driver_trial_result       Tune has a trial's report, not yet its saved state (sync)
    driver_checkpoint         Tune registering a trial's checkpoint
    member_files_written      a member's files written, not yet in place in the store
    member_between_folder_and_index   a member's folder in place, its index line not written
    trial_before_final_report a trial's ensemble evaluated, not yet reported
    optuna_before_tell        a trial complete, not yet told to Optuna
    driver_trial_complete     Tune completing a trial, before its saved state
    searcher_saved            the searcher's state (and Optuna's copy) written by Tune
    results_partly_written    while results are written (trials.parquet only)
  on S3:
    training                  mid-epoch, checkpoints going to S3
    member_before_marker_upload  a member's files uploaded, its marker not
    member_before_upload      a member stored on the head, not yet uploaded
    member_before_index_push  a member uploaded, the merged index not yet pushed
    optuna_after_tell         told to Optuna, its database not yet pushed
    driver_experiment_end     the last trial ended, Tune's loop ending
    driver_after_fit          Tune's run returned, no results written yet
    results_before_rename     results complete in their temporary folder, not in place
    driver_after_results      results in place, the study's state not yet pushed

After every resume: no trial of Tune's saved state is in ERROR. At the end: every trial
TERMINATED or EARLY_STOPPED, none missing; no member trained twice (the store never stored
one twice, one row per member); Optuna's trials are Tune's (one per Tune trial, COMPLETE with
the ensemble's value or PRUNED where ASHA stopped it); trials.parquet's and members.parquet's
metrics equal those of an uninterrupted run of the same study.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest

from helpers.runs import study_args, sweep_command, write_params
from icdtransfer.sweep.runner import plan_study
from icdtransfer.sweep.status import _trials

pytestmark = [pytest.mark.slow, pytest.mark.faults]

STUDY = """name: faults
kind: optuna
metric: val_macro_f
mode: max
num_samples: 5
scheduler: asha
max_concurrent: 1
seeds: [1]
search_seed: 2
space:
  variant: [scratch]
  word_dropout: {uniform: [0.0, 0.5]}  # every trial its own member
# In this order, each of the first four beats the median of those before it at ASHA's rung
# (epoch 2), and the last does not: four finish (four members stored), ASHA stops one.
points:
  - {variant: scratch, word_dropout: 0.21018390104374451}
  - {variant: scratch, word_dropout: 0.012963115913945666}
  - {variant: scratch, word_dropout: 0.21799745107100188}
  - {variant: scratch, word_dropout: 0.21766119630913844}
  - {variant: scratch, word_dropout: 0.27483123893935457}
train: {epochs: 3, patience: 3, max_tokens: 40}
"""

LOCAL = [
    "optuna_after_ask:1",
    "training:3",
    "trial_before_report:1",
    "trial_after_report:2",
    "driver_trial_result:2",
    "driver_checkpoint:2",
    "member_files_written:1",
    "member_between_folder_and_index:1",
    "trial_before_final_report:1",
    "optuna_before_tell:1",
    "driver_trial_complete:1",
    "searcher_saved:1",
    "results_partly_written:1",
]
S3 = [
    "training:3",
    "member_before_marker_upload:1",
    "member_before_upload:1",
    "member_before_index_push:1",
    "optuna_after_tell:1",
    "driver_experiment_end:1",
    "driver_after_fit:1",
    "results_before_rename:1",
    "driver_after_results:1",
]
METRICS = ["val_macro_f", "test_macro_f_tuned", "test_micro_f_tuned", "test_macro_f_fixed"]


def _params(tiny_params, root: str, tmp_path: Path, name: str):
    return replace(
        tiny_params,
        ray=replace(tiny_params.ray, storage_path=root, state_dir=str(tmp_path / f"{name}-head")),
        sweep=replace(tiny_params.sweep, results_dir=str(tmp_path / f"{name}-results")),
    )


def _sweep(params_file: Path, study: Path, log: Path, fault: str | None, cwd: Path) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ICDTRANSFER_FAULT_LOG": str(log)}
    env.pop("ICDTRANSFER_FAULT", None)
    if fault:
        env["ICDTRANSFER_FAULT"] = fault
    with open(log.with_suffix(".out"), "a") as out:
        out.write(f"\n=== {fault}\n")
        out.flush()
        proc = subprocess.run(
            sweep_command(params_file, study),
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, timeout=600,
        )  # fmt: skip
    return proc.returncode


def _no_error_in_saved_state(params, study: Path) -> None:
    counts, _ = _trials(plan_study(study_args(params, str(study))))
    assert not (counts or {}).get("ERROR"), counts


def _table(results: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(results / "faults" / name)
    keys = [c for c in frame.columns if c.startswith("config_")] if "status" in frame else ["key"]
    return frame.sort_values(keys).reset_index(drop=True)


def _run_sequence(params, study: Path, points: list[str], tmp_path: Path, name: str) -> list:
    params_file = write_params(params, tmp_path / f"{name}.yaml")
    log = tmp_path / f"{name}-faults.log"
    for point in points:
        code = _sweep(params_file, study, log, point, tmp_path)
        assert code in (0, -9, 137), (point, code, log.with_suffix(".out").read_text()[-3000:])
        _no_error_in_saved_state(params, study)
    assert _sweep(params_file, study, log, None, tmp_path) == 0, (
        log.with_suffix(".out").read_text()[-3000:]
    )
    return log.read_text().splitlines() if log.exists() else []


def _check(params, reference: Path, tmp_path: Path, name: str) -> None:
    results = Path(params.sweep.results_dir)
    trials = _table(results, "trials.parquet")
    assert len(trials) == 5 and set(trials["status"]) <= {"TERMINATED", "EARLY_STOPPED"}
    expected = _table(reference, "trials.parquet")
    configs = [c for c in expected.columns if c.startswith("config_")]
    pd.testing.assert_frame_equal(trials[configs + ["status"]], expected[configs + ["status"]])
    done = trials["status"] == "TERMINATED"
    for metric in METRICS:
        assert trials.loc[done, metric].tolist() == pytest.approx(
            expected.loc[done, metric].tolist()
        )
    members, ref_members = _table(results, "members.parquet"), _table(reference, "members.parquet")
    assert members["key"].tolist() == ref_members["key"].tolist()
    for metric in ("test_macro_f_tuned", "test_micro_f_fixed", "best_epoch"):
        assert members[metric].tolist() == pytest.approx(ref_members[metric].tolist())
    assert set(members["trial_id"]) <= set(trials["trial_id"])
    # no member trained twice: the store stored each once, and the finished trials trained
    # exactly the members they use
    assert "stored meanwhile" not in (tmp_path / f"{name}-faults.out").read_text()
    assert trials["members_trained_here"].fillna(0).sum() == len(members)
    # Optuna's trials are Tune's
    db = f"sqlite:///{results / 'faults' / 'search' / 'optuna.db'}"
    told = {
        t.user_attrs.get("trial_id"): t
        for t in optuna.load_study(study_name="faults", storage=db).trials
        if t.state != optuna.trial.TrialState.FAIL
    }
    assert set(told) == set(trials["trial_id"])
    for row in trials.itertuples():
        if row.status == "TERMINATED":
            assert told[row.trial_id].state == optuna.trial.TrialState.COMPLETE
            assert told[row.trial_id].value == pytest.approx(row.val_macro_f)
        else:
            assert told[row.trial_id].state == optuna.trial.TrialState.PRUNED


@pytest.mark.timeout(1800)  # about 35 sweep runs: 10 min on a quiet 2-core machine, 15+ loaded
def test_a_study_killed_anywhere_resumes_to_the_uninterrupted_result(
    s3_server, tiny_params, tmp_path: Path
) -> None:
    study = tmp_path / "faults.yaml"
    study.write_text(STUDY)
    reference = _params(tiny_params, str(tmp_path / "ref-ray"), tmp_path, "ref")
    local = _params(tiny_params, str(tmp_path / "local-ray"), tmp_path, "local")
    s3 = _params(tiny_params, s3_server(), tmp_path, "s3")
    # one after the other: three Ray instances side by side on a loaded 2-core machine timed
    # out starting (Ray's node start-up deadline), which is no kill point's doing
    assert _run_sequence(reference, study, [], tmp_path, "ref") == []
    killed = _run_sequence(local, study, LOCAL, tmp_path, "local")
    killed_s3 = _run_sequence(s3, study, S3, tmp_path, "s3")
    ref_results = Path(reference.sweep.results_dir)
    _check(local, ref_results, tmp_path, "local")
    _check(s3, ref_results, tmp_path, "s3")

    # every kill point was reached (its kill recorded), so each resume above followed one
    assert killed == [p.split(":")[0] for p in LOCAL]
    assert killed_s3 == [p.split(":")[0] for p in S3]
    assert len(set(killed) | set(killed_s3)) >= 21
