"""A CNN member on disk: model.pt (weights + `ModelMeta`) and the whole member directory, whose
layout and files artifacts.py defines. Everything a trained model needs to be evaluated,
ensembled or used for prediction, without the training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icdtransfer.artifacts import (
    HISTORY_FILE,
    MODEL_FILE,
    MemberInfo,
    Metrics,
    write_json,
)
from icdtransfer.data.errors import InputError
from icdtransfer.evaluate.predictions import write_member_files
from icdtransfer.model.cnn import SourceModel, TargetModel, build_model
from icdtransfer.model_meta import ModelMeta
from icdtransfer.train.state import EpochRecord


def save_model(path: Path, state: dict[str, torch.Tensor], meta: ModelMeta) -> None:
    state = {k: v.detach().cpu() for k, v in state.items()}
    torch.save({"state": state, "meta": meta.to_json()}, path)


def load_model_file(path: Path) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    if not path.is_file():  # e.g. train-target before pretrain: one line, not a traceback
        raise InputError(
            path,
            None,
            "model not found: train it first (stage 1, which train_target.pretrained names:"
            " `icdtransfer pretrain`; or `dvc repro`)",
        )
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved["state"], ModelMeta.from_json(saved["meta"])


def load_model(member: Path) -> tuple[SourceModel | TargetModel, ModelMeta]:
    """Rebuild a stage-1 or stage-2 model from its directory (eval mode, on the CPU)."""
    state, meta = load_model_file(member / MODEL_FILE)
    model = build_model(meta)
    model.load_state_dict(state)
    model.eval()
    return model, meta


def write_member(
    out: Path,
    *,
    state: dict[str, torch.Tensor],
    meta: ModelMeta,
    corpus_dir: Path,
    probs_validation: np.ndarray,
    probs_test: np.ndarray,
    metrics: Metrics,
    history: list[EpochRecord],
    info: MemberInfo,
) -> None:
    """Write a member into `out` (a fresh folder; the caller makes it atomic)."""
    save_model(out / MODEL_FILE, state, meta)
    write_member_files(out, corpus_dir, (probs_validation, probs_test), metrics, info)
    write_json(out / HISTORY_FILE, [r.to_json() for r in history])
