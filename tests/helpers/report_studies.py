"""The studies behind the report tests (tests/report/), and the run that reports them:
a grid, a designed ablation, the shipped data-size and pooling studies, on the tiny corpus."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from helpers.runs import run_sweep
from icdtransfer.baseline.l2r import train_l2r
from icdtransfer.baseline.lr import train_baseline
from icdtransfer.report.render import run_report

REPO = Path(__file__).resolve().parents[2]

GRID = """name: grid
kind: grid
metric: val_macro_f
mode: max
max_concurrent: 2
seeds: [1, 2]
space:
  variant: [scratch, frozen, tune_all_frozen_copy]
  ensemble_size: [1, 2]
train: {epochs: 2, patience: 5}  # every member stops at the cap of 2: not converged
"""
# A designed one-factor-at-a-time ablation around (tune_all_frozen_copy, 16, 0.2, 2), run by
# Optuna as the default studies/ablation.yaml is. min_delta 0.9: no epoch can beat the first
# by that much, so early stopping fires at epoch 2 for every member (converged, deterministic).
ABLATION = """name: abl
kind: optuna
metric: val_macro_f
mode: max
num_samples: 5
max_concurrent: 2
seeds: [1, 2]
space:
  variant: [scratch, tune_all_frozen_copy]
  adaptation_size: [8, 16]
  word_dropout: [0.0, 0.2]
  ensemble_size: [1, 2]
points:  # ensembles of 2, so every configuration has both seeds (as studies/ablation.yaml)
  - {variant: tune_all_frozen_copy, adaptation_size: 16, word_dropout: 0.2, ensemble_size: 2}
  - {variant: tune_all_frozen_copy, adaptation_size: 16, word_dropout: 0.2, ensemble_size: 1}
  - {variant: tune_all_frozen_copy, adaptation_size: 8, word_dropout: 0.2, ensemble_size: 2}
  - {variant: tune_all_frozen_copy, adaptation_size: 16, word_dropout: 0.0, ensemble_size: 2}
  - {variant: scratch, adaptation_size: 16, word_dropout: 0.2, ensemble_size: 2}
convergence: {patience: 1, max_epochs: 3, min_delta: 0.9}
"""
# Training size (report.data_size): the shipped studies/data_size.yaml (scratch and tune_all
# at 10/25/50/100% of the training patients) on two seeds, stopping as the ablation's (epoch 2,
# converged).
SHIPPED = yaml.safe_load((REPO / "studies" / "data_size.yaml").read_text())
SIZES = yaml.safe_dump(
    {
        **SHIPPED,
        "name": "sizes",
        "seeds": [1, 2],
        "convergence": {"patience": 1, "max_epochs": 3, "min_delta": 0.9},
    },
    sort_keys=False,
)
# Pooling (report.pooling): the shipped studies/pooling.yaml (max and label attention, each
# without and with transfer) on two seeds, stopping as above.
POOLING = yaml.safe_dump(
    {
        **yaml.safe_load((REPO / "studies" / "pooling.yaml").read_text()),
        "name": "pool",
        "seeds": [1, 2],
        "convergence": {"patience": 1, "max_epochs": 3, "min_delta": 0.9},
    },
    sort_keys=False,
)
REFERENCE = {
    "variant": "tune_all_frozen_copy",
    "adaptation_size": 16,
    "word_dropout": 0.2,
    "ensemble_size": 2,
}
OTHER = {"variant": "scratch", "adaptation_size": 8, "word_dropout": 0.0, "ensemble_size": 1}


def build_reported(tiny: dict, tiny_params, root: Path) -> dict:
    """Run the four studies and the baselines under `root`, then the report."""
    sweep = replace(tiny_params.sweep, results_dir=str(root / "results"))
    params = replace(
        tiny_params,
        sweep=sweep,
        baseline=replace(tiny_params.baseline, out_dir=str(root / "lr"), min_df=1),
        report=replace(
            tiny_params.report,
            study="grid",
            ablation="abl",
            data_size="sizes",
            pooling="pool",
            bootstrap=300,
            out_dir=str(root / "reports"),
        ),
    )
    for name, text in (
        ("grid", GRID),
        ("abl", ABLATION),
        ("sizes", SIZES),
        ("pool", POOLING),
    ):
        (root / f"{name}.yaml").write_text(text)
        run_sweep(params, str(root / f"{name}.yaml"))
    train_baseline(params.baseline, params.target.out_dir)
    target = replace(params.target, format="jsonl", input=str(tiny["root"] / "t.jsonl"))
    small = {"ranker_trees": 30, "lr_candidates": 3, "neighbours": 5}
    for method in ("lr_l2r", "lr_l2r_nerc"):
        train_l2r(replace(params.baseline, method=method, **small), target, tiny["source"])
    baselines = {m: params.baseline.member_dir(m) for m in ("lr", "lr_l2r", "lr_l2r_nerc")}
    summary = run_report(
        params.report,
        params.target.out_dir,
        params.sweep.results_dir,
        baselines,
        params.train_target.pretrained,
    )
    return {"root": root, "params": params, "summary": summary, "reports": root / "reports"}
