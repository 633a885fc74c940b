"""One sweep trial: get (train or reuse) the members of its ensemble, then evaluate it.

A trial's config holds the searched dimensions (variant, adaptation_size, word_dropout,
ensemble_size, learning_rate, epochs). Members are trained with the project's single-process
loop; while one trains, each epoch's validation macro-F is reported (ASHA can stop the trial
there), and the final report is the ensemble's metrics.
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from icdtransfer.config import ModelConfig, TrainTargetConfig
from icdtransfer.data.ship import local_copy
from icdtransfer.sweep.members import member_key, read_member_files

HEARTBEAT_S = 5.0
POLL_S = 2.0


def member_configs(ctx: dict, config: dict) -> tuple[ModelConfig, TrainTargetConfig]:
    """The base model/train_target sections with the study's fixed overrides and the trial's
    searched values applied."""
    model = ModelConfig(**ctx["model"])
    train = TrainTargetConfig(**ctx["train_target"])
    values = {**ctx["fixed"], **{k: v for k, v in config.items() if k != "ensemble_size"}}
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainTargetConfig)}
    model = dataclasses.replace(model, **{k: v for k, v in values.items() if k in model_keys})
    train = dataclasses.replace(
        train, **{k: v for k, v in values.items() if k in train_keys and k != "variant"}
    )
    return model, train


def node_name() -> str:
    import ray

    return f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"


def _heartbeat(store: Any, key: str, seed: int, trial_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        store.heartbeat.remote(key, seed, trial_id)


def train_member(
    ctx: dict, model: ModelConfig, train: TrainTargetConfig, variant: str, seed: int, report: Any
) -> tuple[dict[str, bytes], dict]:
    """Train one member in a scratch folder on this node; returns its files and index row."""
    from icdtransfer.train.stages import train_target

    with tempfile.TemporaryDirectory(prefix="icdtransfer-member-") as scratch:
        pretrained = local_copy(ctx["pretrained"]) if ctx["pretrained"] is not None else scratch
        train = dataclasses.replace(
            train, pretrained=str(pretrained), checkpoint_dir=str(Path(scratch) / "checkpoints")
        )
        start = time.perf_counter()
        metrics = train_target(
            model,
            train,
            str(local_copy(ctx["target"])),
            variant,
            seed,
            out_dir=str(Path(scratch) / "member"),
            on_epoch=report,
        )
        files = read_member_files(Path(scratch) / "member")
    row = {
        "variant": variant,
        "adaptation_size": model.adaptation_size,
        "word_dropout": model.word_dropout,
        "learning_rate": train.learning_rate,
        "epochs": train.epochs,
        "node": node_name(),
        "train_seconds": round(time.perf_counter() - start, 1),
        **flat_metrics(metrics),
    }
    return files, row


def flat_metrics(metrics: dict, prefix: str = "test_") -> dict:
    """The headline numbers of a metrics.json as flat columns."""
    out = {}
    for name, key in (("0.5", "fixed_0.5"), ("tuned", "tuned")):
        for measure in ("micro_f", "macro_f", "macro_f_all_labels", "micro_p", "micro_r"):
            out[f"{prefix}{measure}_{name}"] = metrics[key][measure]
        out[f"{prefix}decile_macro_f_{name}"] = metrics[key]["decile_macro_f"]
    out["threshold_tuned"] = metrics["tuned"]["threshold"]
    out["val_macro_f"] = metrics["validation"]["tuned"]["macro_f"]
    out["val_micro_f"] = metrics["validation"]["tuned"]["micro_f"]
    return out


def sweep_trial(config: dict, ctx: dict) -> None:
    """The Ray Tune function trainable."""
    import ray
    import torch
    from ray import tune

    from icdtransfer.data.corpus import Corpus
    from icdtransfer.train.stages import code_digest

    torch.set_num_threads(max(1, int(ctx["cpus"])))
    store = ray.get_actor(ctx["store"], namespace=ctx["namespace"])
    trial_id = tune.get_context().get_trial_id()
    ray.get(store.log_start.remote(trial_id, uuid.uuid4().hex, node_name()))
    start = time.perf_counter()
    model, train = member_configs(ctx, config)
    variant = config.get("variant", train.variant)
    size = int(config.get("ensemble_size", 1))
    target_dir = local_copy(ctx["target"])
    corpus = Corpus.open(target_dir)
    key = member_key(model, train, variant, corpus.stats, ctx["pretrained_digest"], code_digest())
    seeds = list(ctx["seeds"][:size])
    step = {"n": 0}

    def report_epoch(record: dict) -> None:
        step["n"] += 1
        tune.report(
            {
                "val_macro_f": record["val_macro_f"],
                "val_micro_f": record["val_micro_f"],
                "member_epoch": record["epoch"],
                "final": False,
            }
        )

    pending, trained = list(seeds), 0
    while pending:
        progressed = False
        for seed in list(pending):
            state = ray.get(store.claim.remote(key, seed, trial_id))
            if state == "busy":
                continue
            if state == "yours":
                stop = threading.Event()
                beat = threading.Thread(
                    target=_heartbeat, args=(store, key, seed, trial_id, stop), daemon=True
                )
                beat.start()
                try:
                    files, row = train_member(ctx, model, train, variant, seed, report_epoch)
                except BaseException:
                    ray.get(store.release.remote(key, seed, trial_id))
                    raise
                finally:
                    stop.set()
                ray.get(store.put.remote(key, seed, files, {**row, "trial_id": trial_id}))
                trained += 1
            pending.remove(seed)
            progressed = True
        if pending and not progressed:
            time.sleep(POLL_S)
    probs = [ray.get(store.probabilities.remote(key, seed)) for seed in seeds]
    val = np.mean([p[0].astype(np.float32) for p in probs], axis=0)
    test = np.mean([p[1].astype(np.float32) for p in probs], axis=0)
    metrics = corpus.evaluate(val, test)
    tune.report(
        {
            **flat_metrics(metrics),
            "variant": variant,
            "ensemble_size": size,
            "member_key": key,
            "seeds": seeds,
            "members_trained_here": trained,
            "node": node_name(),
            "data_from": "driver folder"
            if str(target_dir) == ctx["target"].path
            else "object store",
            "trial_seconds": round(time.perf_counter() - start, 1),
            "final": True,
        }
    )
