"""The on-disk corpus format (docs/DESIGN.md section 3) and its streaming writer.

A prepared corpus is a folder:

    tokens.npy    int32, every document's token ids back to back (memory-mapped on read)
    offsets.npy   int64, n_docs + 1; document i is tokens[offsets[i]:offsets[i + 1]]
    labels.npz    scipy CSR matrix, n_docs x n_labels, uint8
    labels.tsv    index, code, description (where known), train_frequency
    vocab.tsv     id, token, train_count (ids 0-2: <pad>, <unk>, <num>)
    docs.tsv      index, doc_id, patient_id, split, n_tokens
    stats.json    the paper's Table 1 quantities, split sizes and skip counts (a DVC metric)

Text is tokenized once, as it streams in: each token gets a temporary id from a growing table
and the ids go to a scratch file, so memory holds the distinct-token table, not the text.
Once splits are known, training counts give the vocabulary and one lookup array turns
temporary ids into vocabulary ids, document by document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from icdtransfer.data.errors import InputError
from icdtransfer.data.splits import SPLIT_NAMES, TRAIN
from icdtransfer.data.tokenizer import raw_tokens
from icdtransfer.data.vocab import DROP, Vocabulary
from icdtransfer.progress import progress

# what Corpus.open reads (a prepared corpus folder: docs/DESIGN.md section 6)
CORPUS_FILES = (
    "tokens.npy",
    "offsets.npy",
    "labels.npz",
    "labels.tsv",
    "docs.tsv",
    "vocab.tsv",
    "stats.json",
)

_CHUNK = 1 << 22  # tokens per vectorised step when counting and remapping


class TokenSpool:
    """Interns raw tokens and spools their temporary ids to a scratch file, part by part."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index: dict[str, int] = {}
        self._file = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self._ends: list[int] = []
        self._total = 0
        self._pending: list[np.ndarray] = []  # written in large blocks: one write per part is slow
        self._pending_size = 0

    def add(self, text: str) -> int:
        """Tokenize one piece of text; returns its part number."""
        index = self.index
        # setdefault with the current size interns new tokens in one pass
        ids = np.array([index.setdefault(t, len(index)) for t in raw_tokens(text)], np.int32)
        self._pending.append(ids)
        self._pending_size += len(ids)
        if self._pending_size >= _CHUNK:
            self._flush()
        self._total += len(ids)
        self._ends.append(self._total)
        return len(self._ends) - 1

    def _flush(self) -> None:
        if self._pending:
            self._file.write(np.concatenate(self._pending).tobytes())
        self._pending, self._pending_size = [], 0

    def finish(self) -> tuple[SpoolReader, np.ndarray, list[str]]:
        """(temporary ids, part offsets, raw token for each temporary id)."""
        self._flush()
        self._file.close()
        offsets = np.zeros(len(self._ends) + 1, dtype=np.int64)
        offsets[1:] = self._ends
        raw = [""] * len(self.index)
        for token, i in self.index.items():
            raw[i] = token
        return SpoolReader(self.path, self._total), offsets, raw


class SpoolReader:
    """Slices of the spooled ids, read with explicit reads rather than a memory map, so the
    multi-GB spool of a paper-scale corpus sits in the page cache, not in this process."""

    def __init__(self, path: Path, size: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, span: slice) -> np.ndarray:
        start, stop, _ = span.indices(self._size)
        self._file.seek(4 * start)
        return np.fromfile(self._file, dtype=np.int32, count=max(stop - start, 0))

    def close(self) -> None:
        self._file.close()


def train_counts(
    ids: SpoolReader, offsets: np.ndarray, parts: list[list[int]], train: np.ndarray, size: int
) -> np.ndarray:
    """Occurrences of each temporary id in training documents only (vectorised by blocks of
    parts, so memory stays bounded on paper-scale corpora)."""
    part_train = np.zeros(len(offsets) - 1, dtype=bool)
    for doc in np.flatnonzero(train):
        part_train[parts[doc]] = True
    lengths = np.diff(offsets)
    counts = np.zeros(size, dtype=np.int64)
    start = 0
    while start < len(lengths):
        stop = int(np.searchsorted(offsets, offsets[start] + _CHUNK, side="right"))
        stop = max(stop - 1, start + 1)
        block = ids[offsets[start] : offsets[stop]]
        mask = np.repeat(part_train[start:stop], lengths[start:stop])
        counts += np.bincount(block[mask], minlength=size)
        start = stop
    return counts


def train_patient_counts(
    ids: SpoolReader,
    offsets: np.ndarray,
    parts: list[list[int]],
    train: np.ndarray,
    patients: list[str],
    size: int,
) -> np.ndarray:
    """For each temporary id, the number of distinct patients whose training documents hold
    it (a patient's documents are read together; memory is one patient's tokens)."""
    by_patient: dict[str, list[int]] = {}
    for doc in np.flatnonzero(train):
        by_patient.setdefault(patients[doc], []).extend(parts[doc])
    counts = np.zeros(size, dtype=np.int64)
    for patient_parts in by_patient.values():
        tokens = [ids[offsets[p] : offsets[p + 1]] for p in patient_parts]
        counts[np.unique(np.concatenate(tokens))] += 1
    return counts


@dataclass
class Labelled:
    """Documents' label indices after filtering, and the label table."""

    doc_labels: list[list[int]]
    codes: list[str]
    train_frequency: np.ndarray
    dropped_codes: int


def filter_labels(
    doc_codes: list[list[str]],
    splits: np.ndarray,
    min_count: int,
    scope: Literal["train", "all"] = "train",
) -> Labelled:
    """Keep codes that occur in at least `min_count` documents (paper: 50) of the training
    split (`scope="train"`) or of every split (`"all"`, as the paper counted over all 71,463
    EMRs, which lets validation and test labels decide which codes are kept).

    Codes are counted once per document (duplicates were removed before). Labels are indexed in
    code order; a document whose codes are all dropped keeps an empty label set. The label
    table's frequency is always the training frequency (it orders the deciles).
    """
    train_freq: dict[str, int] = {}
    all_freq: dict[str, int] = {}
    for codes, split in zip(doc_codes, splits, strict=True):
        for code in codes:
            all_freq[code] = all_freq.get(code, 0) + 1
            if split == TRAIN:
                train_freq[code] = train_freq.get(code, 0) + 1
    counted = train_freq if scope == "train" else all_freq
    kept = sorted(code for code, n in counted.items() if n >= min_count)
    position = {code: i for i, code in enumerate(kept)}
    doc_labels = [sorted(position[c] for c in codes if c in position) for codes in doc_codes]
    frequency = np.array([train_freq.get(c, 0) for c in kept], dtype=np.int64)
    return Labelled(doc_labels, kept, frequency, len(all_freq) - len(kept))


def write_corpus(
    out: Path,
    *,
    ids: SpoolReader,
    offsets: np.ndarray,
    raw: list[str],
    parts: list[list[int]],
    docs: pd.DataFrame,
    labelled: Labelled,
    descriptions: dict[str, str],
    vocab: Vocabulary,
    numbers: str,
    stats: dict,
) -> dict:
    """Write every file of the format into `out` (an empty folder); returns the full stats."""
    lookup = vocab.ids(raw, numbers).astype(np.int32)
    n_docs = len(parts)
    doc_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    # One part per document, in order (a MEDLINE corpus): remap the spool block by block.
    in_order = (
        numbers != "drop"
        and len(offsets) - 1 == n_docs
        and all(len(p) == 1 and p[0] == d for d, p in enumerate(parts))
    )
    with open(out / "tokens.npy", "wb") as tokens_out:
        tokens_out.write(_npy_header(0))  # rewritten with the real length at the end
        if in_order:
            for start in range(0, len(ids), _CHUNK):
                tokens_out.write(lookup[ids[start : start + _CHUNK]].tobytes())
            doc_offsets[:] = offsets
        else:
            for d in progress(range(n_docs), "encode", "doc", leave=False):
                pieces = [lookup[ids[offsets[p] : offsets[p + 1]]] for p in parts[d]]
                doc = np.concatenate(pieces) if len(pieces) != 1 else pieces[0]
                if numbers == "drop":
                    doc = doc[doc != DROP]
                tokens_out.write(doc.tobytes())
                doc_offsets[d + 1] = doc_offsets[d] + len(doc)
        tokens_out.seek(0)
        tokens_out.write(_npy_header(int(doc_offsets[-1])))
    np.save(out / "offsets.npy", doc_offsets)

    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(x) for x in labelled.doc_labels])
    indices = np.fromiter((i for x in labelled.doc_labels for i in x), dtype=np.int32)
    matrix = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.uint8), indices, indptr),
        shape=(n_docs, len(labelled.codes)),
    )
    sp.save_npz(out / "labels.npz", matrix)
    pd.DataFrame(
        {
            "code": labelled.codes,
            "description": [descriptions.get(c, "") for c in labelled.codes],
            "train_frequency": labelled.train_frequency,
        }
    ).to_csv(out / "labels.tsv", sep="\t", index_label="index")
    vocab.save(out / "vocab.tsv")
    docs = docs.assign(n_tokens=np.diff(doc_offsets))
    docs.to_csv(out / "docs.tsv", sep="\t", index_label="index")

    stats = {**table1(docs, labelled), **stats, "vocabulary": len(vocab)}
    stats["tokens"] = int(doc_offsets[-1])
    with open(out / "stats.json", "w", encoding="utf-8") as handle:
        json.dump(stats, handle, indent=2, sort_keys=False)
        handle.write("\n")
    return stats


def _npy_header(count: int) -> bytes:
    """A fixed-size (128-byte) .npy v1.0 header for a flat int32 array of `count` items, so
    the token file can be streamed to disk and still be memory-mapped with np.load."""
    text = f"{{'descr': '<i4', 'fortran_order': False, 'shape': ({count},), }}"
    body = text.ljust(128 - 10 - 1).encode("latin-1") + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def table1(docs: pd.DataFrame, labelled: Labelled) -> dict:
    """The paper's Table 1 quantities for this corpus."""
    sizes = [len(x) for x in labelled.doc_labels]
    return {
        "instances": len(docs),
        "labels": len(labelled.codes),
        "label_cardinality": round(float(np.mean(sizes)) if sizes else 0.0, 3),
        "words_per_document": round(float(docs["n_tokens"].mean()) if len(docs) else 0.0, 1),
        "code_combinations": len({tuple(x) for x in labelled.doc_labels}),
        "splits": {name: int((docs["split"] == name).sum()) for name in SPLIT_NAMES},
        "documents_without_kept_labels": int(sum(1 for s in sizes if s == 0)),
        "codes_dropped_below_min_count": labelled.dropped_codes,
    }


def format_table1(stats: dict, name: str) -> str:
    """Table 1 of the paper, for one corpus, as printable lines."""
    rows = [
        ("# Instances", f"{stats['instances']:,}"),
        ("# Labels", f"{stats['labels']:,}"),
        ("Label cardinality", f"{stats['label_cardinality']:.2f}"),
        ("Avg # words per instance", f"{stats['words_per_document']:,.0f}"),
        ("# Code combinations", f"{stats['code_combinations']:,}"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join([f"Table 1 ({name})"] + [f"  {k:<{width}}  {v:>10}" for k, v in rows])


@dataclass
class Corpus:
    """A prepared corpus opened for reading; token arrays are memory-mapped, never copied."""

    path: Path
    tokens: np.ndarray
    offsets: np.ndarray
    labels: sp.csr_matrix
    label_table: pd.DataFrame
    docs: pd.DataFrame
    vocab: Vocabulary
    stats: dict

    @classmethod
    def open(cls, path: str | Path) -> Corpus:
        path = Path(path)
        missing = [name for name in CORPUS_FILES if not (path / name).is_file()]
        if missing:  # e.g. train-target before prepare-target: one line, not a traceback
            raise InputError(
                path,
                None,
                f"not a prepared corpus ({', '.join(missing)} missing): run its prepare command"
                " first (`icdtransfer prepare-source` or `prepare-target`), or `dvc repro`",
            )
        return cls(
            path=path,
            tokens=np.load(path / "tokens.npy", mmap_mode="r"),
            offsets=np.load(path / "offsets.npy"),
            labels=sp.load_npz(path / "labels.npz").tocsr(),
            label_table=pd.read_csv(
                path / "labels.tsv",
                sep="\t",
                index_col="index",
                dtype={"code": str},
                keep_default_na=False,
            ),
            docs=pd.read_csv(
                path / "docs.tsv",
                sep="\t",
                index_col="index",
                dtype={"doc_id": str, "patient_id": str, "split": str},
                keep_default_na=False,
            ),
            vocab=Vocabulary.load(path / "vocab.tsv"),
            stats=json.loads((path / "stats.json").read_text(encoding="utf-8")),
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def split(self, name: str) -> np.ndarray:
        """Document indices of one split ("train", "validation", "test")."""
        return np.flatnonzero(self.docs["split"].to_numpy() == name)

    def evaluate(self, validation: np.ndarray, test: np.ndarray) -> dict:
        """The metrics file for probabilities over this corpus' validation and test splits
        (in split order): evaluate.metrics.evaluate with this corpus' labels."""
        from icdtransfer.evaluate.metrics import evaluate

        return evaluate(
            self.labels[self.split("validation")],
            validation,
            self.labels[self.split("test")],
            test,
            self.label_table["train_frequency"].to_numpy(),
        )
