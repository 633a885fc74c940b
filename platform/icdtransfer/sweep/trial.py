"""One sweep trial: get (train or reuse) the members of its ensemble, then evaluate it.

A trial's config holds the searched dimensions (variant, adaptation_size, word_dropout,
ensemble_size, learning_rate, epochs). What it tells Tune is one quantity on one clock:

* for early stopping (ASHA), each epoch of its **first** member (seed `seeds[0]`), as
  `val_macro_f_first_member` at `member_epoch`. A first member that is already stored
  (another trial or study trained it) replays its stored validation curve epoch by epoch, so
  it meets the same rungs as one trained here. Under ASHA the first member is obtained before
  the others, so a trial ASHA stops never trains them; without a scheduler a trial trains
  whichever of its members no other trial is training (two trials of one configuration share
  its seeds from the start instead of one waiting for the other's first member);
* for the search (Optuna, best.json), one final report: the ensemble's scores under the
  study's metric (`TrialOutcome`), with the members' convergence.

Every epoch of a member trained here is reported, with a Tune checkpoint (the training loop's
snapshot and the trial's progress) every CHECKPOINT_S seconds of its training
(sweep/reporting.py). A trial restarted on another node (spot preemption, a lost node) takes
back its own claim on that member at once and resumes it after its last checkpointed epoch;
a member that another trial stored meanwhile is reused instead. Epochs of later members are
reported and checkpointed the same way, but without the early-stopping metric, which ASHA and
Optuna therefore never see.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icdtransfer.artifacts import Training, average_members, member_name
from icdtransfer.config import EncoderConfig, HeadConfig, MemberConfig, TrainTargetConfig
from icdtransfer.data.ship import Shipped, local_copy
from icdtransfer.rows import MemberRow, TrialOutcome
from icdtransfer.sweep.faults import fault
from icdtransfer.sweep.members import member_key, read_member_files
from icdtransfer.sweep.reporting import CHECKPOINT_S, Reporter, TrialCheckpointer, restored

HEARTBEAT_S = 5.0
POLL_S = 2.0


@dataclass
class TrialContext:
    """What every trial of a study shares (built once by the runner, sent to each trial)."""

    study: str
    store: str  # the member store actor's name
    namespace: str
    target: Shipped  # the stage-2 corpus
    pretrained: Shipped | None  # the stage-1 member (None: none was trained)
    pretrained_digest: str
    encoder: EncoderConfig
    head: HeadConfig
    train: TrainTargetConfig
    fixed: dict[str, Any]  # the study's `train:` overrides (convergence policy included)
    seeds: list[int]
    cpus: float
    every_seed: bool = False  # also train the study's other seeds (Study.every_seed)
    # ASHA judges a trial on its first member, so that member comes before the others; with
    # no early-stopping scheduler a trial trains whichever of its members is free (sweep_trial)
    first_member_first: bool = True
    trial_log: str | None = None  # the study's trial_starts.jsonl, relative to the root
    checkpoint_s: float = CHECKPOINT_S  # a member's training between Tune checkpoints


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


def gpu_ids() -> str:
    """The GPUs Ray gave this trial, e.g. "0" ("" on CPU): one per trial with gpu: 1."""
    import ray

    return ",".join(str(g) for g in ray.get_gpu_ids())


def train_member(
    ctx: TrialContext,
    head: HeadConfig,
    train: TrainTargetConfig,
    variant: str,
    seed: int,
    checkpointer: TrialCheckpointer,
    trial_id: str,
) -> tuple[dict[str, bytes], MemberRow]:
    """Train one member in a scratch folder on this node; returns its files and index row."""
    from icdtransfer.artifacts import MemberInfo
    from icdtransfer.train.stages import train_target

    with tempfile.TemporaryDirectory(prefix="icdtransfer-member-") as scratch:
        pretrained = local_copy(ctx.pretrained) if ctx.pretrained is not None else scratch
        train = dataclasses.replace(train, pretrained=str(pretrained))
        member = MemberConfig(variant, seed, scratch, str(Path(scratch) / "checkpoints"))
        folder = Path(scratch) / member_name(variant, seed)
        start = time.perf_counter()
        metrics = train_target(
            ctx.encoder, head, train, str(local_copy(ctx.target)), member, checkpointer=checkpointer
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
        study=ctx.study,
        trial_id=trial_id,
        training=info.training,
        metrics=metrics,
        gpus=gpu_ids(),
    )
    return files, row


class Claims:
    """This trial's dealings with the member store for one member key."""

    def __init__(self, store: Any, key: str, trial_id: str) -> None:
        self.store, self.key, self.trial_id = store, key, trial_id

    def claim(self, seed: int) -> str:
        import ray

        return ray.get(self.store.claim.remote(self.key, seed, self.trial_id))

    def train(self, seed: int, work: Any) -> None:
        """Run `work()` -> (files, row) under the claim, heartbeating; store the result."""
        import ray

        stop = threading.Event()

        def beat() -> None:
            # under the fault-injection test, a tick every 0.1 s: `training` kills the sweep
            # mid-epoch, the n-th tick after this member's training began
            tick = 0.1 if os.environ.get("ICDTRANSFER_FAULT") else HEARTBEAT_S
            since = 0.0
            while not stop.wait(tick):
                fault("training")
                since += tick
                if since >= HEARTBEAT_S or tick == HEARTBEAT_S:
                    self.store.heartbeat.remote(self.key, seed, self.trial_id)
                    since = 0.0

        threading.Thread(target=beat, daemon=True).start()
        try:
            files, row = work()
        except BaseException:  # also SystemExit: Tune stopping the trial (ASHA)
            ray.get(self.store.release.remote(self.key, seed, self.trial_id))
            raise
        finally:
            stop.set()
        ray.get(self.store.put.remote(self.key, seed, files, row.row()))


def obtain_all(
    pending: list[int],
    obtain: Callable[[int], bool],
    first_member_first: bool,
    wait: Callable[[], None] = lambda: time.sleep(POLL_S),
) -> None:
    """Obtain the member of every seed in `pending` (its first: the trial's first member);
    `obtain(seed)` is False while another trial trains that seed, which is tried again after
    `wait()`. With `first_member_first` (ASHA judges the trial on it) nothing else is tried
    before the first member is obtained; without, a member another trial is training does not
    hold this trial up: it trains the next free one meanwhile, so two trials of one
    configuration share its seeds from the start instead of one idling for the other's
    first member."""
    if first_member_first:
        while not obtain(pending[0]):
            wait()
        pending = pending[1:]
    while pending:
        pending = [seed for seed in pending if not obtain(seed)]
        if pending:
            wait()


def sweep_trial(config: dict, ctx: TrialContext) -> None:
    """The Ray Tune function trainable."""
    import ray
    import torch
    from ray import tune

    from icdtransfer.data.corpus import Corpus
    from icdtransfer.train.stages import code_digest

    torch.set_num_threads(max(1, int(ctx.cpus)))
    # Ray logs every per-epoch Tune checkpoint at INFO ("Checkpoint successfully created"):
    # one line per member epoch on the driver's console, saying nothing the epoch log does not
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)
    store = ray.get_actor(ctx.store, namespace=ctx.namespace)
    trial_id = tune.get_context().get_trial_id()
    start = time.perf_counter()
    head, train = member_configs(ctx, config)
    variant = config["variant"]
    size = int(config.get("ensemble_size", 1))
    target_dir = local_copy(ctx.target)
    key = member_key(
        ctx.encoder, head, train, variant, ctx.target.digest, ctx.pretrained_digest, code_digest()
    )
    seeds = list(ctx.seeds[:size])
    progress, snapshot = restored(key)
    resumed = {"seed": progress.seed, "epoch": snapshot.loop.epoch} if snapshot else None
    ray.get(store.log_start.remote(trial_id, uuid.uuid4().hex, node_name(), resumed, ctx.trial_log))
    reporter = Reporter(progress, seeds[0])
    claims = Claims(store, key, trial_id)

    def obtain(seed: int) -> bool:
        """Reuse or train member `seed`; False while another trial trains it."""
        state = claims.claim(seed)
        if state == "busy":
            return False
        if state == "done":
            if seed == seeds[0]:
                reporter.replay(ray.get(store.info.remote(key, seed)).training.validation_curve)
            return True
        mine = snapshot if progress.seed == seed else None
        checkpointer = TrialCheckpointer(seed, reporter, mine, every_s=ctx.checkpoint_s)
        claims.train(
            seed,
            lambda: train_member(ctx, head, train, variant, seed, checkpointer, trial_id),
        )
        return True

    pending = list(seeds)
    if ctx.every_seed:  # the configuration's other seeds too: the report needs every one
        pending += [seed for seed in ctx.seeds if seed not in seeds]
    obtain_all(pending, obtain, ctx.first_member_first)
    validation, test = average_members(
        [ray.get(store.probabilities.remote(key, seed)) for seed in seeds]
    )
    trainings: list[Training] = [ray.get(store.info.remote(key, seed)).training for seed in seeds]
    # trained by this trial, as the store records it: a trial restarted after it stored its
    # member (its driver was lost before Tune saw it finish) still counts the member as its own
    rows = ray.get(store.rows.remote([(key, seed) for seed in seeds]))
    trained = sum(1 for r in rows if (r.get("study"), r.get("trial_id")) == (ctx.study, trial_id))
    outcome = TrialOutcome(
        variant=variant,
        ensemble_size=size,
        member_key=key,
        seeds=seeds,
        members_trained_here=trained,
        node=node_name(),
        data_from="driver folder" if str(target_dir) == ctx.target.path else "object store",
        trial_seconds=round(time.perf_counter() - start, 1),
        metrics=Corpus.open(target_dir).evaluate(validation, test),
        **TrialOutcome.convergence(trainings),
    )
    fault("trial_before_final_report")
    tune.report(outcome.report())
