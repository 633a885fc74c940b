"""Sweep overhead: the same trials through Ray Tune + Optuna and through a plain loop.

    .venv/bin/python bench/sweep_overhead.py [--trials 4] [--epochs 6]

Each trial trains one stage-2 member (scratch variant, word_dropout chosen per trial) on a
small synthetic corpus and evaluates it; `--epochs` sizes a trial to over 10 s on this
machine. Each trial has the machine to itself (2 torch threads; in Tune, 2 reserved CPUs at
concurrency 1).
Baseline: a plain Python loop calling that trial function with the word-dropout values Optuna
proposed, one after the other. Project: Ray Tune with OptunaSearch at concurrency 1 (Ray
already started, so its start-up is not counted). Both walls are printed; the last line is
`ratio: <tune / plain>` (goal: at most 1.25).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from _data import small_study_params
from icdtransfer.ray_env import connect
from icdtransfer.train.stages import train_target


def trial_work(params, word_dropout: float, out: str) -> float:
    """One trial: train and evaluate a member; returns its validation macro-F. Both paths
    give it the whole machine (2 torch threads; the Tune trial reserves 2 CPUs)."""
    torch.set_num_threads(2)
    head = replace(params.head, word_dropout=word_dropout, max_tokens=800)
    member = replace(params.member, variant="scratch", seed=1)
    metrics = train_target(
        params.encoder, head, params.train_target, params.target.out_dir, member, out_dir=out
    )
    return metrics.validation["tuned"].macro_f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = small_study_params(root)
        params = replace(
            params,
            train_target=replace(params.train_target, epochs=args.epochs, patience=args.epochs),
            member=replace(params.member, checkpoint_dir=str(root / "ck")),
        )
        connect(params.ray)

        def trainable(config: dict) -> None:
            begin = time.perf_counter()
            value = trial_work(params, config["word_dropout"], str(root / "tune" / str(config)))
            tune.report(
                {
                    "val_macro_f": value,
                    "work_s": time.perf_counter() - begin,
                    "threads": torch.get_num_threads(),
                }
            )

        searcher = OptunaSearch(metric="val_macro_f", mode="max", seed=0)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 2}),
            param_space={"word_dropout": tune.uniform(0.0, 0.5)},
            tune_config=tune.TuneConfig(
                num_samples=args.trials,
                search_alg=searcher,
                max_concurrent_trials=1,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=str(root / "ray"), verbose=0),
        )
        start = time.perf_counter()
        results = tuner.fit()
        tune_wall = time.perf_counter() - start
        values = [r.config["word_dropout"] for r in results]
        start = time.perf_counter()
        for i, value in enumerate(values):
            trial_work(params, value, str(root / "plain" / str(i)))
        plain_wall = time.perf_counter() - start
        inside = sum(r.metrics["work_s"] for r in results)
        threads = {r.metrics["threads"] for r in results}
    per_trial = plain_wall / len(values)
    print(f"{len(values)} trials, {per_trial:.1f} s each in the plain loop")
    print(f"plain loop: {plain_wall:.1f} s")
    print(
        f"Ray Tune + Optuna (concurrency 1): {tune_wall:.1f} s, of which {inside:.1f} s "
        f"inside the trial function (torch threads {sorted(threads)})"
    )
    print(f"ratio: {tune_wall / plain_wall:.2f}")


if __name__ == "__main__":
    main()
