"""A whole study with `ray.storage_path` on S3 (moto's server on 127.0.0.1): the driver is
killed mid-study, as when the head node is lost, and the study resumes from the URI alone on
a clean head-local working folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest

from helpers.runs import study_args, write_params
from icdtransfer.sweep.status import study_status

pytestmark = pytest.mark.slow

STUDY = """name: ons3
kind: optuna
metric: val_macro_f
mode: max
num_samples: 4
max_concurrent: 1
seeds: [1]
search_seed: 1
space:
  variant: [scratch, tune_all]
  word_dropout: {uniform: [0.0, 0.5]}  # every trial trains its own member
train: {epochs: 30, patience: 30, max_tokens: 300}  # long enough to be killed mid-study
"""


def _terminated(params, study: str) -> int:
    """Finished trials in Tune's state as saved on S3 (what a new head would resume)."""
    status = study_status(study_args(params, study))
    found = re.search(r"(\d+) terminated", status)
    return int(found.group(1)) if found else 0


def test_a_study_on_s3_resumes_after_losing_its_head(
    s3_server, tiny_params, tmp_path: Path
) -> None:
    uri = s3_server()
    study = tmp_path / "ons3.yaml"
    study.write_text(STUDY)
    results = tmp_path / "results"

    def params_for(head: str):
        ray = replace(tiny_params.ray, storage_path=uri, state_dir=str(tmp_path / head))
        return replace(
            tiny_params, ray=ray, sweep=replace(tiny_params.sweep, results_dir=str(results))
        )

    first = params_for("head1")
    command = [sys.executable, "-m", "icdtransfer", "sweep", "--study", str(study), "--params"]
    # the fixture's credentials included; a Tune checkpoint every epoch (each one syncs Tune's
    # state to S3, where `_terminated` reads it): with the default 30 s, a tiny study's state
    # reached S3 only as it finished, and the head was never lost mid-study
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ICDTRANSFER_CHECKPOINT_S": "0"}
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(
            [*command, str(write_params(first, tmp_path / "first.yaml"))],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and _terminated(first, str(study)) < 1:
        time.sleep(1)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the head is gone: no clean shutdown, no final sync
    proc.wait(timeout=60)
    assert not (results / "ons3").exists(), "the study finished before it could be killed"

    second = params_for("head2")  # a new head: nothing of the first one's folder
    done = subprocess.run(
        [*command, str(write_params(second, tmp_path / "second.yaml"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming its state under key" in done.stderr and "resuming study ons3" in done.stderr
    out = results / "ons3"
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
    starts = [json.loads(line) for line in (out / "trial_starts.jsonl").read_text().splitlines()]
    per_trial = pd.Series([s["trial_id"] for s in starts]).value_counts()
    assert (per_trial == 1).sum() >= 1  # the trial finished before the loss never ran again
    # no member was trained twice: the store on S3 kept what the first head stored (a trial
    # that stored its member just before the kill and runs again counts it as its own: the
    # store's row names the trial that trained it)
    members = pd.read_parquet(out / "members.parquet")
    assert trials["members_trained_here"].sum() == len(members) == members["key"].nunique()
    assert "stored meanwhile" not in done.stderr  # a second training of a stored member
    assert set(members["trial_id"]) <= set(trials["trial_id"])
    # the Optuna study survived the head: every trial is told once, with its ensemble's value
    db = f"sqlite:///{out / 'search' / 'optuna.db'}"
    complete = {
        t.user_attrs["trial_id"]: t.value
        for t in optuna.load_study(study_name="ons3", storage=db).trials
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert complete == pytest.approx(trials.set_index("trial_id")["val_macro_f"].to_dict())
    # Tune's state on the URI knows every trial finished (`--status`, a process without Ray)
    status = subprocess.run(
        [*command, str(tmp_path / "second.yaml"), "--status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr[-3000:]
    assert "4 terminated, 0 not started" in status.stdout, status.stdout
    # the new head restored its working copy from the URI
    assert list((tmp_path / "head2").rglob("members/index.jsonl"))
    assert list((tmp_path / "head2").rglob("studies/ons3/*/optuna.db"))
