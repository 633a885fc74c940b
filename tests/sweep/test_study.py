"""Study files: the shipped ones load; malformed ones name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from icdtransfer.config import ConfigError
from icdtransfer.sweep.study import load_study, tune_space

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name",
    [
        "table2",
        "table2_paper",
        "sweep",
        "smoke",
        "ablation",
        "pooling",
        "data_size",
        "data_size_quick",
    ],
)
def test_shipped_studies_load(name: str, ray_local) -> None:
    study = load_study(REPO / "studies" / f"{name}.yaml")
    assert study.name == name
    space = tune_space(study)
    assert set(space) == set(study.space)


def test_table2_is_the_papers_grid() -> None:
    study = load_study(REPO / "studies" / "table2.yaml")
    assert study.kind == "grid"
    assert study.space["variant"] == [
        "scratch",
        "frozen",
        "tune_conv",
        "tune_all",
        "tune_all_frozen_copy",
    ]
    assert study.space["ensemble_size"] == [1, 3] and study.seeds == [1, 2, 3, 4, 5, 6]
    assert study.every_seed  # every configuration over all 6 seeds: each half has 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: grid\nspace: {variant: [scratch]}\n", "missing key name"),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\nmax_concurent: 2\n",
            "unknown key max_concurent",
        ),
        ("name: x\nkind: grid\nspace: {dropout_rate: [0.1]}\n", "unknown key space.dropout_rate"),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch, tune_most]}\n",
            "space.variant: unknown variant",
        ),
        (
            "name: x\nkind: grid\nspace: {word_dropout: {uniform: [0, 1]}}\n",
            "space.word_dropout: a grid study takes a list or a value",
        ),
        (
            "name: x\nkind: optuna\nspace: {word_dropout: {uniform: [0]}}\n",
            "space.word_dropout.uniform must be [low, high]",
        ),
        (
            "name: x\nkind: grid\nspace: {ensemble_size: [1, 5]}\nseeds: [1, 2]\n",
            "ensemble_size up to 5 needs as many seeds",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\nresources: {cpus: 1}\n",
            "unknown key resources.cpus",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\ntrain: {epoch: 1}\n",
            "unknown key train.epoch",
        ),
        ("name: x\nkind: bayes\nspace: {variant: [scratch]}\n", "kind must be one of"),
        ("name: x\nkind: grid\nspace: {ensemble_size: [1]}\n", "space.variant is missing"),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\nnum_samples: two\n",
            "num_samples must be int",
        ),
        # values outside their range, in the fixed train overrides and in the space
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\ntrain: {patience: 0}\n",
            "train.patience must be >= 1, got 0",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\ntrain: {word_dropout: 1.0}\n",
            "train.word_dropout must be in [0, 1), got 1.0",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\ntrain: {batch_size: 0}\n",
            "train.batch_size must be >= 1, got 0",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\ntrain: {max_tokens: many}\n",
            "train.max_tokens must be int, got 'many'",
        ),
        (
            "name: x\nkind: grid\nspace: {word_dropout: [0.1, 1.0]}\n",
            "space.word_dropout[1] must be in [0, 1), got 1.0",
        ),
        (
            "name: x\nkind: optuna\nspace: {word_dropout: {uniform: [0.0, 1.5]}}\n",
            "space.word_dropout.uniform[1] must be in [0, 1), got 1.5",
        ),
        (
            "name: x\nkind: optuna\nspace: {learning_rate: {loguniform: [0, 0.1]}}\n",
            "space.learning_rate.loguniform[0] must be > 0, got 0",
        ),
        (
            "name: x\nkind: grid\nspace: {adaptation_size: {value: 0}}\n",
            "space.adaptation_size.value must be >= 1, got 0",
        ),
        (
            "name: x\nkind: grid\nspace: {epochs: [2, 0]}\n",
            "space.epochs[1] must be >= 1, got 0",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\nseeds: [-1]\n",
            "seeds[0] must be >= 0, got -1",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\nresources: {cpu: -1}\n",
            "resources.cpu must be >= 0, got -1",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\nmax_concurrent: 0\n",
            "max_concurrent must be >= 1, got 0",
        ),
        # the convergence policy is the one place that sets the training rule
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\n"
            "convergence: {patience: 3, max_epochs: 3}\n",
            "convergence.max_epochs (3) must be greater than convergence.patience (3)",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\ntrain: {epochs: 9}\n"
            "convergence: {patience: 3, max_epochs: 30}\n",
            "train.epochs and convergence both set the training rule",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch], epochs: [4, 8]}\n"
            "convergence: {patience: 3, max_epochs: 30}\n",
            "space.epochs and convergence both set the training rule",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\nconvergence: {patience: 0, "
            "max_epochs: 30}\n",
            "convergence.patience must be >= 1, got 0",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\n"
            "convergence: {patience: 3, max_epochs: 30, min_delta: 1.5}\n",
            "convergence.min_delta must be in [0, 1), got 1.5",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\nconvergence: {max_epochs: 30}\n",
            "missing key convergence.patience",
        ),
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\n"
            "convergence: {patience: 3, max_epochs: 30, min_epochs: 31}\n",
            "convergence.min_epochs (31) must not exceed convergence.max_epochs (30)",
        ),
        # points: an optuna study's designed trials, inside its space
        (
            "name: x\nkind: grid\nspace: {variant: [scratch]}\npoints: [{variant: scratch}]\n",
            "points: only an optuna study takes points",
        ),
        (
            "name: x\nkind: optuna\nnum_samples: 2\nspace: {variant: [scratch, tune_all], "
            "word_dropout: {uniform: [0.0, 0.5]}}\npoints: [{variant: scratch}]\n",
            "points[0] must set exactly the searched dimensions ['variant', 'word_dropout']",
        ),
        (
            "name: x\nkind: optuna\nnum_samples: 2\nspace: {variant: [scratch, tune_all], "
            "word_dropout: {uniform: [0.0, 0.5]}}\n"
            "points: [{variant: scratch, word_dropout: 0.7}]\n",
            "points[0].word_dropout = 0.7 is outside space.word_dropout",
        ),
        (
            "name: x\nkind: optuna\nnum_samples: 1\nspace: {variant: [scratch, frozen]}\n"
            "points: [{variant: scratch}, {variant: frozen}]\n",
            "2 points but num_samples 1",
        ),
        # train_fraction: a share of the training patients, in (0, 1]
        (
            "name: x\nkind: grid\nspace: {variant: [scratch], train_fraction: [0.0, 0.5]}\n",
            "space.train_fraction[0] must be in (0, 1], got 0.0",
        ),
        # pooling: a head key with two values (model/attention.py)
        (
            "name: x\nkind: grid\nspace: {variant: [scratch], pooling: [max, mean]}\n",
            "space.pooling[1] must be one of ['max', 'label_attention'], got 'mean'",
        ),
    ],
)
def test_malformed_study_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_convergence_policy_sets_every_members_rule_and_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: c\nkind: grid\nspace: {variant: [scratch, tune_all]}\n"
        "train: {max_tokens: 200}\nconvergence: {patience: 4, max_epochs: 50, min_delta: 0.002}\n"
    )
    study = load_study(path)
    assert study.train == {
        "max_tokens": 200,
        "epochs": 50,
        "patience": 4,
        "min_delta": 0.002,
        "min_epochs": 1,
        # the rule's other keys, at their defaults: the plain rule
        "lr_patience": 0,
        "lr_factor": 0.5,
        "lr_reductions": 0,
        "weight_average": 0.0,
        "criterion": "val_macro_f",
        "smoothing": 1,
    }
    assert study.epoch_cap(default=12) == 50
    path.write_text("name: c\nkind: grid\nspace: {variant: [scratch], epochs: [3, 9]}\n")
    assert load_study(path).epoch_cap(default=12) == 9  # searched epochs: the largest


def test_the_ablation_study_runs_by_the_convergence_policy() -> None:
    study = load_study(REPO / "studies" / "sweep.yaml")
    assert study.convergence is not None and study.scheduler == "asha"
    assert study.train["epochs"] == study.convergence.max_epochs


def test_the_default_ablation_is_one_factor_at_a_time_around_table2s_members() -> None:
    """Each designed point differs from the base configuration in one dimension, and the
    base settings are params.yaml's head, so table2's members are shared, not retrained."""
    from icdtransfer.config import load_params

    study = load_study(REPO / "studies" / "ablation.yaml")
    head = load_params(REPO / "params.yaml").head
    base = {
        "variant": "tune_all_frozen_copy",
        "adaptation_size": head.adaptation_size,
        "word_dropout": head.word_dropout,
        "ensemble_size": 3,  # the mean over every 3 of the configuration's 6 seeds
    }
    assert study.kind == "optuna" and study.num_samples == len(study.points)
    assert study.points[0] == base
    changed = [{k for k in base if p[k] != base[k]} for p in study.points[1:]]
    assert all(len(c) == 1 for c in changed)
    for dimension in base:  # every dimension varies (ablation_wide.yaml has more values)
        values = {p[dimension] for p in study.points}
        assert len(values) >= 2, dimension
    assert study.seeds == [1, 2, 3, 4, 5, 6] and study.every_seed
    table2 = load_study(REPO / "studies" / "table2.yaml")
    assert table2.convergence == study.convergence and table2.train == study.train


def test_pooling_is_a_study_dimension_over_the_heads_poolings(tmp_path: Path) -> None:
    path = tmp_path / "pooling.yaml"
    path.write_text(
        "name: pooling\nkind: grid\nspace:\n  variant: [scratch, tune_all]\n"
        "  pooling: [max, label_attention]\n"
    )
    study = load_study(path)
    assert study.space["pooling"] == ["max", "label_attention"]
    assert tune_space(study)["pooling"] == {"grid_search": ["max", "label_attention"]}
