"""Report numbers from hand-made probabilities: what is chosen on validation, seeds in the
intervals, fixed label sets, observed differences, Holm and the printed p-values."""

from __future__ import annotations

import numpy as np
import pytest

from icdtransfer.artifacts import Training
from icdtransfer.evaluate.metrics import scores_at
from icdtransfer.report.ablation import reference_of
from icdtransfer.report.aggregate import BEST, TABLE2, TABLE3, build_report
from icdtransfer.report.bootstrap import (
    format_p,
    holm,
    interval,
    replicate_scores,
)
from icdtransfer.report.render import markdown
from icdtransfer.report.systems import Gold, System
from icdtransfer.report.tables import UNCONVERGED_MARK, caption2, caption3, table2, table3
from icdtransfer.report.verdicts import on_all_seeds

N, L = 60, 12


def gold(seed: int = 0) -> Gold:
    rng = np.random.default_rng(seed)
    y = rng.random((2 * N, L)) < 0.3
    y[:, -1] = False  # one code never occurs in validation or test
    return Gold(y[:N], y[N:], np.arange(L) + 5, [f"c{j}" for j in range(L)])


def noisy(y: np.ndarray, error: float, seed: int) -> np.ndarray:
    """Probabilities that are right (above/below 0.5) on all but `error` of the cells."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(y.shape) < error
    confident = np.where(y, 0.9, 0.1)
    return np.where(wrong, 1 - confident, confident).astype(np.float32)


def system(name: str, g: Gold, errors: list[tuple[float, float]], size: int = 1, **kw) -> System:
    """A system whose seeds err on (validation, test) at the given rates."""
    members = [
        (noisy(g.validation, ev, 10 * i), noisy(g.test, et, 10 * i + 1))
        for i, (ev, et) in enumerate(errors)
    ]
    variant = kw.pop("variant", name.split(" ")[0])
    paper = kw.pop("paper", variant)
    return System(name, variant, paper, size, members, list(range(1, len(members) + 1)), **kw)


def report(systems: list[System], g: Gold, table3_variant: str = "validation", b: int = 400):
    return build_report(systems, g, b, seed=3, table3_variant=table3_variant)


@pytest.fixture(scope="module")
def crossed() -> tuple:
    """tune_conv is best on validation, tune_all on test."""
    g = gold()
    systems = [
        system("LR", g, [(0.2, 0.2)], variant="lr", baseline=True),
        system("LR+L2R", g, [(0.18, 0.18)], variant="lr+l2r", baseline=True),
        system("scratch", g, [(0.25, 0.25), (0.25, 0.25)]),
        system("tune_conv", g, [(0.02, 0.2), (0.02, 0.2)]),
        system("tune_all", g, [(0.15, 0.02), (0.15, 0.02)]),
        system("tune_conv x2", g, [(0.02, 0.2), (0.02, 0.2)], size=2, variant="tune_conv"),
        system("tune_all x2", g, [(0.15, 0.02), (0.15, 0.02)], size=2, variant="tune_all"),
    ]
    return g, systems, report(systems, g)


def test_table3_and_best_pair_follow_validation_not_test(crossed) -> None:
    _, _, rep = crossed
    tuned = rep.scores[rep.scores["threshold_kind"] == "tuned"].set_index("system")
    # the two rankings differ: tune_conv wins on validation, tune_all on test
    assert tuned.loc["tune_conv x2", "val_macro_f"] > tuned.loc["tune_all x2", "val_macro_f"]
    assert tuned.loc["tune_conv x2", "macro_f"] < tuned.loc["tune_all x2", "macro_f"]
    assert rep.choices["tuned"].variant == "tune_conv"
    assert "chosen on validation" in rep.choices["tuned"].how
    shown = table3(rep, "tuned")
    assert set(shown["variant"]) == {"lr", "lr+l2r", "scratch", "tune_conv"}
    pv = on_all_seeds(rep.pvalues)
    best = pv[(pv["family"] == BEST) & (pv["threshold_kind"] == "tuned")]
    assert sorted(best[["system", "against"]].values[0]) == ["tune_conv", "tune_conv x2"]
    assert "nothing in this table is chosen on test" in caption3(rep, "tuned")


def test_table3_variant_fixed_in_advance(crossed) -> None:
    g, systems, _ = crossed
    rep = report(systems, g, table3_variant="tune_all")
    assert rep.choices["tuned"].variant == "tune_all"
    assert "fixed in advance" in caption3(rep, "tuned")
    with pytest.raises(ValueError, match="report.table3_variant: 'frozen' is not in the study"):
        report(systems, g, table3_variant="frozen")
    with pytest.raises(ValueError, match="neither 'validation' nor a transfer variant"):
        report(systems, g, table3_variant="scratch")


def test_table3_lists_every_baseline_against_the_best_cnn_on_validation(crossed) -> None:
    _, _, rep = crossed
    shown = table3(rep, "tuned")
    assert shown["method"].tolist()[:2] == ["lr", "lr+l2r"]  # baselines first, in order
    assert shown.loc[0, "micro_f_gain_over_lr"] == 0
    pv = on_all_seeds(rep.pvalues)
    versus = pv[(pv["family"] == TABLE3) & (pv["threshold_kind"] == "tuned")]
    # the best CNN on validation is tune_conv's ensemble (tune_all's is the best on test)
    assert set(versus["system"]) == {"tune_conv x2"} and list(versus["against"]) == [
        "LR",
        "LR+L2R",
    ]
    assert (versus["family_size_headline"] == 4).all()  # 2 baselines x micro and macro
    assert shown["best_cnn"].tolist()[:3] == ["tune_conv x2", "tune_conv x2", ""]
    point = rep.scores.query("threshold_kind == 'tuned'").set_index("system")
    gain = point.loc["tune_conv x2", "micro_f"] - point.loc["LR+L2R", "micro_f"]
    assert shown.loc[1, "best_cnn_micro_f_gain"] == pytest.approx(100 * gain)
    assert shown.loc[1, "best_cnn_macro_f_p"] != "" and shown.loc[2, "best_cnn_macro_f_p"] == ""


def test_single_model_row_is_the_mean_over_seeds(crossed) -> None:
    g, systems, rep = crossed
    row = rep.scores[
        (rep.scores["system"] == "scratch") & (rep.scores["threshold_kind"] == "fixed")
    ]
    per_seed = [scores_at(g.test, test >= 0.5) for _, test in systems[2].members]
    assert row["seeds"].item() == 2
    for metric in ("micro_f", "macro_f", "macro_f_all_labels"):
        assert row[metric].item() == pytest.approx(np.mean([getattr(s, metric) for s in per_seed]))
    assert row["seed_sd_macro_f"].item() == pytest.approx(
        np.std([s.macro_f for s in per_seed], ddof=1)
    )


def test_single_model_interval_holds_seed_spread() -> None:
    g = gold()
    spread = system("scratch", g, [(0.1, 0.0), (0.1, 0.3)])  # one seed perfect on test
    one = System("scratch", "scratch", "scratch", 1, spread.members[1:], [2])
    both = report([spread], g).scores.query("threshold_kind == 'fixed'").iloc[0]
    alone = report([one], g).scores.query("threshold_kind == 'fixed'").iloc[0]
    perfect, poor = 1.0, scores_at(g.test, spread.members[1][1] >= 0.5).macro_f
    assert alone["macro_f"] == pytest.approx(poor)
    assert both["macro_f"] == pytest.approx((perfect + poor) / 2)
    # the interval reaches both seeds' scores: seed spread is in it, not only test-set noise
    assert both["macro_f_low"] < poor + 0.02 and both["macro_f_high"] == pytest.approx(1.0)
    assert alone["macro_f_high"] - alone["macro_f_low"] < 0.5 * (
        both["macro_f_high"] - both["macro_f_low"]
    )


def test_replicates_average_over_a_fixed_label_set() -> None:
    y = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=bool)  # label 2 never occurs
    pred = y.copy()
    weights = np.array([[0, 2, 1], [1, 1, 1]], dtype=np.float32)  # replicate 0 drops doc 0
    reps = replicate_scores(y, pred, weights, np.array([1, 2, 3]))
    # label 0 loses its only positive in replicate 0 and counts as F = 0 there
    assert reps.macro_f.tolist() == [0.5, 1.0]  # over labels 0, 1 (positive in the split)
    assert reps.macro_f_all_labels.tolist() == pytest.approx([1 / 3, 2 / 3])  # over all 3
    point = scores_at(y, pred)
    assert (point.macro_f, point.macro_f_all_labels) == (1.0, pytest.approx(2 / 3))


def test_empty_decile_is_empty_in_estimate_and_interval(crossed) -> None:
    _, _, rep = crossed
    last = rep.deciles[(rep.deciles["decile"] == 10) & (rep.deciles["system"] == "scratch")]
    # decile 10 holds the code without positives: no macro_f, in estimate and interval alike
    assert last["macro_f"].isna().all() and last["macro_f_low"].isna().all()
    assert last["macro_f_all_labels"].notna().all() and (last["macro_f_all_labels_high"] == 0).all()
    assert rep.deciles["macro_f"].notna().sum() == rep.deciles["macro_f_low"].notna().sum()


def test_comparisons_report_the_observed_difference(crossed) -> None:
    _, _, rep = crossed
    point = rep.scores.set_index(["threshold_kind", "system"])
    for row in on_all_seeds(rep.pvalues).itertuples():
        a, b = (
            point.loc[(row.threshold_kind, row.system)],
            point.loc[(row.threshold_kind, row.against)],
        )
        assert row.macro_f_all_labels_delta == a["macro_f_all_labels"] - b["macro_f_all_labels"]
        assert row.micro_f_delta == a["micro_f"] - b["micro_f"]
    pv = on_all_seeds(rep.pvalues)
    vs_scratch = pv[(pv["family"] == TABLE2) & (pv["threshold_kind"] == "tuned")]
    assert sorted(vs_scratch["system"]) == ["tune_all", "tune_conv"]  # no x2 scratch to pair with


def test_holm_by_hand() -> None:
    adjusted = holm(np.array([0.01, 0.04, 0.03, 0.005]))
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm(np.array([2 / 1001, 0.02, 0.5]))
    assert adjusted.tolist() == pytest.approx([3 * 2 / 1001, 0.04, 0.5])
    assert format_p(0.0421) == "0.042" and format_p(0.002) == "0.002"
    assert format_p(2 / 2001) == "1.0e-03"  # below 0.001: two digits, never "0.000"


def test_tables_print_p_below_resolution_never_as_zero(crossed) -> None:
    _, _, rep = crossed
    frame = table2(rep, "tuned")
    text = markdown(frame, "Table 2", caption2(rep, "tuned"))
    # tune_all beats scratch on every replicate: p is 2 / (B + 1), never 0, and Holm's x4
    assert "0.000" not in text and f"{min(1.0, 4 * 2 / 401):.3f}" in text
    assert "Holm-adjusted across the table's 4 p-values" in text
    assert "macro_f_all_labels is the paper's Macro-F" in text
    assert list(frame["seeds"]) == [2, 2, 2, 2, 2]
    assert interval(np.array([np.nan, 1.0]))[0] != interval(np.array([np.nan, 1.0]))[0]  # NaN


def _training(converged: bool) -> Training:
    return Training(
        converged=converged,
        stop_reason="early_stopping" if converged else "epoch_cap",
        best_epoch=4 if converged else 8,
        epochs_run=7 if converged else 8,
        epoch_cap=8,
        patience=3,
        validation_curve=[0.1] * (7 if converged else 8),
    )


def test_rows_say_how_many_members_converged_and_mark_the_others() -> None:
    g = gold()
    systems = [
        system("LR", g, [(0.2, 0.2)], variant="lr", baseline=True),
        system("scratch", g, [(0.2, 0.2)] * 2, trainings=[_training(True), _training(True)]),
        system("tune_all", g, [(0.1, 0.1)] * 2, trainings=[_training(True), _training(False)]),
    ]
    rep = report(systems, g, b=50)
    shown = table2(rep, "tuned").set_index("variant")
    assert shown.loc["scratch", "converged"] == "2/2"
    assert not shown.loc["scratch", "method"].endswith(UNCONVERGED_MARK)
    assert shown.loc["tune_all", "converged"] == "1/2"
    assert shown.loc["tune_all", "method"].endswith(UNCONVERGED_MARK)
    lr = table3(rep, "tuned").set_index("variant").loc["lr"]
    assert lr["converged"] == "" and not lr["method"].endswith(UNCONVERGED_MARK)
    assert "1 of the report's 3 systems" in caption2(rep, "tuned")


def test_ablation_reference_is_the_most_common_value_first_in_trial_order_on_ties() -> None:
    def trial(**config) -> System:
        return System("t", config["variant"], "t", 1, [], config=config)

    systems = [
        trial(variant="tune_all", adaptation_size=64, word_dropout=0.3),
        trial(variant="scratch", adaptation_size=256, word_dropout=0.3),
        trial(variant="scratch", adaptation_size=64, word_dropout=0.0),
        trial(variant="tune_all", adaptation_size=1024, word_dropout=0.5),
    ]
    assert reference_of(systems) == {
        "variant": "tune_all",  # 2 vs 2: tune_all comes first
        "adaptation_size": 64,
        "word_dropout": 0.3,
    }
