"""One sweep trial: get (train or reuse) the members of its ensemble, then evaluate it.

A trial's config holds the searched dimensions (variant, adaptation_size, word_dropout,
ensemble_size, learning_rate, epochs). Members are trained with the project's training loop;
while one trains, each epoch's validation macro-F is reported (ASHA can stop the trial
there), and the final report is the ensemble's metrics (`TrialOutcome`).
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icdtransfer.artifacts import (
    MemberInfo,
    MemberRow,
    TrialOutcome,
    average_members,
    member_name,
)
from icdtransfer.config import EncoderConfig, HeadConfig, MemberConfig, TrainTargetConfig
from icdtransfer.data.ship import Shipped, local_copy
from icdtransfer.sweep.members import member_key, read_member_files
from icdtransfer.train.state import EpochRecord

HEARTBEAT_S = 5.0
POLL_S = 2.0


@dataclass
class TrialContext:
    """What every trial of a study shares (built once by the runner, sent to each trial)."""

    store: str  # the member store actor's name
    namespace: str
    target: Shipped  # the stage-2 corpus
    pretrained: Shipped | None  # the stage-1 member (None: none was trained)
    pretrained_digest: str
    encoder: EncoderConfig
    head: HeadConfig
    train: TrainTargetConfig
    fixed: dict[str, Any]  # the study's `train:` overrides
    seeds: list[int]
    cpus: float


def member_configs(ctx: TrialContext, config: dict) -> tuple[HeadConfig, TrainTargetConfig]:
    """The head and train_target sections with the study's fixed overrides and the trial's
    searched values applied (each key goes to the section that has it)."""
    values = {**ctx.fixed, **{k: v for k, v in config.items() if k != "ensemble_size"}}
    head_keys = {f.name for f in dataclasses.fields(HeadConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainTargetConfig)}
    head = dataclasses.replace(ctx.head, **{k: v for k, v in values.items() if k in head_keys})
    train = dataclasses.replace(ctx.train, **{k: v for k, v in values.items() if k in train_keys})
    return head, train


def node_name() -> str:
    import ray

    return f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"


def _heartbeat(store: Any, key: str, seed: int, trial_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        store.heartbeat.remote(key, seed, trial_id)


def train_member(
    ctx: TrialContext,
    head: HeadConfig,
    train: TrainTargetConfig,
    variant: str,
    seed: int,
    report: Any,
) -> tuple[dict[str, bytes], MemberRow]:
    """Train one member in a scratch folder on this node; returns its files and index row."""
    from icdtransfer.train.stages import train_target

    with tempfile.TemporaryDirectory(prefix="icdtransfer-member-") as scratch:
        pretrained = local_copy(ctx.pretrained) if ctx.pretrained is not None else scratch
        train = dataclasses.replace(train, pretrained=str(pretrained))
        member = MemberConfig(variant, seed, scratch, str(Path(scratch) / "checkpoints"))
        folder = Path(scratch) / member_name(variant, seed)
        start = time.perf_counter()
        metrics = train_target(
            ctx.encoder, head, train, str(local_copy(ctx.target)), member, on_epoch=report
        )
        info = MemberInfo.read(folder)
        files = read_member_files(folder)
    assert info.training is not None
    row = MemberRow(
        variant=variant,
        adaptation_size=head.adaptation_size,
        word_dropout=head.word_dropout,
        learning_rate=train.learning_rate,
        epochs=train.epochs,
        node=node_name(),
        train_seconds=round(time.perf_counter() - start, 1),
        training=info.training,
        metrics=metrics,
    )
    return files, row


def sweep_trial(config: dict, ctx: TrialContext) -> None:
    """The Ray Tune function trainable."""
    import ray
    import torch
    from ray import tune

    from icdtransfer.data.corpus import Corpus
    from icdtransfer.train.stages import code_digest

    torch.set_num_threads(max(1, int(ctx.cpus)))
    store = ray.get_actor(ctx.store, namespace=ctx.namespace)
    trial_id = tune.get_context().get_trial_id()
    ray.get(store.log_start.remote(trial_id, uuid.uuid4().hex, node_name()))
    start = time.perf_counter()
    head, train = member_configs(ctx, config)
    variant = config["variant"]
    size = int(config.get("ensemble_size", 1))
    target_dir = local_copy(ctx.target)
    corpus = Corpus.open(target_dir)
    key = member_key(
        ctx.encoder, head, train, variant, corpus.stats, ctx.pretrained_digest, code_digest()
    )
    seeds = list(ctx.seeds[:size])

    def report_epoch(record: EpochRecord) -> None:
        tune.report(
            {
                "val_macro_f": record.val_macro_f,
                "val_micro_f": record.val_micro_f,
                "member_epoch": record.epoch,
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
                    files, row = train_member(ctx, head, train, variant, seed, report_epoch)
                except BaseException:
                    ray.get(store.release.remote(key, seed, trial_id))
                    raise
                finally:
                    stop.set()
                ray.get(store.put.remote(key, seed, files, {**row.row(), "trial_id": trial_id}))
                trained += 1
            pending.remove(seed)
            progressed = True
        if pending and not progressed:
            time.sleep(POLL_S)
    validation, test = average_members(
        [ray.get(store.probabilities.remote(key, seed)) for seed in seeds]
    )
    outcome = TrialOutcome(
        variant=variant,
        ensemble_size=size,
        member_key=key,
        seeds=seeds,
        members_trained_here=trained,
        node=node_name(),
        data_from="driver folder" if str(target_dir) == ctx.target.path else "object store",
        trial_seconds=round(time.perf_counter() - start, 1),
        metrics=corpus.evaluate(validation, test),
    )
    tune.report(outcome.report())
