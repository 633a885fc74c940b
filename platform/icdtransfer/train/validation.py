"""What the loop asks of a model on held-out documents: probabilities in the documents'
order with one copy to the host (`predict`, also what members, ensembles and `icdtransfer
predict` score with), and an epoch's validation scores, the criterion candidates early
stopping may watch and the validation loss (docs/DESIGN.md section 4)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from icdtransfer.artifacts import CorpusLike, Scores
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import scores_at, tune_threshold
from icdtransfer.train.batches import iterate


class Batching(Protocol):
    """What validation needs of the loop's settings (train/loop.py's LoopSettings)."""

    batch_size: int
    max_tokens: int
    min_length: int


def validate_epoch(
    model: nn.Module,
    corpus: Corpus,
    val: np.ndarray,
    y_val: np.ndarray,
    settings: Batching,
    device: torch.device,
    bf16: bool,
) -> tuple[Scores, float, float, dict[str, float]]:
    """Validation scores of the model as it is, the threshold they were scored at, and the
    validation loss (J_CE, summed over labels, averaged over documents).

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
    return (
        scores_at(y_val, probs >= threshold),
        threshold,
        validation_loss(y_val, probs),
        macro_f_companions(y_val, probs),
    )


def macro_f_companions(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Macro-F (all labels) at the threshold best for it, and its mean over 0.05-0.5."""
    curve = [scores_at(y, probs >= t).macro_f_all_labels for t in np.arange(0.05, 0.501, 0.05)]
    return {"val_macro_f_best": float(max(curve)), "val_macro_f_band": float(np.mean(curve))}


def trivial_macro_f(y: np.ndarray, criterion: str) -> float | None:
    """What predicting every code scores on `criterion`: the floor a learning model beats.

    Macro-F over all labels at the best threshold (`val_macro_f_best`) of a model that is
    still uniform is that of predicting every code (F = 2 n_j / (n_j + N) per code, about 0.11
    on the default corpus): early in training it looks like a plateau. None for `val_macro_f`
    (its threshold is tuned for micro-F, which all-positive predictions lose: no such floor)."""
    if criterion != "val_macro_f_best" or not len(y):
        return None
    positives = y.sum(axis=0).astype(float)
    return float(np.mean(2 * positives / (positives + len(y))))


def validation_loss(y: np.ndarray, probs: np.ndarray) -> float:
    """J_CE of probabilities (as `multilabel_bce` of their logits, up to float32 clipping)."""
    if not len(y):
        return float("nan")
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum() / len(y))


@torch.inference_mode()
def predict(
    model: nn.Module,
    corpus: CorpusLike,
    docs: np.ndarray,
    batch_size: int,
    max_tokens: int,
    min_length: int,
    device: torch.device,
    bf16: bool,
) -> np.ndarray:
    """Probabilities (float32, docs x labels), in the order of `docs`; batches bucketed.

    The batches' probabilities stay on the device and are put back in the order of `docs`
    there; one copy to the host at the end, instead of a sync and a copy per batch."""
    model.eval()
    parts: list[torch.Tensor] = []
    order: list[np.ndarray] = []
    for batch in iterate(
        corpus,
        docs,
        batch_size,
        max_tokens,
        0.0,
        min_length,
        None,
        with_labels=False,
        device=device,
    ):
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch.tokens, batch.lengths)
        parts.append(torch.sigmoid(logits.float()))
        order.append(batch.index)
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    position = {int(d): i for i, d in enumerate(docs)}
    rows = torch.as_tensor([position[int(d)] for d in np.concatenate(order)], device=device)
    probs = torch.cat(parts)
    out = probs.new_zeros(len(docs), probs.shape[1]).index_copy_(0, rows, probs)
    return out.cpu().numpy()
