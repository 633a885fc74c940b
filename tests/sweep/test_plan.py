"""`icdtransfer sweep --study NAME --plan`: members to train and to reuse, and the wall time
estimated from measured epoch times, before anything runs (sweep/plan.py)."""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from helpers.runs import run_sweep, study_args, write_params
from icdtransfer.cli import COMMANDS, main
from icdtransfer.sweep.epoch_times import (
    Measured,
    epochs_estimate,
    seconds_estimate,
    training_seconds_per_epoch,
)
from icdtransfer.sweep.plan import build_plan

GRID = (
    "kind: grid\nmax_concurrent: 2\nseeds: [1, 2]\nevery_seed: true\n"
    "space:\n  variant: [scratch]\n  ensemble_size: [1]\n  word_dropout: [{a}, {b}]\n"
)


def study_file(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nmetric: val_macro_f\nmode: max\n" + body)
    return path


def isolated(tiny_params, tmp_path: Path):
    """tiny_params with a member store and results folder of this test's own."""
    return replace(
        tiny_params,
        sweep=replace(tiny_params.sweep, results_dir=str(tmp_path / "results")),
        ray=replace(tiny_params.ray, storage_path=str(tmp_path / "ray")),
        member=replace(tiny_params.member, out_dir=str(tmp_path / "members")),
    )


def plan_text(params, study: Path, capsys) -> str:
    capsys.readouterr()
    args = argparse.Namespace(study=str(study), status=False, plan=True, retry_errored=False)
    COMMANDS["sweep"][0](params, args)
    return capsys.readouterr().out


def test_plan_before_a_run_trains_everything_and_writes_nothing(
    tiny_params, tmp_path: Path, capsys
) -> None:
    params = isolated(tiny_params, tmp_path)
    study = study_file(tmp_path, "a", GRID.format(a=0.0, b=0.1))
    text = plan_text(params, study, capsys)
    plan = build_plan(study_args(params, str(study)))
    assert (len(plan.to_train), len(plan.to_reuse), plan.trials) == (4, 0, 2)
    assert {(n.seed, n.variant) for n in plan.needs} == {(1, "scratch"), (2, "scratch")}
    assert "4 to train, 0 to reuse" in text
    assert "no measured epoch time" in text and "run one member first" in text
    assert "cap (2 epochs, an upper bound" in text
    # nothing ran: no results, no member store, no study state
    assert not (tmp_path / "results").exists() and not (tmp_path / "ray").exists()


def test_a_train_target_member_gives_the_first_estimate(
    tiny_params, tmp_path: Path, capsys
) -> None:
    """Before any sweep (dvc repro trains member.out_dir's member first), that member's epoch
    time on this device is the estimate; its variant is not the study's, so the epochs are a
    range from its epochs to the cap."""
    from icdtransfer.sweep.epoch_times import this_device

    params = isolated(tiny_params, tmp_path)
    study = study_file(tmp_path, "a", GRID.format(a=0.0, b=0.1))
    plan = build_plan(study_args(params, str(study)))
    cap = params.train_target.epochs
    folder = tmp_path / "members" / "tune_all_frozen_copy-seed1"
    folder.mkdir(parents=True)
    record = {
        "stage": "train_target", "variant": "tune_all_frozen_copy", "seed": 1, "epochs": 1,
        "epoch_cap": 150, "converged": True, "seconds_per_epoch": 2.5,
        "device": this_device(plan.study),
    }  # fmt: skip
    (folder / "member.json").write_text(json.dumps(record))
    (folder / "metrics.json").write_text("{}")
    also = (params.member.out_dir,)
    plan = build_plan(study_args(params, str(study)), also)
    assert all(s == pytest.approx(1 * 2.5) for s in plan.member_seconds.values())
    assert all(s == pytest.approx(cap * 2.5) for s in plan.member_seconds_high.values())
    text = plan_text(params, study, capsys)  # the command passes member.out_dir
    where = f"measured: 1 member in {tmp_path / 'members'}"
    assert f"epochs scratch: {where} of other variants (median epochs), up to the cap" in text
    assert f"s/epoch scratch: {where} (median, other variants" in text
    assert "run one member first" not in text


def test_bad_study_file_is_one_line_exit_2(tiny_params, tmp_path: Path, capsys) -> None:
    params_file = write_params(isolated(tiny_params, tmp_path), tmp_path / "params.yaml")
    bad = study_file(tmp_path, "bad", "kind: grid\nspace:\n  variant: [nope]\n")
    code = main(["sweep", "--params", str(params_file), "--study", str(bad), "--plan"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "unknown variant" in err


def test_optuna_plan_counts_sampled_trials_as_up_to(tiny_params, tmp_path: Path, capsys) -> None:
    params = isolated(tiny_params, tmp_path)
    study = study_file(
        tmp_path,
        "o",
        "kind: optuna\nnum_samples: 5\nseeds: [1, 2, 3]\n"
        "space:\n  variant: [scratch, tune_all]\n  ensemble_size: [1, 2]\n"
        "  word_dropout: {uniform: [0.0, 0.5]}\n"  # a distribution: not known in advance
        "points:\n  - {variant: scratch, ensemble_size: 1, word_dropout: 0.1}\n"
        "  - {variant: scratch, ensemble_size: 2, word_dropout: 0.1}\n",
    )
    plan = build_plan(study_args(params, str(study)))
    # the two points share seed 1's member; 3 sampled trials train up to 2 members each
    assert (len(plan.to_train), plan.sampled_trials, plan.sampled_members) == (2, 3, 6)
    assert "up to 6 more members" in plan_text(params, study, capsys)


@pytest.mark.slow
def test_plan_after_a_run_reuses_and_estimates_from_measured_members(
    ray_local, tiny_params, tmp_path: Path, capsys
) -> None:
    params = isolated(tiny_params, tmp_path)
    first = study_file(tmp_path, "a", GRID.format(a=0.0, b=0.1))
    run_sweep(params, str(first))
    done = build_plan(study_args(params, str(first)))
    assert (len(done.to_train), len(done.to_reuse)) == (0, 4)
    assert "0 to train, 4 to reuse" in plan_text(params, first, capsys)

    # one dimension value differs: word_dropout 0.0's members are shared, 0.3's are new
    second = study_file(tmp_path, "b", GRID.format(a=0.0, b=0.3))
    plan = build_plan(study_args(params, str(second)))
    assert (len(plan.to_train), len(plan.to_reuse)) == (2, 2)
    assert {n.key for n in plan.to_reuse} <= {n.key for n in done.needs}
    recorded = [
        json.loads(p.read_text())
        for p in (tmp_path / "results" / "a" / "members").glob("*/seed*/member.json")
    ]
    assert len(recorded) == 4
    epochs = statistics.median(m["epochs"] for m in recorded)
    per_epoch = statistics.median(m["seconds_per_epoch"] for m in recorded)
    # one member key to train, so its one trial trains both seeds, one after the other
    assert plan.parallelism == 1
    assert plan.wall_seconds == pytest.approx(2 * epochs * per_epoch)
    assert all(s == pytest.approx(epochs * per_epoch) for s in plan.member_seconds.values())
    text = plan_text(params, second, capsys)
    where = f"measured: 4 members in {tmp_path / 'results'}/a"
    assert f"epochs scratch: {where} (median epochs)" in text
    assert f"s/epoch scratch: {where} (median, same variant" in text
    assert "2 to train, 2 to reuse" in text
    assert not (tmp_path / "results" / "b").exists()


def measured(fraction: float, epochs: int, spe: float, train_part: float | None) -> Measured:
    return Measured(
        "results/a", f"k{fraction}", 1, "scratch", "cpu: x", spe, epochs, 150, True, fraction,
        "max", train_part,
    )  # fmt: skip


def test_another_train_fraction_scales_only_the_training_part_and_ranges_the_epochs() -> None:
    full = measured(1.0, 60, 1.5, 1.0)  # 1.0 s training, 0.5 s validation per epoch
    spe = seconds_estimate([full], "cpu: x", "scratch", 0.25, "max")
    assert spe.value == pytest.approx(0.5 + 0.25) and "training part scaled" in spe.source
    unknown = seconds_estimate([measured(1.0, 60, 1.5, None)], "cpu: x", "scratch", 0.25, "max")
    assert unknown.value == pytest.approx(1.5 * 0.25)  # no training part known: all scaled
    epochs = epochs_estimate([full], "scratch", 0.25, 150)
    assert (epochs.value, epochs.high) == (60, 150)  # 60 epochs to 240 (same steps), the cap
    assert "60-150 epochs" in epochs.source
    assert epochs_estimate([full], "scratch", 0.5, 150).high == 120
    same = epochs_estimate([full], "scratch", 1.0, 150)
    assert (same.value, same.high) == (60, None)


def test_a_members_training_part_is_its_documents_over_its_median_rate(tmp_path: Path) -> None:
    rates = [{"epoch": e, "train_docs_per_s": r} for e, r in ((1, 100.0), (2, 200.0), (3, 400.0))]
    (tmp_path / "history.json").write_text(json.dumps(rates))
    assert training_seconds_per_epoch(tmp_path, 300) == pytest.approx(1.5)
    assert training_seconds_per_epoch(tmp_path, None) is None
    assert training_seconds_per_epoch(tmp_path / "absent", 300) is None
