"""`icdtransfer predict`: codes for new notes from a member or an ensemble directory.

Needs only the model directory (its model, vocabulary and label table) and a JSONL file of
{"id", "text"} records; writes one {"id", "codes": [{"code", "probability"}...], "predicted"}
line per note. No note text is ever written or logged.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from icdtransfer.data.atomic import atomic_file
from icdtransfer.data.emr import ReadStats, read_jsonl
from icdtransfer.data.errors import InputError
from icdtransfer.data.tokenizer import raw_tokens
from icdtransfer.data.vocab import Vocabulary
from icdtransfer.train.batches import iterate
from icdtransfer.train.loop import bf16_supported
from icdtransfer.train.member import load_model


@dataclass
class Notes:
    """Encoded notes, shaped like a corpus for the batching code (no labels)."""

    ids: list[str]
    tokens: np.ndarray
    offsets: np.ndarray
    labels: None = None

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def read_notes_jsonl(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise InputError(path, None, "file not found")
    notes = []
    for part in read_jsonl(path, "utf-8", "strict", ReadStats(), require_codes=False):
        if not part.text.strip():
            raise InputError(path, part.where, "empty text: nothing to code")
        notes.append((part.doc_id, part.text))
    return notes


def encode(notes: list[tuple[str, str]], vocab: Vocabulary, numbers: str) -> Notes:
    arrays = [vocab.encode(raw_tokens(text), numbers) for _, text in notes]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    tokens = np.concatenate(arrays) if arrays else np.zeros(0, np.int32)
    return Notes([i for i, _ in notes], tokens, offsets)


def member_probabilities(
    member: Path, notes: list[tuple[str, str]], batch_size: int = 16
) -> np.ndarray:
    """Probabilities (notes x codes) from one member directory (CNN or a baseline)."""
    vocab = Vocabulary.load(member / "vocab.tsv")
    info = json.loads((member / "member.json").read_text())
    numbers = info.get("tokenizer_numbers", "placeholder")
    encoded = encode(notes, vocab, numbers)
    if (member / "ranker.txt").exists():  # LR + L2R (+ NERC): the ranker reads the raw text
        from icdtransfer.baseline.l2r import load_stack

        vectorizer, stack = load_stack(member)
        texts = [" ".join(map(str, encoded.document(i).tolist())) for i in range(len(notes))]
        return stack.probabilities(vectorizer.transform(texts), [text for _, text in notes])
    if (member / "model.joblib").exists():  # the LR baseline
        bundle = joblib.load(member / "model.joblib")
        texts = [" ".join(map(str, encoded.document(i).tolist())) for i in range(len(notes))]
        return bundle["classifier"].predict_proba(bundle["vectorizer"].transform(texts))
    model, meta = load_model(member)
    bf16 = bf16_supported(torch.device("cpu"))
    docs = np.arange(len(notes))
    out = np.zeros((len(notes), meta["n_labels"]), dtype=np.float32)
    with torch.inference_mode():
        for batch in iterate(
            encoded,
            docs,
            batch_size,
            meta["max_tokens"],
            0.0,
            max(meta["shape"]["widths"]),
            None,
            with_labels=False,
        ):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(batch.tokens, batch.lengths)
            out[batch.index] = torch.sigmoid(logits.float()).numpy()
    return out


def model_members(model_dir: Path) -> list[Path]:
    """The member directories behind a model directory (itself, or an ensemble's members)."""
    if not model_dir.is_dir():
        raise InputError(model_dir, None, "model directory not found")
    spec = model_dir / "ensemble.json"
    if spec.exists():
        return [(model_dir / m).resolve() for m in json.loads(spec.read_text())["members"]]
    if not any((model_dir / f).exists() for f in ("model.pt", "model.joblib", "ranker.txt")):
        raise InputError(
            model_dir, None, "no model.pt, model.joblib, ranker.txt or ensemble.json here"
        )
    return [model_dir]


def predict(model_dir: Path, input_path: Path, top_k: int, threshold: float | None) -> list[dict]:
    members = model_members(model_dir)
    notes = read_notes_jsonl(input_path)
    probs = np.mean([member_probabilities(m, notes) for m in members], axis=0)
    codes = pd.read_csv(
        members[0] / "labels.tsv", sep="\t", dtype={"code": str}, keep_default_na=False
    )["code"].tolist()
    if threshold is None:
        metrics = json.loads((model_dir / "metrics.json").read_text())
        threshold = float(metrics["tuned"]["threshold"])
    out = []
    for (doc_id, _), row in zip(notes, probs, strict=True):
        top = np.argsort(-row, kind="stable")[:top_k]
        out.append(
            {
                "id": doc_id,
                "codes": [{"code": codes[j], "probability": round(float(row[j]), 4)} for j in top],
                "predicted": [codes[j] for j in np.flatnonzero(row >= threshold)],
                "threshold": threshold,
            }
        )
    return out


def write_predictions(rows: list[dict], output: Path | None) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    if output is None:
        sys.stdout.write(lines)
        return
    with atomic_file(output) as handle:
        handle.write(lines)
