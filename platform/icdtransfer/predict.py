"""`icdtransfer predict`: codes for new notes from a member or an ensemble directory.

Needs only the model directory (its model, vocabulary and label table) and a JSONL file of
{"id", "text"} records; writes one {"id", "codes": [{"code", "probability"}...], "predicted"}
line per note. No note text is ever written or logged.

Nothing in a model directory can run code: CNN weights load with torch's weights_only loader,
the baselines are arrays (npz read with allow_pickle=False) and LightGBM's text format, an old
pickled `model.joblib` is refused, and an ensemble's members must lie inside its own folder.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from icdtransfer.artifacts import (
    ENSEMBLE_FILE,
    LABELS_FILE,
    LR_FILE,
    MODEL_FILE,
    PICKLED_LR_FILE,
    RANKER_FILE,
    VOCAB_FILE,
    MemberInfo,
    Metrics,
    average_members,
    read_codes_table,
    read_json,
)
from icdtransfer.baseline.lr import load_lr
from icdtransfer.data.atomic import atomic_file
from icdtransfer.data.emr import ReadStats, read_jsonl
from icdtransfer.data.errors import InputError
from icdtransfer.data.tokenizer import raw_tokens
from icdtransfer.data.vocab import Vocabulary
from icdtransfer.train.loop import predict as model_probabilities
from icdtransfer.train.member import load_model
from icdtransfer.train.precision import use_bf16


@dataclass
class Notes:
    """Encoded notes: a `CorpusLike` without labels, for the batching code."""

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
    vocab = Vocabulary.load(member / VOCAB_FILE)
    encoded = encode(notes, vocab, MemberInfo.read(member).tokenizer_numbers)
    if (member / RANKER_FILE).exists():  # LR + L2R (+ NERC): the ranker reads the raw text
        from icdtransfer.baseline.l2r import load_stack

        vectorizer, stack = load_stack(member)
        texts = [" ".join(map(str, encoded.document(i).tolist())) for i in range(len(notes))]
        return stack.probabilities(vectorizer.transform(texts), [text for _, text in notes])
    if (member / LR_FILE).exists():  # the LR baseline
        vectorizer, linear = load_lr(member)
        texts = [" ".join(map(str, encoded.document(i).tolist())) for i in range(len(notes))]
        return linear.predict_proba(vectorizer.transform(texts))
    model, meta = load_model(member)
    cpu = torch.device("cpu")
    bf16 = use_bf16("auto", cpu, model)
    docs = np.arange(len(notes))
    return model_probabilities(
        model, encoded, docs, batch_size, meta.max_tokens, meta.min_length, cpu, bf16
    )


MODEL_FILES = (MODEL_FILE, LR_FILE, RANKER_FILE)  # CNN, LR, LR + L2R (+ NERC)


def model_members(model_dir: Path) -> list[Path]:
    """The member directories behind a model directory (itself, or an ensemble's members).

    An ensemble's member paths must resolve (links followed) inside the ensemble's folder;
    anything else is refused before a file of it is read.
    """
    if not model_dir.is_dir():
        raise InputError(model_dir, None, "model directory not found")
    spec = model_dir / ENSEMBLE_FILE
    if not spec.exists():
        return [_checked_member(model_dir)]
    root = model_dir.resolve()
    members = []
    for i, name in enumerate(read_json(spec)["members"], start=1):
        path = (root / name).resolve()
        if not path.is_relative_to(root) or path == root:
            raise InputError(
                spec,
                f"member {i}",
                "path leads outside the ensemble folder; members must lie inside it "
                "(rebuild the ensemble with `icdtransfer ensemble`)",
            )
        members.append(_checked_member(path))
    return members


def _checked_member(member: Path) -> Path:
    if any((member / f).exists() for f in MODEL_FILES):
        return member
    if (member / PICKLED_LR_FILE).exists():
        raise InputError(
            member / PICKLED_LR_FILE,
            None,
            "a pickled LR baseline from an older version; loading a pickle can run code, so it "
            "is not read: retrain with `icdtransfer baseline` (writes vectorizer.npz, lr.npz)",
        )
    raise InputError(member, None, f"no {', '.join(MODEL_FILES)} or ensemble.json here")


def predict(model_dir: Path, input_path: Path, top_k: int, threshold: float | None) -> list[dict]:
    members = model_members(model_dir)
    notes = read_notes_jsonl(input_path)
    (probs,) = average_members([(member_probabilities(m, notes),) for m in members])
    codes = read_codes_table(members[0] / LABELS_FILE)["code"].tolist()
    if threshold is None:
        threshold = Metrics.read(model_dir).tuned.threshold
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
