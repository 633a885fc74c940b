"""Stage-1 pretraining under Ray Train: a TorchTrainer with DDP (gloo on CPU, NCCL on GPU).

Every worker memory-maps the corpus (on another machine, a copy shipped through Ray's
object store: data/ship.py) and runs the project's one training loop (train/loop.py) as one
rank: each rank trains on a batch of its own, `pretrain.batch_size` documents, so the global
batch is num_workers x batch_size and N workers take 1/N of the single process's steps (the
same updates as a single process with batch_size x N; the learning rate is not scaled, README
"When DDP pays" says when it does); rank 0 validates, decides early
stopping for all ranks, and checkpoints after every epoch to `<ray.storage_path>/<run name>`
through `RayTrainCheckpointer`. Running the same command again after a kill resumes from the
last checkpoint (Ray Train V2 restores a run from its name and storage path;
`recover_run_state` covers a kill that cut Ray's state file short); `FailureConfig` restarts
the worker group from that checkpoint when a worker dies.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from icdtransfer.config import RayConfig
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.ship import local_copy, publish
from icdtransfer.model.cnn import build_model
from icdtransfer.model_meta import ModelMeta
from icdtransfer.ray_env import absolute_storage, connect, train_run_state_file
from icdtransfer.train.loop import DDP, FitResult, LoopSettings, fit
from icdtransfer.train.state import EpochRecord, Snapshot

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"
WORKER_CPU = "worker_cpu_seconds"  # each epoch's report: the ranks' CPU seconds so far, summed


@dataclass
class RayTrainCheckpointer:
    """Snapshots as Ray Train checkpoints: every rank reports each epoch (Ray Train wants all
    ranks to), the master with its snapshot attached. A run restarted by Ray (a failed worker)
    or by the user (same name and storage) resumes from Ray's latest checkpoint; `resume_from`
    is the folder `recover_run_state` found when Ray's own record was unreadable. Each report
    carries the CPU seconds all ranks have spent since this worker group started (`WORKER_CPU`,
    summed over ranks): Ray keeps the metrics of the checkpoint, so the last one holds them."""

    resume_from: str | None = None
    cpu_start: float = 0.0  # process_time when the worker started

    def load(self) -> Snapshot | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                return Snapshot.load(Path(folder) / STATE_FILE)
        if self.resume_from:
            return Snapshot.load(Path(self.resume_from) / STATE_FILE)
        return None

    def save(self, snapshot: Snapshot | None, record: EpochRecord) -> None:
        import ray.train

        spent = torch.tensor([time.process_time() - self.cpu_start], dtype=torch.float64)
        if torch.distributed.is_initialized():
            if torch.distributed.get_backend() == "nccl":
                spent = spent.cuda()
            torch.distributed.all_reduce(spent)
        metrics = {**record.to_json(), WORKER_CPU: float(spent.item())}
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if snapshot is not None:
                snapshot.save(Path(folder) / STATE_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)


def worker_loop(config: dict[str, Any]) -> None:
    """The per-worker training function (runs inside Ray Train workers): one rank of fit()."""
    import ray.train
    import ray.train.torch

    # the loop logs each epoch and a resume; Ray forwards workers' stdout to the driver
    package = logging.getLogger("icdtransfer")
    if not package.handlers:
        package.addHandler(logging.StreamHandler(sys.stdout))
        package.setLevel(logging.INFO)
    cpu_start = time.process_time()
    context = ray.train.get_context()
    settings = LoopSettings(**config["settings"])
    corpus = Corpus.open(local_copy(config["source"]))  # this node's copy (data/ship.py)
    torch.manual_seed(settings.seed)
    model = build_model(ModelMeta.from_json(config["meta"]))
    ddp = DDP(
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
        wrap=ray.train.torch.prepare_model,  # moves to the device, wraps in DDP
    )
    fit(model, corpus, settings, RayTrainCheckpointer(config["resume_from"], cpu_start), ddp=ddp)


def fit_on_ray(
    meta: ModelMeta,
    source_dir: str,
    settings: LoopSettings,
    name: str,
    num_workers: int,
    use_gpu: bool,
    ray_cfg: RayConfig,
) -> tuple[FitResult, float]:
    """Train `meta`'s model on `num_workers` Ray Train workers as run `name`; returns the best
    weights and the loop state of the last checkpoint, and the workers' CPU seconds."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    connect(ray_cfg)
    storage = absolute_storage(ray_cfg.storage_path)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={
            "source": publish(source_dir),
            "meta": meta.to_json(),
            "settings": dataclasses.asdict(settings),
            "resume_from": recover_run_state(storage, name),
        },
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=3),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        saved = Snapshot.load(Path(folder) / STATE_FILE)
    if "://" not in storage:  # finished: its checkpoints are no longer needed to resume
        shutil.rmtree(os.path.join(storage, name), ignore_errors=True)
    cpu = float((result.metrics or {}).get(WORKER_CPU, 0.0))
    return FitResult(saved.best_model, saved.loop), cpu


def recover_run_state(storage: str, name: str) -> str | None:
    """Make a run whose Ray state file was cut short resumable again.

    Ray Train resumes a run from its state file under `<storage>/<name>/`, which it rewrites
    in place after every checkpoint; a kill during that write leaves half a JSON file, and Ray
    then refuses to start the run at all. In that case the file is moved aside (`.corrupt`,
    kept for inspection), Ray starts the run afresh, and the newest checkpoint folder whose
    state loads is returned so the workers resume from it. Returns None when the state file
    is readable or absent (Ray resumes, or starts, on its own), and for remote storage, which
    is left to Ray."""
    if "://" in storage:
        return None
    run_dir = Path(storage) / name
    snapshot = train_run_state_file(run_dir)
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
            epoch = Snapshot.load(folder / STATE_FILE).loop.epoch
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
