"""Reports: numbers recomputed from member probabilities, bootstrap behaviour, the dashboard
in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.report_studies import OTHER, REFERENCE
from icdtransfer.artifacts import MemberInfo, read_probs
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import dense, scores_at, tune_threshold
from icdtransfer.report.aggregate import BEST, TABLE2, TABLE3
from icdtransfer.report.bootstrap import draws, interval, replicate_scores
from icdtransfer.report.protocol import PANEL_ID, TABLE_ID

pytestmark = pytest.mark.slow
pytestmark = pytest.mark.slow


def test_tables_equal_a_recomputation_from_member_probabilities(reported: dict) -> None:
    params, reports = reported["params"], reported["reports"]
    corpus = Corpus.open(params.target.out_dir)
    y_val = dense(corpus.labels[corpus.split("validation")])
    y_test = dense(corpus.labels[corpus.split("test")])
    results = Path(params.sweep.results_dir) / "grid"
    trials = pd.read_parquet(results / "trials.parquet")
    table = pd.read_csv(reports / "tables" / "table2_tuned.csv")
    fixed = pd.read_csv(reports / "tables" / "table2_fixed.csv")
    assert len(table) == len(trials) == 6
    for row in trials.itertuples():
        probs = [read_probs(results / "members" / row.member_key / f"seed{s}") for s in (1, 2)]
        if row.ensemble_size > 1:  # AVG: the ensemble of the two seeds
            val = np.mean([p[0] for p in probs], axis=0)
            test = np.mean([p[1] for p in probs], axis=0)
            tuned = [scores_at(y_test, test >= tune_threshold(y_val, val))]
            half = [scores_at(y_test, test >= 0.5)]
        else:  # a single-model row: the mean over both seeds' single models
            tuned = [scores_at(y_test, t >= tune_threshold(y_val, v)) for v, t in probs]
            half = [scores_at(y_test, t >= 0.5) for _, t in probs]
        mine = table[
            (table["variant"] == row.variant) & (table["ensemble_size"] == row.ensemble_size)
        ]
        assert mine["seeds"].item() == 2
        for metric in ("micro_f", "macro_f", "macro_f_all_labels"):
            expected = np.mean([getattr(s, metric) for s in tuned]) * 100
            assert mine[metric].item() == pytest.approx(expected, abs=1e-9)
        theirs = fixed[
            (fixed["variant"] == row.variant) & (fixed["ensemble_size"] == row.ensemble_size)
        ]
        expected = np.mean([s.micro_f for s in half]) * 100
        assert theirs["micro_f"].item() == pytest.approx(expected, abs=1e-9)
    lr = pd.read_csv(reports / "tables" / "table3_tuned.csv").iloc[0]
    val, test = read_probs(Path(params.baseline.out_dir))
    assert lr["method"].startswith("LR") and lr["micro_f_gain_over_lr"] == 0
    assert lr["micro_f"] == pytest.approx(
        scores_at(y_test, test >= tune_threshold(y_val, val)).micro_f * 100, abs=1e-9
    )


def test_table3_lists_the_three_baselines_against_the_best_cnn(reported: dict) -> None:
    params, reports = reported["params"], reported["reports"]
    table = pd.read_csv(reports / "tables" / "table3_tuned.csv")
    assert table["variant"].tolist()[:3] == ["lr", "lr_l2r", "lr_l2r_nerc"]
    corpus = Corpus.open(params.target.out_dir)
    y_val = dense(corpus.labels[corpus.split("validation")])
    y_test = dense(corpus.labels[corpus.split("test")])
    systems = pd.read_csv(reports / "tables" / "systems.csv")
    tuned = systems[systems["threshold_kind"] == "tuned"]
    cnn = tuned[~tuned["variant"].isin(["lr", "lr_l2r", "lr_l2r_nerc"])]
    best = cnn.sort_values("val_macro_f_all_labels", ascending=False, kind="stable").iloc[0]
    for row in table.iloc[:3].itertuples():
        val, test = read_probs(Path(params.baseline.member_dir(row.variant)))
        assert row.micro_f == pytest.approx(
            scores_at(y_test, test >= tune_threshold(y_val, val)).micro_f * 100, abs=1e-9
        )
        assert row.best_cnn == best["system"]
        # the observed difference on test, chosen on validation, with its Holm-adjusted p
        gain = best["macro_f_all_labels"] * 100 - row.macro_f_all_labels
        assert row.best_cnn_macro_f_all_labels_gain == pytest.approx(gain, abs=1e-9)
        p = str(row.best_cnn_macro_f_p)
        assert p.startswith("< ") or 0 <= float(p) <= 1
    paper = dict(zip(table["variant"], table["paper_uklarge_micro_f"], strict=False))
    assert (paper["lr"], paper["lr_l2r"], paper["lr_l2r_nerc"]) == (48.2, 49.5, 49.9)
    text = (reports / "tables" / "table3_tuned.md").read_text()
    assert "the paper's published results on its UKLarge EMRs" in text
    deciles = pd.read_csv(reports / "deciles.csv")
    assert {"LR", "LR + L2R", "LR + L2R + NERC"} <= set(deciles["system"])
    html = (reports / "dashboard.html").read_text()
    assert "LR + L2R + NERC" in html


def test_outputs_say_threshold_and_convention(reported: dict) -> None:
    reports = reported["reports"]
    for md in (reports / "tables").glob("*.md"):
        text = md.read_text()
        assert "Threshold:" in text and "the paper's Macro-F" in text and "Holm" in text
    summary = json.loads((reports / "summary.json").read_text())
    assert set(summary["thresholds"]) == {"tuned", "fixed"}
    assert "tune_all_frozen_copy x2" in summary["tuned"]
    deciles = pd.read_csv(reports / "deciles.csv")
    assert sorted(deciles["decile"].unique()) == list(range(1, 11))
    assert set(deciles["threshold_kind"]) == {"tuned", "fixed"}
    pvalues = pd.read_csv(reports / "tables" / "pvalues.csv")
    for column in ("macro_f_all_labels_p", "macro_f_all_labels_p_holm", "micro_f_p_holm"):
        assert ((pvalues[column] > 0) & (pvalues[column] <= 1)).all()  # never 0
    assert (pvalues["macro_f_all_labels_p_holm"] >= pvalues["macro_f_all_labels_p"]).all()
    assert {TABLE2, TABLE3, BEST} <= set(pvalues["family"])
    assert set(pvalues["seed_set"]) == {"all seeds", "first half", "second half"}
    verdicts = pd.read_csv(reports / "tables" / "verdicts.csv")
    assert "ablation: vs reference" in set(verdicts["family"])
    assert set(verdicts["macro_f_all_labels_verdict"]) <= {
        "better",
        "worse",
        "no detectable difference",
    }
    assert summary["tuned"]["best_vs_second_best"]["chosen_on"] == "validation macro-F"


def test_bootstrap_contains_the_estimate_and_narrows_with_more_documents() -> None:
    rng = np.random.default_rng(0)
    y = rng.random((200, 30)) < 0.15
    pred = np.where(rng.random(y.shape) < 0.8, y, ~y)  # a decent, noisy classifier
    freq = rng.integers(1, 100, size=30)
    point = scores_at(y, pred)
    reps = replicate_scores(y, pred, draws(len(y), 500, 1), freq)
    low, high = interval(reps.macro_f)
    assert low <= point.macro_f <= high
    assert interval(reps.micro_f)[0] <= point.micro_f <= interval(reps.micro_f)[1]
    doubled = replicate_scores(
        np.vstack([y, y]), np.vstack([pred, pred]), draws(2 * len(y), 500, 1), freq
    )
    low2, high2 = interval(doubled.macro_f)
    assert high2 - low2 < 0.85 * (high - low)  # ~1/sqrt(2) as wide


def test_dashboard_renders_in_headless_chromium(reported: dict, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    page = reported["reports"] / "dashboard.html"
    text = page.read_text()
    # self-contained: no tag loads anything from elsewhere (plotly.js is inlined)
    assert not re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']?https?:", text)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--log-level=0",
        "--virtual-time-budget=10000",
        "--window-size=1400,5000",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))
    figures = int(attrs["figures"])
    # 2 forest plots, table 2, deciles, frequency, 3 curves, 5 ablation, 3 Optuna, protocols
    assert figures >= 17
    # the answer first: the forest plot of every comparison is the page's first figure
    assert attrs["first-figure"] == "fig-forest"
    # every table fits the 1,400-pixel window: no right-hand column cut off
    assert attrs["wide-tables"] == "", attrs["wide-tables"]
    assert int(attrs["figures-drawn"]) == figures
    drawn = set(attrs["drawn-ids"].split())
    expected = {
        "fig-forest",
        "fig-forest-deciles",
        "fig-table2",
        "fig-deciles",
        "fig-frequency",
        *(f"fig-curves-{v}" for v in ("scratch", "frozen", "tune_all_frozen_copy")),
        *(f"fig-ablation-{d}" for d in REFERENCE),
        "fig-ablation-deciles",
        "fig-data-size",
        "fig-cost",
        "fig-gain-pooling",
        *(f"optuna-abl-{k}" for k in ("importance", "parallel", "history")),
        PANEL_ID,  # the protocol-sensitivity panel (report/protocol.py)
    }
    assert expected <= drawn, expected - drawn
    assert json.loads(attrs["errors"].replace("&quot;", '"')) == []
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Failed to load" in line]
    assert "sortable" in dom.stdout
    assert f'id="{TABLE_ID}"' in dom.stdout and "Protocol sensitivity" in dom.stdout
    shot = tmp_path / "dashboard.png"
    snap = subprocess.run(
        [browser, *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert snap.returncode == 0 and shot.stat().st_size > 10_000
    shutil.copyfile(shot, reported["reports"].parent / "dashboard.png")


def test_members_stopped_by_the_cap_are_marked_in_tables_and_listed_on_the_dashboard(
    reported: dict,
) -> None:
    results, reports = Path(reported["params"].sweep.results_dir), reported["reports"]
    grid = pd.read_parquet(results / "grid" / "members.parquet")
    abl = pd.read_parquet(results / "abl" / "members.parquet")
    others = [pd.read_parquet(results / s / "members.parquet") for s in ("sizes", "pool")]
    # every study's members, each (key, seed) once: sizes' at 100% include abl's
    members = {(r.key, r.seed) for f in (grid, abl, *others) for r in f.itertuples()}
    # grid: each member really trained to its cap of 2 epochs; abl: early stopping fired
    assert (~grid["converged"]).all() and (grid["epochs_run"] == 2).all()
    assert (grid["stop_reason"] == "epoch_cap").all()
    assert abl["converged"].all() and (abl["epochs_run"] == 2).all()
    curves = [
        MemberInfo.read(results / "grid" / "members" / r.key / f"seed{r.seed}").training
        for r in grid.itertuples()
    ]
    assert any(t.validation_curve[1] > t.validation_curve[0] for t in curves)  # still improving
    table = pd.read_csv(reports / "tables" / "table2_tuned.csv")
    assert table["method"].str.endswith("\u2020").all()
    assert (table["converged"] == "0/2").all()
    assert "\u2020 marks a row" in (reports / "tables" / "table2_tuned.md").read_text()
    table3 = pd.read_csv(reports / "tables" / "table3_tuned.csv", keep_default_na=False)
    baselines = table3[table3["variant"].isin(["lr", "lr_l2r", "lr_l2r_nerc"])]
    assert not baselines["method"].str.contains("\u2020").any()
    assert (baselines["converged"] == "").all()
    ablation = pd.read_csv(reports / "ablation.csv")
    assert (ablation["members_converged"] == ablation["members_recorded"]).all()
    summary = json.loads((reports / "summary.json").read_text())
    listed = {(m["key"], m["seed"]) for m in summary["unconverged_members"]}
    assert listed == set(zip(grid["key"], grid["seed"], strict=True))
    assert summary["tuned"]["scratch"]["converged"] == "0/2"
    page = (reports / "dashboard.html").read_text()
    box = re.search(r"<div class='warning' id='convergence'>(.*?)</div>", page, re.S)
    assert box is not None and f"Not converged: 6 of {len(members)} members" in box[1]
    for row in grid.itertuples():
        assert re.search(rf"<td>{re.escape(row.key)}</td>", box[1])
    assert not any(key in box[1] for key in abl["key"])
    assert box[1].count("<td>2 / 2</td>") == 6


def test_ablation_points_are_one_factor_from_the_reference_and_match_the_members(
    reported: dict,
) -> None:
    params, reports = reported["params"], reported["reports"]
    results = Path(params.sweep.results_dir) / "abl"
    frame = pd.read_csv(reports / "ablation.csv")
    tuned = frame[frame["threshold_kind"] == "tuned"]
    assert list(tuned["dimension"].unique()) == list(REFERENCE)
    for dimension, part in tuned.groupby("dimension"):
        other = part[~part["reference"]]
        config = {**REFERENCE, dimension: OTHER[dimension]}
        assert {k: other.iloc[0][f"config_{k}"] for k in REFERENCE} == config
        if dimension == "ensemble_size":  # 1 (the mean over seeds) and 2 (the ensemble)
            assert list(part["model"]) == ["single model", "ensemble"]
        else:  # each point as its ensemble and as the single models behind it
            assert sorted(part["model"]) == ["ensemble"] * 2 + ["single model"] * 2
            assert part["reference"].sum() == 2
    corpus = Corpus.open(params.target.out_dir)
    y_val = dense(corpus.labels[corpus.split("validation")])
    y_test = dense(corpus.labels[corpus.split("test")])
    trials = pd.read_parquet(results / "trials.parquet")
    trial = trials[trials["config_adaptation_size"] == OTHER["adaptation_size"]].iloc[0]
    folders = sorted((results / "members" / trial["member_key"]).glob("seed*"))
    probs = [read_probs(folder) for folder in folders]
    ensemble = [tuple(np.mean([p[i] for p in probs], axis=0) for i in (0, 1))]
    rows = tuned[(tuned["dimension"] == "adaptation_size") & ~tuned["reference"]]
    for model, scored in (("single model", probs), ("ensemble", ensemble)):
        row = rows[rows["model"] == model].iloc[0]
        expected = np.mean(
            [scores_at(y_test, t >= tune_threshold(y_val, v)).macro_f_all_labels for v, t in scored]
        )
        assert row["macro_f_all_labels"] == pytest.approx(expected, abs=1e-9)
        assert row["macro_f_all_labels_low"] <= row["macro_f_all_labels_high"]
        assert row["seeds"] == len(folders) == 2
    deciles = pd.read_csv(reports / "ablation_deciles.csv")
    assert set(deciles["decile"]) == set(range(1, 11))
    page = (reports / "dashboard.html").read_text()
    assert "most common value of every dimension" in page
    assert "variant tune_all_frozen_copy, adaptation_size 16, word_dropout 0.2" in page
