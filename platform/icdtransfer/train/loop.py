"""One training loop for both stages: epochs, early stopping on validation macro-F, the best
weights kept, a checkpoint after every epoch so a killed run resumes where it was.

Randomness is derived from (seed, epoch): batch order and word dropout from a numpy generator,
dropout from torch's, both re-seeded at each epoch. An interrupted run resumed from its
checkpoint therefore trains exactly as an uninterrupted one would.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import dense, scores_at, tune_threshold
from icdtransfer.progress import progress
from icdtransfer.train.batches import iterate

log = logging.getLogger(__name__)


@dataclass
class LoopSettings:
    """What the loop needs, as plain values (from the pretrain or train_target section)."""

    optimizer: str
    learning_rate: float
    batch_size: int
    epochs: int
    patience: int
    seed: int
    precision: str
    device: str
    bucket: bool
    max_tokens: int
    word_dropout: float
    min_length: int  # the widest filter


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for, but no CUDA device is available")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off on GPUs that have it and on CPUs with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16":
        return True
    return precision == "auto" and bf16_supported(device)


def make_optimizer(model: nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r} (adadelta or adam)")


def train_epoch(
    model: nn.Module,
    corpus: Corpus,
    docs: np.ndarray,
    optimizer: torch.optim.Optimizer,
    settings: LoopSettings,
    epoch: int,
    device: torch.device,
    bf16: bool,
    desc: str = "train",
    rank: int = 0,
    world_size: int = 1,
) -> tuple[float, float]:
    """One pass over `docs`; returns (mean loss, documents per second). With world_size > 1
    this rank trains on its slice of every global batch (DDP averages the gradients)."""
    rng = np.random.default_rng([settings.seed, epoch])
    torch.manual_seed(settings.seed * 100_003 + epoch * 101 + rank)
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    total, count, start = 0.0, 0, time.perf_counter()
    batches = iterate(
        corpus,
        docs,
        settings.batch_size,
        settings.max_tokens,
        settings.word_dropout,
        settings.min_length,
        rng,
        settings.bucket,
        pin=device.type == "cuda",
        rank=rank,
        world_size=world_size,
    )
    n_batches = -(-len(docs) // settings.batch_size)
    for batch in progress(batches, desc, "batch", total=n_batches, leave=False):
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch.tokens, batch.lengths)
        loss = loss_fn(logits.float(), batch.labels)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch.index)
        count += len(batch.index)
    return total / max(count, 1), count / (time.perf_counter() - start)


@torch.inference_mode()
def predict(
    model: nn.Module,
    corpus: Corpus,
    docs: np.ndarray,
    batch_size: int,
    max_tokens: int,
    min_length: int,
    device: torch.device,
    bf16: bool,
) -> np.ndarray:
    """Probabilities (float32, docs x labels), in the order of `docs`; batches bucketed."""
    model.eval()
    out: np.ndarray | None = None
    position = {int(d): i for i, d in enumerate(docs)}
    for batch in iterate(
        corpus, docs, batch_size, max_tokens, 0.0, min_length, None, bucket=True, with_labels=False
    ):
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch.tokens, batch.lengths)
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        if out is None:
            out = np.zeros((len(docs), probs.shape[1]), dtype=np.float32)
        out[[position[int(d)] for d in batch.index]] = probs
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def fit(
    model: nn.Module,
    corpus: Corpus,
    settings: LoopSettings,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    train_docs: np.ndarray | None = None,
) -> FitResult:
    """Train on the corpus' training split (or `train_docs`), early-stopping on validation
    macro-F (at the global threshold tuned on validation that epoch) with `patience`;
    returns the best weights and the history.

    With `checkpoint`, the state after every epoch is written there (atomically) and a run
    that finds one resumes after its last finished epoch.
    """
    device = resolve_device(settings.device)
    bf16 = use_bf16(settings.precision, device)
    model.to(device)
    optimizer = make_optimizer(model, settings.optimizer, settings.learning_rate)
    train = corpus.split("train") if train_docs is None else train_docs
    val = corpus.split("validation")
    y_val = dense(corpus.labels[val])
    state = new_loop_state()
    best_state = copy.deepcopy(model.state_dict())
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        best_state = saved["best_model"]
        state = saved["loop"]
        log.info("resuming from %s after epoch %d", checkpoint, state["epoch"])
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
            desc=f"epoch {epoch + 1}/{settings.epochs}",
        )
        record, improved = validate_epoch(
            model, corpus, val, y_val, settings, device, bf16, state, epoch, loss, speed
        )
        if improved:
            best_state = copy.deepcopy(model.state_dict())
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, best_state, state)
        if on_epoch is not None:
            on_epoch(record)
    return FitResult(best_state, state["best_epoch"], state["history"])


def new_loop_state() -> dict:
    """Early-stopping bookkeeping, saved in every checkpoint."""
    return {"epoch": 0, "best_epoch": -1, "best_f": -1.0, "bad": 0, "history": []}


def validate_epoch(
    model: nn.Module,
    corpus: Corpus,
    val: np.ndarray,
    y_val: np.ndarray,
    settings: LoopSettings,
    device: torch.device,
    bf16: bool,
    state: dict,
    epoch: int,
    loss: float,
    speed: float,
    extra: dict | None = None,
) -> tuple[dict, bool]:
    """Score the epoch on validation and record it in `state`; returns (record, improved).

    Scored at the global threshold tuned on validation this epoch: early in training few
    probabilities reach 0.5, and a fixed cut would stop a model that is still learning.
    """
    probs = predict(
        model,
        corpus,
        val,
        settings.batch_size,
        settings.max_tokens,
        settings.min_length,
        device,
        bf16,
    )
    threshold = tune_threshold(y_val, probs)
    scores = scores_at(y_val, probs >= threshold)
    record = {
        "epoch": epoch + 1,
        "train_loss": loss,
        "train_docs_per_s": speed,
        "val_macro_f": scores["macro_f"],
        "val_micro_f": scores["micro_f"],
        "val_threshold": threshold,
        **(extra or {}),
    }
    improved = scores["macro_f"] > state["best_f"]
    if improved:
        state.update(best_f=scores["macro_f"], best_epoch=epoch + 1, bad=0)
    else:
        state["bad"] += 1
    state["epoch"] = epoch + 1
    state["history"].append(record)
    log.info(
        "epoch %d: loss %.4f, val macro-F %.4f, micro-F %.4f, %.0f docs/s",
        epoch + 1,
        loss,
        scores["macro_f"],
        scores["micro_f"],
        speed,
    )
    return record, improved


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, best: dict, state: dict
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best_model": best,
            "loop": state,
        },
        tmp,
    )
    os.replace(tmp, path)
