"""Stage-1 pretraining under Ray Train: a TorchTrainer with DDP (gloo on CPU, NCCL on GPU).

Every worker memory-maps the corpus (on another machine, a copy shipped through Ray's
object store: data/ship.py) and trains on its slice of each global batch (the same
global batches as the single-process loop, so the two paths compute the same updates); rank
0 validates, decides early stopping for all ranks, and checkpoints after every epoch to
`<ray.storage_path>/pretrain-<run key>`. Running the same command again after a kill resumes
from the last checkpoint (Ray Train V2 restores a run from its name and storage path;
`recover_run_state` covers a kill that cut Ray's state file short); `FailureConfig` restarts
the worker group from that checkpoint when a worker dies.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from icdtransfer.config import ModelConfig, PretrainConfig, RayConfig
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.ship import local_copy, publish
from icdtransfer.evaluate.metrics import dense
from icdtransfer.model.cnn import EncoderShape, SourceModel
from icdtransfer.ray_env import absolute_storage, connect
from icdtransfer.train.loop import (
    LoopSettings,
    make_optimizer,
    new_loop_state,
    train_epoch,
    use_bf16,
    validate_epoch,
)
from icdtransfer.train.member import shape_from, shape_meta

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"


def worker_loop(config: dict) -> None:
    """The per-worker training function (runs inside Ray Train workers)."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    settings = LoopSettings(**config["settings"])
    corpus = Corpus.open(local_copy(config["source"]))  # this node's copy (data/ship.py)
    torch.manual_seed(settings.seed)
    model = SourceModel(shape_from(config), config["n_labels"], config["dropout"])
    state = new_loop_state()
    best = copy.deepcopy(model.state_dict())
    optimizer_state = None
    checkpoint = ray.train.get_checkpoint()
    saved = None
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    elif config.get("resume_from"):  # Ray's run state was unreadable: recover_run_state
        saved = torch.load(
            Path(config["resume_from"]) / STATE_FILE, map_location="cpu", weights_only=True
        )
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer_state, best, state = saved["optimizer"], saved["best_model"], saved["loop"]
        if rank == 0:
            print(f"resuming from checkpoint after epoch {state['epoch']}", flush=True)
    elif rank == 0:
        print("no checkpoint recorded for this run: starting at epoch 1", flush=True)
    device = ray.train.torch.get_device()
    bf16 = use_bf16(settings.precision, device)
    model = ray.train.torch.prepare_model(model)  # moves to the device, wraps in DDP
    module = model.module if hasattr(model, "module") else model
    optimizer = make_optimizer(model, settings.optimizer, settings.learning_rate)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    train, val = corpus.split("train"), corpus.split("validation")
    y_val = dense(corpus.labels[val]) if rank == 0 else None
    for epoch in range(state["epoch"], settings.epochs):
        if state["bad"] >= settings.patience:
            break
        loss, speed = train_epoch(
            model,
            corpus,
            train,
            optimizer,
            settings,
            epoch,
            device,
            bf16,
            desc=f"epoch {epoch + 1}",
            rank=rank,
            world_size=world,
        )
        if rank == 0:
            _, improved = validate_epoch(
                module,
                corpus,
                val,
                y_val,
                settings,
                device,
                bf16,
                state,
                epoch,
                loss,
                speed * world,
                extra={"workers": world},
            )
            if improved:
                best = copy.deepcopy(module.state_dict())
        if world > 1:  # every rank follows rank 0's early-stopping bookkeeping
            shared = [state]
            torch.distributed.broadcast_object_list(shared, src=0)
            state = shared[0]
        with tempfile.TemporaryDirectory() as folder:
            saved_checkpoint = None
            if rank == 0:
                torch.save(
                    {
                        "model": module.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "best_model": best,
                        "loop": state,
                    },
                    Path(folder) / STATE_FILE,
                )
                saved_checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(state["history"][-1], checkpoint=saved_checkpoint)


def recover_run_state(storage: str, name: str) -> str | None:
    """Make a run whose Ray state file was cut short resumable again.

    Ray Train resumes a run from `<storage>/<name>/checkpoint_manager_snapshot.json`, which it
    rewrites in place after every checkpoint; a kill during that write leaves half a JSON file,
    and Ray then refuses to start the run at all. In that case the file is moved aside
    (`.corrupt`, kept for inspection), Ray starts the run afresh, and the newest checkpoint
    folder whose state loads is returned so the workers resume from it. Returns None when the
    state file is readable or absent (Ray resumes, or starts, on its own), and for remote
    storage, which is left to Ray."""
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    if "://" in storage:
        return None
    run_dir = Path(storage) / name
    snapshot = run_dir / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
    try:
        json.loads(snapshot.read_text(encoding="utf-8"))
        return None
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    aside = snapshot.with_name(snapshot.name + ".corrupt")
    os.replace(snapshot, aside)
    for folder in sorted(run_dir.glob("checkpoint_*"), reverse=True):  # names sort by time
        try:
            saved = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            epoch = saved["loop"]["epoch"]
        except Exception:  # noqa: BLE001 - a half-copied folder: try the one before
            continue
        log.warning(
            "Ray Train state %s was unreadable (%s; moved to %s); resuming from %s (epoch %d)",
            snapshot,
            problem,
            aside.name,
            folder,
            epoch,
        )
        return str(folder)
    log.warning(
        "Ray Train state %s was unreadable (%s; moved to %s) and no checkpoint under %s "
        "loads; starting at epoch 1",
        snapshot,
        problem,
        aside.name,
        run_dir,
    )
    return None


def pretrain_distributed(
    model_cfg: ModelConfig, cfg: PretrainConfig, ray_cfg: RayConfig, source_dir: str
) -> dict:
    """Stage 1 on `cfg.num_workers` Ray Train workers; writes the same member directory as the
    single-process path."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from icdtransfer.train.stages import loop_settings, run_key, write_pretrained

    connect(ray_cfg)
    corpus = Corpus.open(source_dir)
    shape = EncoderShape(
        len(corpus.vocab), model_cfg.embedding_dim, model_cfg.filters, tuple(model_cfg.widths)
    )
    n_labels = len(corpus.label_table)
    settings = loop_settings(cfg, model_cfg, cfg.max_tokens, 0.0)
    name = f"pretrain-{run_key(model_cfg, settings, corpus.stats, cfg.num_workers)}"
    storage = absolute_storage(ray_cfg.storage_path)
    resume_from = recover_run_state(storage, name)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={
            "source": publish(source_dir),
            "shape": shape_meta(shape),
            "n_labels": n_labels,
            "dropout": model_cfg.dropout,
            "settings": dataclasses.asdict(settings),
            "resume_from": resume_from,
        },
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=3),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    start = time.perf_counter()
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        saved = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    model = SourceModel(shape, n_labels, model_cfg.dropout)
    settings = dataclasses.replace(settings, device="cpu" if not cfg.use_gpu else "auto")
    run = {
        "workers": cfg.num_workers,
        "ray_run": name,
        "best_epoch": saved["loop"]["best_epoch"],
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    metrics = write_pretrained(
        model_cfg, cfg, corpus, model, settings, saved["best_model"], saved["loop"]["history"], run
    )
    if "://" not in storage:  # finished: its checkpoints are no longer needed to resume
        shutil.rmtree(os.path.join(storage, name), ignore_errors=True)
    return metrics
