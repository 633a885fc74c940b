"""Reports: numbers recomputed from member probabilities, bootstrap behaviour, the dashboard
in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.runs import run_sweep
from icdtransfer.artifacts import read_probs
from icdtransfer.baseline.l2r import train_l2r
from icdtransfer.baseline.lr import train_baseline
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import dense, scores_at, tune_threshold
from icdtransfer.report.aggregate import BEST, TABLE2, TABLE3
from icdtransfer.report.bootstrap import draws, interval, replicate_scores
from icdtransfer.report.render import run_report

pytestmark = pytest.mark.slow

GRID = """name: grid
kind: grid
metric: val_macro_f
mode: max
max_concurrent: 2
seeds: [1, 2]
space:
  variant: [scratch, frozen, tune_all_frozen_copy]
  ensemble_size: [1, 2]
train: {epochs: 1}
"""
OPTUNA = """name: search
kind: optuna
metric: val_macro_f
mode: max
num_samples: 4
max_concurrent: 2
seeds: [1]
space:
  variant: [tune_conv, tune_all]
  word_dropout: {uniform: [0.0, 0.4]}
train: {epochs: 1}
"""


@pytest.fixture(scope="module")
def reported(ray_local, tiny, tiny_params, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("report")
    sweep = replace(tiny_params.sweep, results_dir=str(root / "results"))
    params = replace(
        tiny_params,
        sweep=sweep,
        baseline=replace(tiny_params.baseline, out_dir=str(root / "lr"), min_df=1),
        report=replace(
            tiny_params.report, study="grid", bootstrap=300, out_dir=str(root / "reports")
        ),
    )
    for name, text in (("grid", GRID), ("search", OPTUNA)):
        (root / f"{name}.yaml").write_text(text)
        run_sweep(params, str(root / f"{name}.yaml"))
    train_baseline(params.baseline, params.target.out_dir)
    target = replace(params.target, format="jsonl", input=str(tiny["root"] / "t.jsonl"))
    small = {"ranker_trees": 30, "lr_candidates": 3, "neighbours": 5}
    for method in ("lr_l2r", "lr_l2r_nerc"):
        train_l2r(replace(params.baseline, method=method, **small), target, tiny["source"])
    baselines = {m: params.baseline.member_dir(m) for m in ("lr", "lr_l2r", "lr_l2r_nerc")}
    summary = run_report(params.report, params.target.out_dir, params.sweep.results_dir, baselines)
    return {"root": root, "params": params, "summary": summary, "reports": root / "reports"}


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
        assert ((pvalues[column] >= 0) & (pvalues[column] <= 1)).all()
    assert (pvalues["macro_f_all_labels_p_holm"] >= pvalues["macro_f_all_labels_p"]).all()
    assert {TABLE2, TABLE3, BEST} <= set(pvalues["family"])
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
    assert figures >= 6  # table 2, deciles, frequency, Optuna importance/parallel/history
    assert int(attrs["figures-drawn"]) == figures
    assert json.loads(attrs["errors"].replace("&quot;", '"')) == []
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Failed to load" in line]
    assert "optuna-search-importance" in dom.stdout and "sortable" in dom.stdout
    shot = tmp_path / "dashboard.png"
    snap = subprocess.run(
        [browser, *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert snap.returncode == 0 and shot.stat().st_size > 10_000
    shutil.copyfile(shot, reported["reports"].parent / "dashboard.png")
