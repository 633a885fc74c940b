"""One sweep trial: get (train or reuse) the members of its ensemble, then evaluate it.

A trial's config holds the searched dimensions (variant, adaptation_size, word_dropout,
ensemble_size, learning_rate, epochs). What it tells Tune is one quantity on one clock:

* for early stopping (ASHA), each epoch of its **first** member (seed `seeds[0]`), as
  `val_macro_f_first_member` at `member_epoch`. A first member that is already stored
  (another trial or study trained it) replays its stored validation curve epoch by epoch, so
  it meets the same rungs as one trained here. The first member is obtained before the others,
  so a trial ASHA stops never trains them;
* for the search (Optuna, best.json), one final report: the ensemble's scores under the
  study's metric (`TrialOutcome`), with the members' convergence.

Every epoch of a member trained here is reported with a Tune checkpoint (the training loop's
snapshot and the trial's progress). A trial restarted on another node (spot preemption, a lost
node) takes back its own claim on that member at once and resumes it after its last
checkpointed epoch; a member that another trial stored meanwhile is reused instead. Epochs of
later members are reported with their checkpoints too, but without the early-stopping metric,
which ASHA and Optuna therefore never see.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icdtransfer.artifacts import Training, average_members, member_name
from icdtransfer.config import EncoderConfig, HeadConfig, MemberConfig, TrainTargetConfig
from icdtransfer.data.ship import Shipped, local_copy
from icdtransfer.rows import MemberRow, TrialOutcome
from icdtransfer.sweep.faults import fault
from icdtransfer.sweep.members import member_key, read_member_files
from icdtransfer.train.state import EpochRecord, Snapshot

HEARTBEAT_S = 5.0
POLL_S = 2.0
FIRST_MEMBER_METRIC = "val_macro_f_first_member"  # ASHA's metric ...
CLOCK = "member_epoch"  # ... and its time attribute: epochs of the first member
FIRST_MEMBER_CURVE = "val_macro_f_first_member_curve"  # its values so far, JSON (search.py)
SNAPSHOT_FILE = "snapshot.pt"
PROGRESS_FILE = "progress.json"


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
    trial_log: str | None = None  # the study's trial_starts.jsonl, relative to the root


@dataclass
class Progress:
    """What a trial's Tune checkpoint records besides the loop's snapshot: the member whose
    snapshot it holds, and how many epochs of the first member Tune has seen."""

    key: str
    seed: int | None = None
    first_reported: int = 0


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


class Reporter:
    """The trial's reports to Tune (see module docstring), and its Tune checkpoints."""

    def __init__(self, progress: Progress, first_seed: int) -> None:
        self.progress = progress
        self.first_seed = first_seed

    def metrics(
        self, seed: int, epoch: int, val_macro_f: float, curve: list[float]
    ) -> dict[str, Any]:
        """An epoch's report; the first member's carries ASHA's value, clock and the curve up
        to this epoch (a resumed scheduler may have missed a rung's report: search.py)."""
        out: dict[str, Any] = {"member_seed": seed, "seed_epoch": epoch, "final": False}
        if seed == self.first_seed:
            out.update({FIRST_MEMBER_METRIC: val_macro_f, CLOCK: epoch})
            out[FIRST_MEMBER_CURVE] = json.dumps([round(float(v), 6) for v in curve])
        return out

    def replay(self, curve: list[float]) -> None:
        """The stored first member's validation curve, from the first epoch Tune has not seen."""
        from ray import tune

        for epoch, value in enumerate(curve, start=1):
            if epoch > self.progress.first_reported:
                report = self.metrics(self.first_seed, epoch, value, curve[:epoch])
                tune.report({**report, "replayed": True})
                self.progress.first_reported = epoch

    def checkpoint(self, seed: int, snapshot: Snapshot, record: EpochRecord) -> None:
        """Report an epoch of a member trained here, with the loop's snapshot as checkpoint."""
        from ray import tune

        if seed == self.first_seed:
            self.progress.first_reported = record.epoch
        self.progress.seed = seed
        with tempfile.TemporaryDirectory(prefix="icdtransfer-ckpt-") as folder:
            snapshot.save(Path(folder) / SNAPSHOT_FILE)
            (Path(folder) / PROGRESS_FILE).write_text(json.dumps(dataclasses.asdict(self.progress)))
            fault("trial_before_report")
            curve = [r.val_macro_f for r in snapshot.loop.history]
            report = self.metrics(seed, record.epoch, record.val_macro_f, curve)
            tune.report(
                {**report, "replayed": False},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
            fault("trial_after_report")


def restored(key: str) -> tuple[Progress, Snapshot | None]:
    """The trial's progress and member snapshot from its last Tune checkpoint (a restarted
    trial), or a fresh start."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return Progress(key), None
    with checkpoint.as_directory() as folder:
        progress = Progress(**json.loads((Path(folder) / PROGRESS_FILE).read_text()))
        if progress.key != key:
            return Progress(key), None
        # `is not None`: seed 0 is a seed (a falsy test lost its snapshot, retraining it)
        has = progress.seed is not None and (Path(folder) / SNAPSHOT_FILE).exists()
        snapshot = Snapshot.load(Path(folder) / SNAPSHOT_FILE) if has else None
    return progress, snapshot


@dataclass
class TrialCheckpointer:
    """The training loop's Checkpointer in a trial: it resumes from the trial's restored
    snapshot when that was of this member, and hands every epoch to the Reporter."""

    seed: int
    reporter: Reporter
    snapshot: Snapshot | None

    def load(self) -> Snapshot | None:
        return self.snapshot

    def save(self, snapshot: Snapshot | None, record: EpochRecord) -> None:
        if snapshot is not None:
            self.reporter.checkpoint(self.seed, snapshot, record)


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
        checkpointer = TrialCheckpointer(seed, reporter, mine)
        claims.train(
            seed,
            lambda: train_member(ctx, head, train, variant, seed, checkpointer, trial_id),
        )
        return True

    while not obtain(seeds[0]):  # the first member first: ASHA judges the trial on it
        time.sleep(POLL_S)
    pending = seeds[1:]
    if ctx.every_seed:  # the configuration's other seeds too: the report needs every one
        pending += [seed for seed in ctx.seeds if seed not in seeds]
    while pending:
        pending = [seed for seed in pending if not obtain(seed)]
        if pending:
            time.sleep(POLL_S)
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
