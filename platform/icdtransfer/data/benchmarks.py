"""The field's MIMIC benchmarks: shipped split ids and label-set rules (presets/mimic*.yaml).

A benchmark preset names its split file, `target.benchmark` (presets/splits/<name>.parquet:
columns hadm_id and split, ids only; presets/splits/README.md names their sources). With one:

* every listed HADM_ID goes to the split the file gives it; admissions the file does not list
  are dropped, whatever their notes (the benchmark's documents are exactly its ids);
* listed ids that the user's data does not yield (no note, no valid code) are counted per
  split; when a split misses more than `target.benchmark_tolerance` of its ids, preparation
  stops with one line saying how many of each split are missing;
* `target.top_codes` k > 0 keeps the k codes in most training documents (ties: code order),
  as CAML's top-50 label set; 0 keeps every code that passes `target.min_count`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from icdtransfer.config import TargetConfig
from icdtransfer.data.errors import InputError
from icdtransfer.data.splits import SPLIT_NAMES, TRAIN

log = logging.getLogger(__name__)

SPLITS_DIR = Path(__file__).resolve().parents[3] / "presets" / "splits"
BENCHMARKS = ("mimic3-full", "mimic3-50", "mimic3-clean", "mimic4-icd9", "mimic4-icd10")


@dataclass(frozen=True)
class BenchmarkSplits:
    """A benchmark's ids by split, as strings (the corpus' document ids are strings)."""

    path: Path
    ids: dict[str, str]  # HADM_ID -> split name

    @classmethod
    def read(cls, benchmark: str) -> BenchmarkSplits:
        path = splits_path(benchmark)
        if not path.is_file():
            known = ", ".join(BENCHMARKS)
            problem = f"target.benchmark: no such split file (and not one of {known})"
            raise InputError(path, None, problem)
        try:
            table = pq.read_table(path, columns=["hadm_id", "split"])
        except Exception as err:  # noqa: BLE001 - pyarrow raises many kinds; one line names it
            problem = f"not a split file with columns hadm_id, split ({type(err).__name__})"
            raise InputError(path, None, problem) from None
        ids: dict[str, str] = {}
        for hadm, split in zip(
            table.column("hadm_id").to_pylist(), table.column("split").to_pylist(), strict=True
        ):
            if split not in SPLIT_NAMES:
                problem = f"split {split!r} is not one of {', '.join(SPLIT_NAMES)}"
                raise InputError(path, f"hadm_id {hadm}", problem)
            key = str(hadm)
            if key in ids:
                raise InputError(path, f"hadm_id {hadm}", "listed twice")
            ids[key] = split
        if not ids:
            raise InputError(path, None, "split file lists no ids")
        return cls(path, ids)

    def sizes(self) -> dict[str, int]:
        counts = Counter(self.ids.values())
        return {name: counts.get(name, 0) for name in SPLIT_NAMES}


def assign(
    doc_ids: Sequence[str], bench: BenchmarkSplits, tolerance: float
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(keep mask, split codes of the kept documents, missing ids per split).

    Raises InputError when a split misses more than `tolerance` (a share) of its ids."""
    code = {name: i for i, name in enumerate(SPLIT_NAMES)}
    keep = np.array([d in bench.ids for d in doc_ids], dtype=bool)
    splits = np.array([code[bench.ids[d]] for d in doc_ids if d in bench.ids], dtype=np.int8)
    found = Counter(bench.ids[d] for d in doc_ids if d in bench.ids)
    sizes = bench.sizes()
    missing = {name: sizes[name] - found.get(name, 0) for name in SPLIT_NAMES}
    over = [n for n in SPLIT_NAMES if sizes[n] and missing[n] / sizes[n] > tolerance]
    if over:
        parts = ", ".join(
            f"{missing[n]} of {sizes[n]} {n} ids ({100 * missing[n] / sizes[n]:.1f}%)"
            for n in SPLIT_NAMES
        )
        raise InputError(
            bench.path,
            None,
            f"{parts} are not documents of target.input (no discharge note or no valid code); "
            f"more than target.benchmark_tolerance {tolerance:g} of a split: is target.input "
            "the MIMIC release this benchmark was built on?",
        )
    if not found.get("train"):
        raise InputError(bench.path, None, "no train id of this file is in target.input")
    return keep, splits, missing


def splits_path(benchmark: str) -> Path:
    """`target.benchmark`: a shipped benchmark's name (presets/splits/<name>.parquet) or the
    path of a split file of the same form."""
    if benchmark in BENCHMARKS:
        return SPLITS_DIR / f"{benchmark}.parquet"
    return Path(benchmark)


def top_codes(doc_codes: list[list[str]], splits: np.ndarray, k: int) -> list[list[str]]:
    """Each document's codes restricted to the k codes in most training documents (ties
    broken by code, so the set does not depend on document order)."""
    counts = Counter(
        c for codes, s in zip(doc_codes, splits, strict=True) if s == TRAIN for c in codes
    )
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = {code for code, _ in ranked[:k]}
    return [[c for c in codes if c in kept] for codes in doc_codes]


def apply(
    cfg: TargetConfig,
    doc_ids: list[str],
    patients: list[str],
    doc_codes: list[list[str]],
    parts: list[list[int]],
) -> tuple[list[str], list[str], list[list[str]], list[list[int]], np.ndarray, dict[str, int]]:
    """The documents of `cfg.benchmark` only, with its splits, and its ids missing per split
    (plus `not_in_benchmark`: documents of the data that the benchmark does not list)."""
    assert cfg.benchmark is not None
    bench = BenchmarkSplits.read(cfg.benchmark)
    keep, splits, missing = assign(doc_ids, bench, cfg.benchmark_tolerance)
    missing["not_in_benchmark"] = int((~keep).sum())
    log.info(
        "benchmark %s: %s; ids missing from target.input: %s",
        cfg.benchmark,
        ", ".join(f"{n} {c}" for n, c in bench.sizes().items()),
        ", ".join(f"{n} {c}" for n, c in missing.items()),
    )

    def kept(values: list) -> list:
        return [v for v, k in zip(values, keep, strict=True) if k]

    return kept(doc_ids), kept(patients), kept(doc_codes), kept(parts), splits, missing
