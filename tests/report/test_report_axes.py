"""The report's new axes (issue 22): gain over scratch by training size and by pooling,
and compute cost, recomputed from the members of the shared report run (conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.report_studies import SHIPPED
from icdtransfer.artifacts import MemberInfo, read_probs
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.splits import patient_subsample
from icdtransfer.evaluate.metrics import dense, scores_at, tune_threshold
from icdtransfer.report.aggregate import TABLE2
from icdtransfer.report.data_size import crossing

pytestmark = pytest.mark.slow


def mean_macro_f(params, folders: list[Path]) -> float:
    """Test macro-F over all codes at the tuned threshold, the mean over single members."""
    corpus = Corpus.open(params.target.out_dir)
    y_val = dense(corpus.labels[corpus.split("validation")])
    y_test = dense(corpus.labels[corpus.split("test")])
    scored = [read_probs(f) for f in folders]
    return np.mean(
        [scores_at(y_test, t >= tune_threshold(y_val, v)).macro_f_all_labels for v, t in scored]
    )


def test_data_size_gains_pair_each_size_with_scratch_and_match_the_members(
    reported: dict,
) -> None:
    params, reports = reported["params"], reported["reports"]
    results = Path(params.sweep.results_dir) / "sizes"
    corpus = Corpus.open(params.target.out_dir)
    trials = pd.read_parquet(results / "trials.parquet")
    frame = pd.read_csv(reports / "tables" / "data_size.csv")
    every = frame[(frame["seed_set"] == "all seeds") & (frame["threshold_kind"] == "tuned")]
    fractions = SHIPPED["space"]["train_fraction"]
    assert sorted(every["train_fraction"]) == sorted(fractions)
    assert set(frame["family"]) == {"data size: vs scratch"}
    train = corpus.split("train")
    patients = corpus.docs["patient_id"].to_numpy()[train]

    def macro_f(variant: str, fraction: float) -> float:
        row = trials[
            (trials["variant"] == variant) & (trials["config_train_fraction"] == fraction)
        ].iloc[0]
        folders = sorted((results / "members" / row["member_key"]).glob("seed*"))
        assert len(folders) == 2
        for folder in folders:  # each seed's own subsample, nested across fractions
            seed = int(folder.name.removeprefix("seed"))
            kept = patient_subsample(patients, fraction, seed=seed)
            assert MemberInfo.read(folder).details["train_documents"] == int(kept.sum())
            if fraction < 1:
                bigger = min(f for f in fractions if f > fraction)
                assert not (kept & ~patient_subsample(patients, bigger, seed=seed)).any()
        return mean_macro_f(params, folders)

    documents = {}
    for row in every.itertuples():
        assert row.system.startswith("variant tune_all,")
        assert row.against.startswith("variant scratch,")
        assert f"train_fraction {row.train_fraction:g}" in row.against
        expected = macro_f("tune_all", row.train_fraction) - macro_f("scratch", row.train_fraction)
        assert row.macro_f_all_labels_delta == pytest.approx(expected, abs=1e-9)
        assert row.macro_f_all_labels_delta_low <= row.macro_f_all_labels_delta_high
        documents[row.train_fraction] = row.train_documents
    # more patients, more training documents
    assert list(documents.values()) == sorted(documents.values()) and documents[0.1] > 0
    assert len(set(documents.values())) == len(fractions)
    crossings = pd.read_csv(reports / "tables" / "data_size_crossings.csv")
    assert len(crossings) == 1 and crossings["line"].item().startswith("variant tune_all,")
    gains = every.sort_values("train_fraction")["macro_f_all_labels_delta"].to_numpy()
    point = crossing(sorted(fractions), gains)[0]
    written = crossings["crossing_fraction"].item()
    assert (point is None and np.isnan(written)) or written == pytest.approx(point)
    assert crossings["crossing_low"].item() <= crossings["crossing_high"].item()
    summary = reported["summary"]["data_size"]
    assert summary["study"] == "sizes" and summary["crossings"] == list(crossings["text"])
    verdicts = pd.read_csv(reports / "tables" / "verdicts.csv")
    assert (verdicts["family"] == "data size: vs scratch").sum() == len(frame)
    page = (reports / "dashboard.html").read_text()
    assert "Training size: study sizes" in page and crossings["text"].item() in page


def test_cost_per_variant_shares_stage1_and_each_comparison_has_its_gain_per_hour(
    reported: dict,
) -> None:
    params, reports = reported["params"], reported["reports"]
    results = Path(params.sweep.results_dir)
    stage1 = MemberInfo.read(Path(params.train_target.pretrained)).compute
    assert stage1 is not None and stage1.cpu_seconds > 0
    members = {}  # (key, seed) -> (study names, info)
    for path in results.glob("*/members/*/seed*/member.json"):
        info = MemberInfo.read(path.parent)
        studies, _ = members.setdefault((path.parent.parent.name, path.parent.name), ([], info))
        studies.append(path.parents[3].name)
    users = sum(info.pretrained is not None for _, info in members.values())
    share = (stage1.cpu_seconds + stage1.gpu_seconds) / 3600 / users
    cost = pd.read_csv(reports / "tables" / "cost.csv")
    for (study, variant), part in cost.groupby(["study", "variant"]):
        if study.startswith("all studies") or variant == "all" or study == "baselines":
            continue
        mine = [i for studies, i in members.values() if study in studies and i.variant == variant]
        row = part.iloc[0]
        assert row["members"] == len(mine) > 0
        own = sum(i.compute.cpu_seconds for i in mine) / 3600
        assert row["cpu_hours"] == pytest.approx(own) and row["gpu_hours"] == 0
        transfer = variant != "scratch"
        assert row["stage1_share_hours"] == pytest.approx(share * len(mine) if transfer else 0)
    total = cost[cost["study"].str.startswith("all studies")].iloc[0]
    assert total["members"] == len(members)  # each member once, though studies share some
    assert total["stage1_share_hours"] == pytest.approx(share * users)
    verdicts = pd.read_csv(reports / "tables" / "verdicts.csv")
    grid = verdicts[(verdicts["family"] == TABLE2) & (verdicts["seed_set"] == "all seeds")]
    row = grid[grid["system"] == "tune_all_frozen_copy"].iloc[0]
    assert row["against"] == "scratch"
    folders = sorted((results / "grid" / "members").glob("tune_all_frozen_copy-*/seed*"))
    hours = np.mean([MemberInfo.read(f).compute.cpu_seconds / 3600 + share for f in folders])
    assert row["system_hours"] == pytest.approx(hours)
    assert row["gain_per_hour"] == pytest.approx(row["macro_f_all_labels_delta"] * 100 / hours)
    assert row["extra_hours"] == pytest.approx(hours - row["against_hours"])
    # each baseline: its own member.json's CPU seconds, listed and used as Table 3's reference
    baselines = cost[cost["study"] == "baselines"].set_index("variant")
    assert sorted(baselines.index) == ["lr", "lr_l2r", "lr_l2r_nerc"]
    names = {"lr": "LR", "lr_l2r": "LR + L2R", "lr_l2r_nerc": "LR + L2R + NERC"}
    for method, row in baselines.iterrows():
        compute = MemberInfo.read(Path(params.baseline.member_dir(method))).compute
        assert compute is not None and compute.device.startswith("cpu: ")
        assert row["cpu_hours"] == pytest.approx(compute.cpu_seconds / 3600) and row["hours"] > 0
        against = verdicts[verdicts["against"] == names[method]]["against_hours"]
        assert len(against) and against.to_numpy() == pytest.approx(row["hours"])
    page = (reports / "dashboard.html").read_text()
    assert "Cost: compute per study and variant" in page and "points per hour" in page
    assert "nan" not in (reports / "tables" / "verdicts.md").read_text()


def test_pooling_gains_compare_transfer_with_scratch_under_each_pooling(reported: dict) -> None:
    params, reports = reported["params"], reported["reports"]
    results = Path(params.sweep.results_dir) / "pool"
    trials = pd.read_parquet(results / "trials.parquet")

    def macro_f(variant: str, pooling: str) -> float:
        row = trials[(trials["variant"] == variant) & (trials["config_pooling"] == pooling)]
        folders = sorted((results / "members" / row["member_key"].item()).glob("seed*"))
        assert len(folders) == 2
        assert {MemberInfo.read(f).head["pooling"] for f in folders} == {pooling}
        return mean_macro_f(params, folders)

    frame = pd.read_csv(reports / "tables" / "pooling.csv")
    assert set(frame["family"]) == {"pooling: vs scratch"}
    every = frame[(frame["seed_set"] == "all seeds") & (frame["threshold_kind"] == "tuned")]
    assert sorted(every["pooling"]) == ["label_attention", "max"]
    for row in every.itertuples():
        assert row.system.startswith("variant tune_all,") and f"pooling {row.pooling}" in row.system
        assert row.against == row.system.replace("variant tune_all,", "variant scratch,")
        expected = macro_f("tune_all", row.pooling) - macro_f("scratch", row.pooling)
        assert row.macro_f_all_labels_delta == pytest.approx(expected, abs=1e-9)
        assert row.family_size_headline == 4  # 2 poolings x micro-F and macro-F, one family
    written = reported["summary"]["pooling"]
    assert written["study"] == "pool" and set(written["verdicts"]) == set(every["system"])
    page = (reports / "dashboard.html").read_text()
    assert "Pooling: study pool" in page and "reports/tables/pooling.csv" in page
