"""The statistics a reviewer checks, each on a value computed by hand: patients resampled as
units, p-values never 0, seeds half-sampled with the variance of the mean, ensemble sizes
averaged over every seed subset, verdicts per seed half, and no study selecting on test."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from icdtransfer.config import ConfigError
from icdtransfer.evaluate.metrics import scores_at, tune_threshold
from icdtransfer.report.aggregate import TABLE2, build_report
from icdtransfer.report.bootstrap import (
    draws,
    paired_p_value,
    seed_weights,
    subsets,
)
from icdtransfer.report.systems import Gold, System
from icdtransfer.report.verdicts import (
    BETTER,
    NONE,
    NOT_REPLICATED,
    REPLICATED,
    agreement,
    halves,
    mark_replication,
)
from icdtransfer.sweep.study import load_study


def test_a_patient_with_two_notes_is_resampled_as_one() -> None:
    # notes 0 and 1 belong to patient "a", note 2 to "b": a replicate draws two patients, so
    # the weights are (2, 2, 0), (1, 1, 1) or (0, 0, 2), never (1, 0, 2) as notes one by one
    weights = draws(np.array(["a", "a", "b"]), 2000, seed=0)
    assert {tuple(w) for w in weights.tolist()} == {(2, 2, 0), (1, 1, 1), (0, 0, 2)}
    assert (weights[:, 0] == weights[:, 1]).all()
    # (1, 1, 1) comes from drawing a then b or b then a: probability 1/2
    share = np.mean((weights == 1).all(axis=1))
    assert share == pytest.approx(0.5, abs=0.04)
    # one note per patient: the classic bootstrap, counts summing to N
    assert (draws(5, 100, seed=1).sum(axis=1) == 5).all()


def test_p_values_are_never_zero() -> None:
    b = 999
    always_better = paired_p_value(np.ones(b), np.zeros(b))
    assert always_better == pytest.approx(2 / (b + 1)) and always_better > 0
    # 10 of 999 replicates on the wrong side: 2 x 11 / 1000
    a = np.ones(b)
    a[:10] = -1
    assert paired_p_value(a, np.zeros(b)) == pytest.approx(0.022)
    assert paired_p_value(np.zeros(b), np.zeros(b)) == 1.0


def test_seed_half_samples_have_the_variance_of_the_mean() -> None:
    # S = 4 seeds scoring 0, 1, 2, 3: the mean of 2 seeds drawn without replacement takes the
    # 6 values 0.5, 1, 1.5, 1.5, 2, 2.5, whose variance around 1.5 is 2.5 / 6 = s^2 / S
    # (s^2 = 5/3, the seeds' variance with ddof 1); resampling 4 seeds with replacement
    # would give (S - 1) / S of it
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    weights = seed_weights(4, 1, 6000, np.random.default_rng(0))
    assert ((weights > 0).sum(axis=1) == 2).all() and np.allclose(weights.sum(axis=1), 1)
    means = weights @ scores
    assert set(np.round(means, 6)) == {0.5, 1.0, 1.5, 2.0, 2.5}
    assert means.var() == pytest.approx(np.var(scores, ddof=1) / 4, rel=0.05)
    # ensembles of 2 of S = 4: half-samples of 2 hold one pair each, drawn uniformly
    pairs = seed_weights(4, 2, 3000, np.random.default_rng(1))
    assert ((pairs == 1).sum(axis=1) == 1).all() and pairs.shape[1] == 6
    assert np.allclose(pairs.mean(axis=0), 1 / 6, atol=0.02)
    # ensembles of 3 of 4 (more than half): each replicate draws 3 seeds and ensembles them
    triples = seed_weights(4, 3, 100, np.random.default_rng(2))
    assert ((triples == 1).sum(axis=1) == 1).all() and triples.shape[1] == 4


def _gold(n: int = 80, labels: int = 6, seed: int = 0) -> Gold:
    rng = np.random.default_rng(seed)
    y = rng.random((2 * n, labels)) < 0.35
    patients = np.repeat(np.arange(n // 2), 2)  # two test notes per patient
    return Gold(y[:n], y[n:], np.arange(labels) + 1, [f"c{j}" for j in range(labels)], patients)


def _probs(y: np.ndarray, error: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wrong = rng.random(y.shape) < error
    sure = np.where(y, 0.8, 0.2) + rng.normal(0, 0.05, y.shape)
    return np.clip(np.where(wrong, 1 - sure, sure), 0, 1).astype(np.float32)


def _system(name: str, g: Gold, errors: list[float], size: int, variant: str) -> System:
    members = [
        (_probs(g.validation, e, 7 * i), _probs(g.test, e, 7 * i + 1)) for i, e in enumerate(errors)
    ]
    return System(name, variant, variant, size, members, list(range(1, len(errors) + 1)))


def test_ensemble_size_points_average_over_every_seed_subset() -> None:
    g = _gold()
    errors = [0.1, 0.25, 0.4]
    pair = _system("tune_all x2", g, errors, 2, "tune_all")
    rep = build_report([pair], g, 200, seed=0, table3_variant="validation")
    row = rep.scores.query("threshold_kind == 'tuned'").iloc[0]
    # by hand: the three ensembles of 2 of the 3 seeds, each at its own tuned threshold
    by_hand = []
    for i, j in itertools.combinations(range(3), 2):
        val = (pair.members[i][0] + pair.members[j][0]) / 2
        test = (pair.members[i][1] + pair.members[j][1]) / 2
        by_hand.append(scores_at(g.test, test >= tune_threshold(g.validation, val)).micro_f)
    assert subsets(3, 2) == [(0, 1), (0, 2), (1, 2)]
    assert row["micro_f"] == pytest.approx(np.mean(by_hand))
    assert row["seeds"] == 3
    # seed variation is in the ensemble's interval: one good and two poor seeds spread wider
    # than three equal seeds, on the same patients
    same = _system("tune_all x2", g, [0.25, 0.25, 0.25], 2, "tune_all")
    same.members = [same.members[0]] * 3
    flat = build_report([same], g, 200, seed=0, table3_variant="validation")
    flat_row = flat.scores.query("threshold_kind == 'tuned'").iloc[0]
    assert (
        row["micro_f_high"] - row["micro_f_low"]
        > flat_row["micro_f_high"] - (flat_row["micro_f_low"])
    )


def test_every_comparison_is_made_on_both_seed_halves() -> None:
    g = _gold(n=120)
    # tune_all is better than scratch with seeds 1-2 and no better with seeds 3-4
    scratch = _system("scratch", g, [0.3, 0.3, 0.3, 0.3], 1, "scratch")
    mixed = _system("tune_all", g, [0.05, 0.05, 0.3, 0.3], 1, "tune_all")
    rep = build_report([scratch, mixed], g, 300, seed=0, table3_variant="validation")
    rows = rep.pvalues[
        (rep.pvalues["family"] == TABLE2) & (rep.pvalues["threshold_kind"] == "tuned")
    ]
    by_set = rows.set_index("seed_set")
    assert set(by_set.index) == {"all seeds", "first half", "second half"}
    assert (
        by_set.loc["first half", "seeds"] == "1,2" and by_set.loc["second half", "seeds"] == "3,4"
    )
    assert by_set.loc["first half", "micro_f_verdict"] == BETTER
    assert by_set.loc["second half", "micro_f_verdict"] == NONE
    assert (rows["micro_f_replication"] == NOT_REPLICATED).all()
    assert halves([5, 1, 3, 2, 4, 6]) == ([1, 2, 3], [4, 5, 6])


def test_replication_and_agreement_by_hand() -> None:
    keys = {"threshold_kind": "tuned", "family": "f", "against": "scratch"}
    rows = []
    for system, verdicts in (("a", (BETTER, BETTER, BETTER)), ("b", (BETTER, BETTER, NONE))):
        for seed_set, v in zip(("all seeds", "first half", "second half"), verdicts, strict=True):
            row = {**keys, "system": system, "seed_set": seed_set}
            for m in ("micro_f", "macro_f_all_labels", "rarest_macro_f", "frequent_macro_f"):
                row[f"{m}_verdict"] = v
            rows.append(row)
    frame = mark_replication(pd.DataFrame(rows))
    status = frame.groupby("system")["micro_f_replication"].first().to_dict()
    assert status == {"a": REPLICATED, "b": NOT_REPLICATED}
    other = frame.copy()
    other.loc[(other["system"] == "b") & (other["seed_set"] == "all seeds"), "micro_f_verdict"] = (
        NONE
    )
    shares = agreement(frame, other)
    assert shares["verdicts"] == 8 and shares["agree"] == 7 and shares["opposite"] == 0


def test_a_study_that_selects_on_test_is_refused(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nkind: grid\nmetric: test_macro_f_tuned\nspace: {variant: [scratch]}\n"
    )
    with pytest.raises(ConfigError, match="not a validation metric"):
        load_study(path)
    path.write_text("name: s\nkind: grid\nmetric: val_macro_f\nspace: {variant: [scratch]}\n")
    assert load_study(path).metric == "val_macro_f"


def test_an_every_seed_trial_reports_every_member_it_obtained() -> None:
    from icdtransfer.sweep.results import members_used

    trials = pd.DataFrame(
        {
            "status": ["TERMINATED", "TERMINATED", "EARLY_STOPPED"],
            "member_key": ["a", "b", "c"],
            "seeds": ["[1]", "[1, 2, 3]", "[1]"],
            "member_seeds": ["[1, 2, 3, 4]", "[1, 2, 3, 4]", "[1]"],
        }
    )
    # the ensemble's seeds are [1] and [1, 2, 3]; the report needs every seed of each key
    assert members_used(trials) == [(k, s) for k in "ab" for s in (1, 2, 3, 4)]
    assert members_used(trials.drop(columns="member_seeds")) == [("a", 1)] + [
        ("b", s) for s in (1, 2, 3)
    ]
