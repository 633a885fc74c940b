"""Per-document prediction files, and re-scoring them under any protocol without retraining.

Every member, baseline and ensemble directory holds `predictions.parquet`: one row per
(document, code) of the validation and test splits, with the probability the metrics were
computed from (float32, exactly; probs_*.npy are float16 copies) and whether the code is one
of the document's true codes. Columns: split, doc_id, code, probability, gold. Ids, codes and
numbers only, never text. Validation rows are there because the tuned thresholds are chosen
on them. The file's metadata holds the label order and training frequencies, so that
`icdtransfer score --predictions FILE --protocol metrics` rebuilds metrics.json exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from icdtransfer.artifacts import (
    PREDICTIONS_FILE,
    MemberInfo,
    Metrics,
    copy_vocab_and_codes,
    write_probs,
)
from icdtransfer.data.errors import InputError
from icdtransfer.evaluate import protocols
from icdtransfer.evaluate.metrics import dense, evaluate

SPLITS = ("validation", "test")
META_KEY = b"icdtransfer"
PROTOCOL_CHOICES = ("metrics", *protocols.NAMED, "all")


@dataclass
class Predictions:
    codes: list[str]
    train_frequency: np.ndarray
    doc_ids: dict[str, list[str]]  # split -> document ids, in corpus order
    gold: dict[str, np.ndarray]  # split -> bool documents x labels
    probs: dict[str, np.ndarray]  # split -> float32 documents x labels
    ensemble_size: int | None = None


def write_predictions(
    path: Path,
    corpus: Any,
    validation: np.ndarray,
    test: np.ndarray,
    ensemble_size: int | None = None,
) -> None:
    """Write the file for probabilities over `corpus`' validation and test splits (a Corpus:
    docs, labels, label_table, split())."""
    codes = [str(c) for c in corpus.label_table["code"]]
    split_idx, doc_idx, code_idx, prob_parts, gold_parts, all_ids = [], [], [], [], [], []
    for s, (split, probs) in enumerate(zip(SPLITS, (validation, test), strict=True)):
        rows = corpus.split(split)
        gold = dense(corpus.labels[rows])
        probs = np.asarray(probs, dtype=np.float32)
        if probs.shape != gold.shape:
            raise ValueError(f"{split} probabilities {probs.shape}, labels {gold.shape}")
        n, n_labels = probs.shape
        split_idx.append(np.full(n * n_labels, s, dtype=np.int8))
        doc_idx.append(np.repeat(np.arange(n, dtype=np.int32) + len(all_ids), n_labels))
        code_idx.append(np.tile(np.arange(n_labels, dtype=np.int32), n))
        prob_parts.append(probs.ravel())
        gold_parts.append(gold.ravel())
        all_ids.extend(corpus.docs["doc_id"].astype(str).to_numpy()[rows])
    meta = {
        "codes": codes,
        "train_frequency": [int(x) for x in corpus.label_table["train_frequency"]],
        "ensemble_size": ensemble_size,
    }

    def coded(indices: list[np.ndarray], names: list[str]) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(
            pa.array(np.concatenate(indices)), pa.array(names, pa.string())
        )

    table = pa.table(
        {
            "split": coded(split_idx, list(SPLITS)),
            "doc_id": coded(doc_idx, [str(d) for d in all_ids]),
            "code": coded(code_idx, codes),
            "probability": pa.array(np.concatenate(prob_parts), pa.float32()),
            "gold": pa.array(np.concatenate(gold_parts), pa.bool_()),
        }
    ).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path, compression="zstd")


def write_member_predictions(
    path: Path, corpus_dir: str | Path, validation: np.ndarray, test: np.ndarray
) -> None:
    """The prediction file of a member or baseline scored on the corpus in `corpus_dir`."""
    from icdtransfer.data.corpus import Corpus

    write_predictions(path, Corpus.open(corpus_dir), validation, test)


def read_predictions(path: str | Path) -> Predictions:
    """Read a prediction file; anything that does not fit is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "prediction file not found")
    try:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[META_KEY])
        codes, frequency = list(meta["codes"]), np.asarray(meta["train_frequency"], np.int64)
    except Exception as err:  # noqa: BLE001 - pyarrow and json raise many kinds
        problem = f"not an icdtransfer prediction file ({type(err).__name__})"
        raise InputError(path, None, problem) from None
    wanted = ("split", "doc_id", "code", "probability", "gold")
    if not set(wanted) <= set(table.column_names):
        raise InputError(path, None, f"columns {', '.join(wanted)} expected")
    table = table.select(list(wanted)).unify_dictionaries().combine_chunks()
    split_idx, split_names = _coded(table, "split", path)
    doc_idx, doc_names = _coded(table, "doc_id", path)
    code_idx, code_names = _coded(table, "code", path)
    position = {c: j for j, c in enumerate(codes)}
    unknown = [c for c in code_names if c not in position]
    if unknown:
        raise InputError(path, f"code {unknown[0]}", "not in the file's label list")
    code_pos = np.array([position[c] for c in code_names], dtype=np.int64)[code_idx]
    probability = table.column("probability").to_numpy().astype(np.float32)
    gold_all = table.column("gold").to_numpy(zero_copy_only=False).astype(bool)
    out = Predictions(codes, frequency, {}, {}, {}, meta.get("ensemble_size"))
    for split in SPLITS:
        mask = split_idx == (split_names.index(split) if split in split_names else -1)
        if not mask.any():
            raise InputError(path, None, f"no {split} rows (tuned thresholds need validation)")
        docs = doc_idx[mask]
        ids = docs[np.sort(np.unique(docs, return_index=True)[1])]  # in order of first row
        row_of = np.full(len(doc_names), -1, dtype=np.int64)
        row_of[ids] = np.arange(len(ids))
        r, c = row_of[docs], code_pos[mask]
        shape = (len(ids), len(codes))
        covered = np.zeros(shape, dtype=bool)
        covered[r, c] = True  # as many rows as cells, every cell covered: each exactly once
        if mask.sum() != shape[0] * shape[1] or not covered.all():
            raise InputError(path, split, "needs exactly one row per (document, code)")
        probs = np.zeros(shape, np.float32)
        gold = np.zeros(shape, bool)
        probs[r, c] = probability[mask]
        gold[r, c] = gold_all[mask]
        if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
            raise InputError(path, split, "probabilities must lie in [0, 1]")
        out.doc_ids[split] = [doc_names[i] for i in ids]
        out.probs[split], out.gold[split] = probs, gold
    return out


def _coded(table: pa.Table, name: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """A string column as (integer codes, their values), dictionary-encoded or not."""
    column = table.column(name)
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if array.null_count:
        raise InputError(path, None, f"column {name} has empty values")
    return array.indices.to_numpy().astype(np.int64), [str(v) for v in array.dictionary.to_pylist()]


def score_predictions(pred: Predictions, protocol: str) -> dict[str, Any]:
    """`metrics`: metrics.json as evaluate() writes it; a protocol name (paper, caml, edin) or
    `threshold,macro,labels`: that protocol's micro-F and macro-F; `all`: every protocol."""
    args = (
        pred.gold["validation"],
        pred.probs["validation"],
        pred.gold["test"],
        pred.probs["test"],
    )
    if protocol == "metrics":
        metrics = evaluate(*args, pred.train_frequency)
        metrics.ensemble_size = pred.ensemble_size
        return metrics.to_json()
    if protocol == "all":
        return {p.key: protocols.score(p, *args) for p in protocols.every_protocol()}
    chosen = protocols.NAMED.get(protocol) or protocols.Protocol.parse(protocol)
    return {"protocol": chosen.key, "means": chosen.text, **protocols.score(chosen, *args)}


def score_file(path: str | Path, protocol: str) -> dict[str, Any]:
    """The `icdtransfer score` command: read, check the protocol, score."""
    if protocol not in PROTOCOL_CHOICES:
        try:
            protocols.Protocol.parse(protocol)
        except ValueError as err:
            names = ", ".join(PROTOCOL_CHOICES)
            raise InputError("--protocol", None, f"{err}; or one of {names}") from None
    return score_predictions(read_predictions(path), protocol)


def write_member_files(
    out: Path,
    corpus_dir: Path,
    probs: tuple[np.ndarray, np.ndarray],
    metrics: Metrics,
    info: MemberInfo,
) -> None:
    """What every member directory holds besides its model: vocabulary and codes,
    (validation, test) probabilities, the prediction file, metrics.json and member.json."""
    copy_vocab_and_codes(corpus_dir, out)
    write_probs(out, *probs)
    write_member_predictions(out / PREDICTIONS_FILE, corpus_dir, *probs)
    metrics.write(out)
    info.write(out)
