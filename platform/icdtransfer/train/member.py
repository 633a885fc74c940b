"""Member directories: everything a trained model needs to be evaluated, ensembled or used
for prediction without the training data.

    model.pt                state dict + shape metadata (loaded with weights_only=True)
    vocab.tsv, labels.tsv   the vocabulary and the codes it predicts (index, code, frequency;
                            no descriptions: results hold ids, codes and numbers only)
    probs_validation.npy    float16 probabilities, validation documents in corpus order
    probs_test.npy          float16 probabilities, test documents in corpus order
    metrics.json            evaluate() of those probabilities (both thresholds)
    history.json            per-epoch loss and validation scores
    member.json             what was trained: variant, seed, settings, timing, corpus
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from icdtransfer.model.cnn import EncoderShape, SourceModel, TargetModel


def save_model(path: Path, state: dict[str, torch.Tensor], meta: dict) -> None:
    torch.save({"state": {k: v.detach().cpu() for k, v in state.items()}, "meta": meta}, path)


def load_model_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved["state"], saved["meta"]


def shape_meta(shape: EncoderShape) -> dict:
    return {
        "vocab_size": shape.vocab_size,
        "embedding_dim": shape.embedding_dim,
        "filters": shape.filters,
        "widths": list(shape.widths),
    }


def shape_from(meta: dict) -> EncoderShape:
    s = meta["shape"]
    return EncoderShape(s["vocab_size"], s["embedding_dim"], s["filters"], tuple(s["widths"]))


def load_model(member: Path) -> tuple[SourceModel | TargetModel, dict]:
    """Rebuild a stage-1 or stage-2 model from its directory (eval mode, on the CPU)."""
    state, meta = load_model_file(member / "model.pt")
    shape = shape_from(meta)
    if meta["kind"] == "source":
        model: SourceModel | TargetModel = SourceModel(shape, meta["n_labels"], meta["dropout"])
    else:
        model = TargetModel(
            shape, meta["n_labels"], meta["adaptation_size"], meta["dropout"], meta["frozen_copy"]
        )
    model.load_state_dict(state)
    model.eval()
    return model, meta


def write_member(
    out: Path,
    *,
    state: dict[str, torch.Tensor],
    meta: dict,
    corpus_dir: Path,
    probs_validation: np.ndarray,
    probs_test: np.ndarray,
    metrics: dict,
    history: list[dict],
    info: dict,
) -> None:
    """Write a member into `out` (a fresh folder; the caller makes it atomic)."""
    save_model(out / "model.pt", state, meta)
    copy_vocab_and_codes(corpus_dir, out)
    write_probs(out, probs_validation, probs_test)
    write_json(out / "metrics.json", metrics)
    write_json(out / "history.json", history)
    write_json(out / "member.json", info)


def copy_vocab_and_codes(corpus_dir: Path, out: Path) -> None:
    """The vocabulary, and the label table without its description column."""
    shutil.copyfile(corpus_dir / "vocab.tsv", out / "vocab.tsv")
    labels = pd.read_csv(
        corpus_dir / "labels.tsv", sep="\t", dtype={"code": str}, keep_default_na=False
    )
    labels[["index", "code", "train_frequency"]].to_csv(out / "labels.tsv", sep="\t", index=False)


def write_probs(out: Path, validation: np.ndarray, test: np.ndarray) -> None:
    np.save(out / "probs_validation.npy", validation.astype(np.float16))
    np.save(out / "probs_test.npy", test.astype(np.float16))


def read_probs(member: Path) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.load(member / "probs_validation.npy").astype(np.float32),
        np.load(member / "probs_test.npy").astype(np.float32),
    )


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
