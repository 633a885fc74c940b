"""The training loop of both stages, single process or one rank of a DDP run.

One loop in the spirit of nanoGPT's train.py: a `ddp` switch (given a `DDP` worker, this is one
of several ranks under Ray Train; without, the only process) and a master rank that validates,
decides early stopping for everyone and hands the checkpoint to a `Checkpointer` (a local file,
or Ray Train's checkpoints). Epochs, early stopping on validation macro-F and the best weights
kept are written once, here.

Randomness is derived from (seed, epoch): batch order and word dropout from a numpy generator,
dropout from torch's, both re-seeded at each epoch. An interrupted run resumed from its
checkpoint therefore trains exactly as an uninterrupted one would.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from icdtransfer.artifacts import CorpusLike
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import dense
from icdtransfer.model.compact import Compaction, compact_embeddings
from icdtransfer.progress import progress
from icdtransfer.train.average import WeightAverage
from icdtransfer.train.batches import iterate
from icdtransfer.train.hardware import resolve_device
from icdtransfer.train.precision import use_bf16
from icdtransfer.train.state import (
    Checkpointer,
    EpochRecord,
    FileCheckpointer,
    LoopState,
    NoCheckpoints,
    Snapshot,
)
from icdtransfer.train.validation import predict, trivial_macro_f, validate_epoch

__all__ = ["DDP", "FitResult", "LoopSettings", "fit", "make_optimizer", "predict", "train_epoch"]

log = logging.getLogger(__name__)
CUDA_CHECKPOINT_EVERY = 5  # file checkpoints on a GPU: every 5 epochs (checkpoint_due)
# early stopping may fire only once the watched criterion beats predicting every code by this
# (train/validation.py, trivial_macro_f): the first epochs of a slow learner sit at that level
LEARNING_MARGIN = 0.02


@dataclass
class LoopSettings:
    """What the loop needs, as plain values (from the pretrain or train_target section)."""

    optimizer: str
    learning_rate: float
    batch_size: int
    epochs: int  # the cap: a safety limit, not the budget (converged runs stop earlier)
    patience: int
    seed: int
    precision: str
    device: str
    bucket: bool
    max_tokens: int
    word_dropout: float
    min_length: int  # the widest filter
    min_delta: float = 0.0  # an epoch improves on the best by more than this (early stopping)
    min_epochs: int = 1  # early stopping may fire only once this many epochs have run
    # learning rate x lr_factor after lr_patience epochs without a better validation macro-F,
    # at most lr_reductions times; early stopping fires only after the last reduction
    lr_patience: int = 0
    lr_factor: float = 0.5
    lr_reductions: int = 0
    # > 0: validate, keep and checkpoint an exponential moving average of the weights with
    # this decay per step (train/average.py); 0: the weights as they are
    weight_average: float = 0.0
    # the validation curve early stopping and the best weights follow (an EpochRecord field):
    # val_macro_f, macro-F at the threshold tuned for micro-F; val_macro_f_best, macro-F at
    # the threshold best for macro-F (steadier from epoch to epoch: docs/DESIGN.md section 4)
    criterion: str = "val_macro_f"
    smoothing: int = 1  # early stopping watches the mean of this many epochs' criterion
    # > 0: the convergence audit (train/audit.py): where the rule stops, record the best so
    # far and go on until this many epochs bring no better criterion
    audit_patience: int = 0
    checkpoint_every: int = 0  # epochs between file checkpoints; 0: 1 on CPU, 5 on CUDA


@dataclass(frozen=True)
class DDP:
    """This process is one rank of a data-parallel run (under Ray Train): its rank, the
    number of ranks, its device, and how to wrap a model for DDP (Ray's prepare_model)."""

    rank: int
    world_size: int
    device: torch.device
    wrap: Callable[[nn.Module], nn.Module]


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    state: LoopState


# AdaDelta's decay and conditioning constant as Kim's CNN code sets them (`sgd_updates_adadelta`
# in yoonkim/CNN_sentence, Theano: rho 0.95, epsilon 1e-6, no learning rate). The paper names
# no toolkit, but its CNN is Kim's [6] with Kim's training defaults (widths 3/4/5, dropout 0.5,
# minibatch 50, AdaDelta), and Zeiler's paper [36] uses the same rho and epsilon. PyTorch's
# own defaults are rho 0.9, eps 1e-6; TensorFlow 1's are rho 0.95, eps 1e-8 (a 10x smaller
# first step; it reached a fifth of the macro-F in 12 epochs here: README, "The paper's preset").
ADADELTA_RHO = 0.95
ADADELTA_EPS = 1e-6


def make_optimizer(model: nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=ADADELTA_RHO, eps=ADADELTA_EPS)
    if name == "adam":
        # fused: one vectorised pass over each parameter instead of a dozen tensor ops; the
        # same update (torch's own kernel). On CPU the unfused loop spent half of a default
        # stage-2 epoch in Adam's sqrt and div over the 27k x 64 embedding table (README,
        # "Speed for the science"); fused Adam is 10x faster there.
        return torch.optim.Adam(params, lr=lr, fused=_fusable(params))
    raise ValueError(f"unknown optimizer {name!r} (adadelta or adam)")


def _fusable(params: list[nn.Parameter]) -> bool:
    """torch's fused Adam takes floating-point parameters on CPU or CUDA, all on one device."""
    devices = {p.device.type for p in params}
    return (
        len(devices) == 1
        and devices <= {"cpu", "cuda"}
        and all(p.is_floating_point() for p in params)
    )


def multilabel_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The paper's J_CE: binary cross-entropy summed over labels, averaged over the batch.

    A mean over labels as well (`BCEWithLogitsLoss()`'s default) divides every gradient by the
    number of labels (1,231 codes, 27,150 descriptors in the paper); AdaDelta then sees
    gradients far below sqrt(eps), where its step shrinks to a tiny SGD step, and stalls.
    Adam is nearly indifferent to the scale."""
    return nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / max(
        logits.shape[0], 1
    )


def fit(
    model: nn.Module,
    corpus: Corpus,
    settings: LoopSettings,
    checkpointer: Checkpointer | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    train_docs: np.ndarray | None = None,
    ddp: DDP | None = None,
) -> FitResult:
    """`_fit`, with a trainable embedding's optimizer and weight average kept to the rows the
    training documents use (model/compact.py: the same weights, bit for bit), in one process."""
    train = corpus.split("train") if train_docs is None else train_docs
    compaction = Compaction()
    if ddp is None or ddp.world_size == 1:
        compaction = compact_embeddings(model, used_rows(corpus, train, settings.max_tokens))
    if compaction.rows_used is not None:
        log.info("embedding: %d of %d rows occur in the training documents; only they train",
                 *compaction.rows_used)  # fmt: skip
    try:
        return _fit(model, corpus, settings, checkpointer, on_epoch, train, ddp, compaction)
    finally:
        compaction.restore()


def used_rows(corpus: CorpusLike, docs: np.ndarray, max_tokens: int) -> torch.Tensor:
    """The sorted ids of every token of `docs` cut at `max_tokens`, and the padding row 0."""
    seqs = [corpus.document(int(i))[:max_tokens] for i in docs]
    return torch.from_numpy(np.unique(np.concatenate([np.zeros(1, np.int64), *seqs])))


def _fit(
    model: nn.Module,
    corpus: Corpus,
    settings: LoopSettings,
    checkpointer: Checkpointer | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    train: np.ndarray,
    ddp: DDP | None,
    compaction: Compaction,
) -> FitResult:
    """Train on the corpus' training split (or `train_docs`), early-stopping on validation
    macro-F (at the global threshold tuned on validation that epoch) with `patience`;
    returns the best weights and the loop's state (history, how training ended).

    The checkpointer gets a snapshot after every epoch; a run that finds one resumes after
    its last finished epoch. With `ddp`, each rank trains on its slice of every global batch
    and the master rank (0) validates and checkpoints; `on_epoch` runs on the master only.
    """
    rank, world = (ddp.rank, ddp.world_size) if ddp else (0, 1)
    master = rank == 0
    device = ddp.device if ddp else resolve_device(settings.device)
    bf16 = use_bf16(settings.precision, device, model)
    checkpointer = checkpointer or NoCheckpoints()
    saved = checkpointer.load()
    state, best = LoopState(), copy.deepcopy(model.state_dict())
    if saved is not None:
        model.load_state_dict(saved.model)
        state, best = saved.loop, saved.best_model
        if master:
            log.info("resuming from checkpoint after epoch %d", state.epoch)
    raw_model = model.to(device)
    average = WeightAverage(raw_model, settings.weight_average) if settings.weight_average else None
    if average is not None and saved is not None and saved.average is not None:
        average.load_state_dict(saved.average)
    validated = average.model if average is not None else raw_model
    model = ddp.wrap(raw_model) if ddp else raw_model
    optimizer = make_optimizer(model, settings.optimizer, settings.learning_rate)
    if saved is not None:
        optimizer.load_state_dict(saved.optimizer)
        compaction.adopt(optimizer)
    val = corpus.split("validation")
    y_val = dense(corpus.labels[val]) if master else None
    trivial = trivial_macro_f(y_val, settings.criterion) if master else None
    if trivial is not None:  # not started learning until 0.02 above predicting every code
        state.floor = trivial + LEARNING_MARGIN
    for epoch in range(state.epoch, settings.epochs):
        if state.stopped(settings.patience, settings.min_epochs, settings.lr_reductions):
            if not settings.audit_patience:
                break
            if state.audit_stop == 0:  # the rule fires here: the audit continues from it
                state.audit_stop, state.audit_best = state.epoch, state.best_f
                log.info("audit: the rule stops at epoch %d; continuing", state.epoch)
            if state.epoch - max(state.best_epoch, state.audit_stop) >= settings.audit_patience:
                break
        for group in optimizer.param_groups:  # a function of the saved state: resumes exactly
            group["lr"] = settings.learning_rate * settings.lr_factor**state.lr_reductions
        loss, speed = train_epoch(
            model, corpus, train, optimizer, settings, epoch, device, bf16, rank, world, average
        )
        if master:
            scores, threshold, val_loss, companions = validate_epoch(
                validated, corpus, val, y_val, settings, device, bf16
            )
            record = EpochRecord(
                epoch=epoch + 1,
                train_loss=loss,
                train_docs_per_s=speed * world,
                val_macro_f=scores.macro_f,
                val_micro_f=scores.micro_f,
                val_threshold=threshold,
                workers=world if ddp else None,
                val_loss=val_loss,
                **companions,
            )
            if state.record(record, settings.min_delta, settings.criterion, settings.smoothing):
                best = copy.deepcopy(validated.state_dict())
            log.info(
                "epoch %d: train loss %.4f, validation loss %.4f, validation macro-F (all"
                " labels) %.4f and micro-F %.4f at the threshold tuned on validation (%.2f),"
                " %.0f docs/s",
                record.epoch,
                loss,
                val_loss,
                record.val_macro_f,
                record.val_micro_f,
                threshold,
                record.train_docs_per_s,
            )
            if state.reduce_lr(settings.lr_patience, settings.lr_reductions):
                log.info(
                    "no better %s (mean of %d epochs) for %d epochs: learning rate x%g"
                    " (reduction %d of %d)",
                    settings.criterion,
                    settings.smoothing,
                    settings.lr_patience,
                    settings.lr_factor,
                    state.lr_reductions,
                    settings.lr_reductions,
                )
        if ddp and world > 1:  # every rank follows the master's early-stopping bookkeeping
            shared = [state]
            torch.distributed.broadcast_object_list(shared, src=0)
            state = shared[0]
        last = epoch + 1 >= settings.epochs or state.stopped(
            settings.patience, settings.min_epochs, settings.lr_reductions
        )
        snapshot = (
            Snapshot(
                raw_model.state_dict(),
                optimizer.state_dict(),
                best,
                state,
                average.state_dict() if average is not None else None,
            )
            if master and checkpoint_due(settings, device, checkpointer, epoch + 1, last)
            else None
        )
        checkpointer.save(snapshot, state.history[-1])
        if on_epoch is not None and master:
            on_epoch(state.history[-1])
    return FitResult(best, state)


def checkpoint_due(
    settings: LoopSettings,
    device: torch.device,
    checkpointer: Checkpointer,
    epoch: int,
    last: bool,
) -> bool:
    """Whether the snapshot after `epoch` (1-based) is written: every `checkpoint_every` epochs
    (0: every epoch on the CPU, every CUDA_CHECKPOINT_EVERY on a GPU, where writing one waits
    for the device and copies every weight and optimizer state to the host), and after the
    last epoch. A resumed run retrains the epochs after its last snapshot and, its randomness
    being fixed by (seed, epoch), ends where an uninterrupted run does
    (tests/train/test_cadence.py). Only a local file skips epochs: Ray's checkpointers report
    each epoch's metrics with its snapshot, so they get every one."""
    if not isinstance(checkpointer, FileCheckpointer) or last:
        return True
    every = settings.checkpoint_every or (CUDA_CHECKPOINT_EVERY if device.type == "cuda" else 1)
    return epoch % every == 0


def train_epoch(
    model: nn.Module,
    corpus: CorpusLike,
    docs: np.ndarray,
    optimizer: torch.optim.Optimizer,
    settings: LoopSettings,
    epoch: int,
    device: torch.device,
    bf16: bool,
    rank: int = 0,
    world_size: int = 1,
    average: WeightAverage | None = None,
) -> tuple[float, float]:
    """One pass over `docs`; returns (mean loss, documents per second). With world_size > 1
    every rank trains on a batch of its own, `batch_size` documents: the global batch is
    world_size x batch_size, so N ranks take 1/N of the steps (DDP averages the gradients; the
    learning rate is the one given, not scaled: README, "Stage 1 on many workers"). The weight
    average, if any, follows every step.

    No host sync in the step: the loss is summed on the device and read once, at the end of
    the epoch (a per-step `float(loss)` makes the CPU wait for the GPU before it may queue the
    next batch)."""
    rng = np.random.default_rng([settings.seed, epoch])
    torch.manual_seed(settings.seed * 100_003 + epoch * 101 + rank)
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count, start = 0, time.perf_counter()
    global_batch = settings.batch_size * world_size
    batches = iterate(
        corpus,
        docs,
        global_batch,
        settings.max_tokens,
        settings.word_dropout,
        settings.min_length,
        rng,
        settings.bucket,
        device=device,
        rank=rank,
        world_size=world_size,
    )
    n_batches = -(-len(docs) // global_batch)
    desc = f"epoch {epoch + 1}/{settings.epochs}"
    for batch in progress(batches, desc, "batch", total=n_batches, leave=False):
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch.tokens, batch.lengths)
        loss = multilabel_bce(logits.float(), batch.labels)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update()
        total += loss.detach() * len(batch.index)
        count += len(batch.index)
    mean = float(total) / max(count, 1)  # the epoch's one sync
    return mean, count / (time.perf_counter() - start)
