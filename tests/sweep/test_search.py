"""What the search sees: one quantity on one clock for ASHA, the ensemble's score for Optuna;
members shared between studies; --status and --retry-errored. Real Ray, real Optuna."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest

from helpers.runs import run_sweep, study_args
from icdtransfer.sweep.reporting import CLOCK, FIRST_MEMBER_METRIC
from icdtransfer.sweep.status import study_status

pytestmark = pytest.mark.slow

SEARCH = """name: {name}
kind: optuna
metric: val_macro_f
mode: max
num_samples: 6
scheduler: asha
max_concurrent: 1
seeds: [1, 2]
search_seed: 3
space:
  variant: [scratch, frozen]
  ensemble_size: [1, 2]
points:  # a designed start: Optuna asks for these first, in order
  - {{variant: frozen, ensemble_size: 2}}
  - {{variant: scratch, ensemble_size: 1}}
convergence: {{patience: 2, max_epochs: 6}}
"""


def _params(tiny_params, tmp_path: Path):
    return replace(
        tiny_params,
        sweep=replace(tiny_params.sweep, results_dir=str(tmp_path / "results")),
        ray=replace(tiny_params.ray, storage_path=str(tmp_path / "ray")),
    )


def _reports(storage: Path, name: str) -> dict[str, list[dict]]:
    """Every report each trial made to Tune, from the experiment's result.json files."""
    out = {}
    for path in storage.glob(f"studies/{name}/*/tune/*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        out[rows[0]["trial_id"]] = rows
    return out


def test_asha_sees_first_member_epochs_and_optuna_the_ensemble(
    ray_local, tiny_params, tmp_path: Path
) -> None:
    params = _params(tiny_params, tmp_path)
    path = tmp_path / "clock.yaml"
    path.write_text(SEARCH.format(name="clock"))
    run_sweep(params, str(path))
    out = tmp_path / "results" / "clock"
    trials = pd.read_parquet(out / "trials.parquet").sort_values("trial_id")
    reports = _reports(tmp_path / "ray", "clock")
    assert len(trials) == 6 and set(reports) == set(trials["trial_id"])

    members = pd.read_parquet(out / "members.parquet").set_index(["key", "seed"])
    replayed = 0
    for trial in trials.itertuples():
        rows = reports[trial.trial_id]
        clocked = [r for r in rows if FIRST_MEMBER_METRIC in r]
        # ASHA's quantity: the first seed's epochs, counted 1, 2, 3, ... on its own clock
        assert clocked and all(r["member_seed"] == 1 for r in clocked)
        assert [r[CLOCK] for r in clocked] == list(range(1, len(clocked) + 1))
        assert all(CLOCK not in r for r in rows if r.get("member_seed", 1) != 1)
        if trial.status == "EARLY_STOPPED":
            assert not any(r["final"] for r in rows)
            assert trial.stopped_at_member_epoch in (2, 4)  # ASHA's rungs, on that clock
            continue
        assert trial.status == "TERMINATED"
        final = rows[-1]
        assert final["final"] and FIRST_MEMBER_METRIC not in final and CLOCK not in final
        first = json.loads(
            (out / "members" / trial.member_key / "seed1" / "member.json").read_text()
        )
        # trained here or replayed, ASHA saw the first member's whole validation curve
        assert [r[FIRST_MEMBER_METRIC] for r in clocked] == pytest.approx(first["validation_curve"])
        if all(r["replayed"] for r in clocked):  # a stored first member, trained elsewhere
            replayed += 1
            assert members.loc[(trial.member_key, 1), "trial_id"] != trial.trial_id
        seeds = json.loads(trial.seeds)
        mine = [members.loc[(trial.member_key, s)] for s in seeds]
        assert trial.converged == all(m["converged"] for m in mine)
        assert json.loads(trial.member_epochs_run) == [m["epochs_run"] for m in mine]
        # the validation curves, per member, in both tables (lists as JSON text)
        curves = [json.loads(m["validation_curve"]) for m in mine]
        assert json.loads(trial.member_validation_curves) == curves
        assert curves[0] == pytest.approx(first["validation_curve"])
        assert all(len(c) == m["epochs_run"] for c, m in zip(curves, mine, strict=True))
    assert replayed >= 1, "no trial reused a stored first member: the replay went untested"
    assert (trials["status"] == "EARLY_STOPPED").any(), "ASHA stopped nothing: make it stop"

    # Optuna: finished trials carry their ensemble's validation score, stopped ones no value
    study = optuna.load_study(
        study_name="clock", storage=f"sqlite:///{out / 'search' / 'optuna.db'}"
    )
    by_trial = {t.user_attrs["trial_id"]: t for t in study.trials}
    first = sorted(study.trials, key=lambda t: t.number)[:2]
    assert [t.params for t in first] == [
        {"variant": "frozen", "ensemble_size": 2},
        {"variant": "scratch", "ensemble_size": 1},
    ]
    assert set(by_trial) == set(trials["trial_id"])
    for trial in trials.itertuples():
        ot = by_trial[trial.trial_id]
        assert ot.params["variant"] == trial.config_variant
        if trial.status == "TERMINATED":
            assert ot.state == optuna.trial.TrialState.COMPLETE
            assert ot.value == pytest.approx(trial.val_macro_f)
            assert set(ot.intermediate_values.values()) <= {ot.value}  # no member epochs
        else:
            assert ot.state == optuna.trial.TrialState.PRUNED and ot.value is None
            assert not ot.intermediate_values


def test_members_are_shared_between_studies(ray_local, tiny_params, tmp_path: Path) -> None:
    params = _params(tiny_params, tmp_path)
    body = "kind: grid\nseeds: [1, 2]\nspace:\n  variant: [tune_conv]\n  ensemble_size: {sizes}\n"
    body += "train: {{epochs: 1}}\n"
    (tmp_path / "one.yaml").write_text("name: one\n" + body.format(sizes="[1]"))
    (tmp_path / "two.yaml").write_text("name: two\n" + body.format(sizes="[1, 2]"))
    run_sweep(params, str(tmp_path / "one.yaml"))
    run_sweep(params, str(tmp_path / "two.yaml"))
    results = tmp_path / "results"
    one = pd.read_parquet(results / "one" / "trials.parquet")
    two = pd.read_parquet(results / "two" / "trials.parquet").set_index("ensemble_size")
    assert one["members_trained_here"].tolist() == [1]
    assert two["members_trained_here"].sum() == 1  # seed 2 only: seed 1 came from study one
    members = pd.read_parquet(results / "two" / "members.parquet").set_index("seed")
    assert members.loc[1, "study"] == "one" and members.loc[2, "study"] == "two"
    for seed in (1, 2):  # each study's results hold their own copy
        assert (results / "two" / "members" / members.loc[seed, "key"] / f"seed{seed}").is_dir()
    # the store is per storage root: a new root lacks the member, and the study trains it
    fresh = replace(params, ray=replace(params.ray, storage_path=str(tmp_path / "other")))
    run_sweep(fresh, str(tmp_path / "two.yaml"))
    again = pd.read_parquet(results / "two" / "trials.parquet")
    assert again["members_trained_here"].sum() == 2


def _status(params, study: str) -> str:
    return study_status(study_args(params, study))


def test_status_and_retrying_failed_trials(ray_local, tiny_params, tmp_path: Path) -> None:
    params = _params(tiny_params, tmp_path)
    path = tmp_path / "flaky.yaml"
    path.write_text(
        "name: flaky\nkind: grid\nmax_failures: 0\nseeds: [1]\n"
        f"space:\n  variant: [scratch]\n  adaptation_size: [16, {10**12}]\n"
        "train: {epochs: 1}\n"
    )
    before = _status(params, str(path))
    assert "no earlier run" in before and "trials: none recorded" in before
    run_sweep(params, str(path))
    status = _status(params, str(path))
    assert "resuming its state under key" in status and "lock: free" in status
    assert "1 terminated, 1 error, 0 not started" in status
    assert "1 stored for this key's finished trials, 1 trained by this study" in status
    log = next((tmp_path / "ray").glob("studies/flaky/*/trial_starts.jsonl"))
    assert len(log.read_text().splitlines()) == 2

    run_sweep(params, str(path))  # resuming: a failed trial stays failed ...
    assert len(log.read_text().splitlines()) == 2
    run_sweep(params, str(path), retry_errored=True)  # ... unless asked to retry it
    starts = [json.loads(line) for line in log.read_text().splitlines()]
    trials = pd.read_parquet(tmp_path / "results" / "flaky" / "trials.parquet")
    failed = trials.loc[trials["status"] == "ERROR", "trial_id"].item()
    assert [s["trial_id"] for s in starts].count(failed) == 2
