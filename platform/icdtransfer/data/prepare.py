"""The prepare_source and prepare_target stages: raw inputs -> on-disk corpora."""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from icdtransfer.config import SourceConfig, TargetConfig, TokenizerConfig
from icdtransfer.data import benchmarks
from icdtransfer.data import codes as icd
from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import (
    TokenSpool,
    filter_labels,
    format_table1,
    train_counts,
    train_patient_counts,
    write_corpus,
)
from icdtransfer.data.emr import ReadStats, find_table, read_code_table, read_jsonl, read_notes
from icdtransfer.data.errors import InputError, clip
from icdtransfer.data.files import resolve_inputs
from icdtransfer.data.medline import Citation, mesh_name_table, read_bioasq, read_medline
from icdtransfer.data.splits import SPLIT_NAMES, TRAIN, in_holdout, split_by_group, split_from_files
from icdtransfer.data.vocab import Vocabulary, build_vocabulary
from icdtransfer.progress import progress

log = logging.getLogger(__name__)


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while streaming millions of small, long-lived
    objects (token tables, code lists) that it would otherwise rescan again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def source_citations(cfg: SourceConfig) -> Iterator[Citation]:
    """Every citation of the configured source files, in order."""
    paths = resolve_inputs(cfg.input)
    if cfg.format == "medline":
        workers = cfg.workers or min(os.cpu_count() or 1, 8)
        return itertools.chain.from_iterable(read_medline(p, workers) for p in paths)
    names = mesh_name_table(resolve_inputs(cfg.mesh_names)) if cfg.mesh_names else None
    return itertools.chain.from_iterable(read_bioasq(p, names) for p in paths)


def prepare_source(cfg: SourceConfig, tokenizer: TokenizerConfig) -> dict:
    """Stage-1 corpus: abstracts with MeSH descriptors, minus the synthesizer's holdout.

    Citations without an abstract or without MeSH headings are skipped and counted. A PMID seen
    again (MEDLINE update files revise citations) replaces its earlier version.
    """
    skipped: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="icdtransfer-") as scratch, no_gc():
        spool = TokenSpool(Path(scratch) / "ids.i32")
        position: dict[str, int] = {}
        pmids: list[str] = []
        names: dict[str, str] = {}  # descriptor UI -> name, for the label table
        doc_codes: list[list[str]] = []
        parts: list[list[int]] = []
        read = 0
        for citation in progress(source_citations(cfg), "read source", "doc"):
            read += 1
            if in_holdout(citation.pmid, cfg.holdout, cfg.seed):
                skipped["holdout_for_synthesizer"] += 1
                continue
            if citation.text is None:
                skipped["no_abstract"] += 1
                continue
            if not citation.mesh:
                skipped["no_mesh"] += 1
                continue
            codes = icd.unique([ui or name for ui, name in citation.mesh])
            for ui, name in citation.mesh:
                names.setdefault(ui or name, name)
            part = spool.add(citation.text)
            if citation.pmid in position:
                skipped["superseded_by_later_version"] += 1
                i = position[citation.pmid]
                doc_codes[i], parts[i] = codes, [part]
                continue
            position[citation.pmid] = len(pmids)
            pmids.append(citation.pmid)
            doc_codes.append(codes)
            parts.append([part])
        if not pmids:
            raise InputError(cfg.input, None, f"no usable citations among {read} read")
        splits = split_by_group(pmids, cfg.validation_size, cfg.test_size, cfg.seed, "source")
        docs = pd.DataFrame({"doc_id": pmids, "patient_id": "", "split": _names(splits)})
        extra = {"read": read, "skipped": dict(skipped), "tokenizer_numbers": tokenizer.numbers}
        gathered = (spool, parts, docs, doc_codes, splits)
        stats = _finish(cfg, tokenizer, gathered, names, None, extra, cfg.vocab_min_count)
    log.info("%s", format_table1(stats, "PubMed source"))
    return stats


def prepare_target(cfg: TargetConfig, tokenizer: TokenizerConfig, source_dir: str) -> dict:
    """Stage-2 corpus: EMRs with codes, vocabulary extending the stage-1 vocabulary.

    Codes are normalised (dot inserted, truncated to `truncate_depth`), deduplicated per
    document, and dropped when in fewer than `min_count` training documents. Documents without
    any code, and admissions with codes but no note, are skipped and counted.
    """
    source_vocab = Path(source_dir) / "vocab.tsv"
    if not source_vocab.is_file():
        raise InputError(
            source_vocab,
            None,
            "no stage-1 vocabulary: run prepare-source first (the EMR vocabulary extends it)",
        )
    base = Vocabulary.load(source_vocab)
    normalise = icd.CodeNormalizer(cfg.code_system, cfg.truncate_depth, cfg.strict)
    read_stats = ReadStats()
    with tempfile.TemporaryDirectory(prefix="icdtransfer-") as scratch:
        spool = TokenSpool(Path(scratch) / "ids.i32")
        if cfg.format == "mimic":
            doc_ids, patients, doc_codes, parts = _read_mimic(cfg, normalise, spool, read_stats)
        else:
            doc_ids, patients, doc_codes, parts = _read_jsonl(cfg, normalise, spool, read_stats)
        missing: int | dict[str, int] = 0
        if cfg.benchmark is not None:
            doc_ids, patients, doc_codes, parts, splits, missing = benchmarks.apply(
                cfg, doc_ids, patients, doc_codes, parts
            )
        groups = [p if p else f"doc:{d}" for d, p in zip(doc_ids, patients, strict=True)]
        if cfg.benchmark is None and cfg.split_files is not None:
            splits, missing = split_from_files(
                doc_ids, cfg.split_files.validation, cfg.split_files.test
            )
        elif cfg.benchmark is None:
            splits = split_by_group(groups, cfg.validation_size, cfg.test_size, cfg.seed, "target")
        if cfg.top_codes:
            doc_codes = benchmarks.top_codes(doc_codes, splits, cfg.top_codes)
        docs = pd.DataFrame({"doc_id": doc_ids, "patient_id": patients, "split": _names(splits)})
        descriptions = icd.describe(sorted({c for cs in doc_codes for c in cs}), cfg.code_system)
        extra = {
            "skipped": dict(read_stats.counts),
            "invalid_codes": normalise.invalid_count,
            "records_with_replaced_bytes": read_stats.replaced,
            "split_ids_not_in_corpus": missing,
            "patients_in_two_splits": _shared_patients(docs),
            "tokenizer_numbers": tokenizer.numbers,
            "vocab_min_patients": cfg.vocab_min_patients,
            "min_count_scope": cfg.min_count_scope,
        }
        gathered = (spool, parts, docs, doc_codes, splits)
        stats = _finish(
            cfg, tokenizer, gathered, descriptions, base, extra, cfg.vocab_min_patients, groups
        )
    if normalise.invalid:
        log.warning(
            "%d code occurrences are not %s syntax and were skipped (%d distinct)",
            normalise.invalid_count,
            cfg.code_system,
            len(normalise.invalid),
        )
    log.info("%s", format_table1(stats, "EMR target"))
    return stats


def _read_mimic(
    cfg: TargetConfig, normalise: icd.CodeNormalizer, spool: TokenSpool, stats: ReadStats
) -> tuple[list[str], list[str], list[list[str]], list[list[int]]]:
    folder = Path(cfg.input)
    tables = [(find_table(folder, ["DIAGNOSES_ICD"]), False)]
    if cfg.procedures:
        tables.append((find_table(folder, ["PROCEDURES_ICD"]), True))
    codes: dict[str, list[str]] = {}
    code_patient: dict[str, str | None] = {}
    for path, procedure in tables:
        rows = read_code_table(path, cfg.code_system, procedure, cfg.encoding)
        for hadm, subject, raw, is_proc, where in rows:
            if raw.strip() == "":
                stats.counts["code_rows_empty_code"] += 1
                continue
            try:
                code = normalise(raw, procedure=is_proc)
            except icd.CodeSyntaxError as err:
                raise InputError(path, where, f"{err} (target.strict is true)") from None
            codes.setdefault(hadm, [])
            code_patient.setdefault(hadm, subject)
            if code is not None:
                codes[hadm].append(code)

    notes = find_table(folder, ["NOTEEVENTS", "discharge"])
    doc_parts: dict[str, list[tuple[tuple, int]]] = {}
    doc_patient: dict[str, str | None] = {}
    rows = read_notes(notes, cfg.categories, cfg.encoding, cfg.encoding_errors, stats)
    for part in progress(rows, "read notes", "note"):
        if part.doc_id not in codes:
            stats.counts["notes_of_admissions_without_codes"] += 1
            continue
        doc_parts.setdefault(part.doc_id, []).append((part.order, spool.add(part.text)))
        doc_patient.setdefault(part.doc_id, part.patient_id)
    stats.counts["admissions_with_codes_but_no_note"] = len(set(codes) - set(doc_parts))
    return _assemble(doc_parts, doc_patient, codes, stats)


def _read_jsonl(
    cfg: TargetConfig, normalise: icd.CodeNormalizer, spool: TokenSpool, stats: ReadStats
) -> tuple[list[str], list[str], list[list[str]], list[list[int]]]:
    codes: dict[str, list[str]] = {}
    doc_parts: dict[str, list[tuple[tuple, int]]] = {}
    doc_patient: dict[str, str | None] = {}
    first_seen: dict[str, str] = {}
    for path in resolve_inputs(cfg.input):
        records = read_jsonl(path, cfg.encoding, cfg.encoding_errors, stats)
        for part in progress(records, "read jsonl", "doc"):
            if part.doc_id in first_seen:
                raise InputError(
                    path,
                    part.where,
                    f"duplicate id {clip(part.doc_id)} (first at {first_seen[part.doc_id]})",
                )
            first_seen[part.doc_id] = part.where
            if not part.text.strip():
                stats.counts["records_with_empty_text"] += 1
                continue
            try:
                kept = [c for c in map(normalise, part.codes or []) if c is not None]
            except icd.CodeSyntaxError as err:
                raise InputError(path, part.where, f"{err} (target.strict is true)") from None
            codes[part.doc_id] = kept
            doc_parts[part.doc_id] = [(part.order, spool.add(part.text))]
            doc_patient[part.doc_id] = part.patient_id
    return _assemble(doc_parts, doc_patient, codes, stats)


def _assemble(
    doc_parts: dict[str, list[tuple[tuple, int]]],
    doc_patient: dict[str, str | None],
    codes: dict[str, list[str]],
    stats: ReadStats,
) -> tuple[list[str], list[str], list[list[str]], list[list[int]]]:
    """Documents in first-seen order; parts in order (report, then addenda by date and row)."""
    doc_ids, patients, doc_codes, parts = [], [], [], []
    for doc_id, pieces in doc_parts.items():
        unique_codes = icd.unique(codes.get(doc_id, []))
        if not unique_codes:
            stats.counts["documents_without_valid_code"] += 1
            continue
        doc_ids.append(doc_id)
        patients.append(doc_patient.get(doc_id) or "")
        doc_codes.append(unique_codes)
        parts.append([p for _, p in sorted(pieces)])
    if not doc_ids:
        raise InputError("target input", None, "no document has both text and a valid code")
    return doc_ids, patients, doc_codes, parts


def _names(splits: np.ndarray) -> list[str]:
    return [SPLIT_NAMES[s] for s in splits]


def _shared_patients(docs: pd.DataFrame) -> int:
    with_patient = docs[docs["patient_id"] != ""]
    return int((with_patient.groupby("patient_id")["split"].nunique() > 1).sum())


def _finish(
    cfg: SourceConfig | TargetConfig,
    tokenizer: TokenizerConfig,
    gathered: tuple[TokenSpool, list[list[int]], pd.DataFrame, list[list[str]], np.ndarray],
    descriptions: dict[str, str],
    base: Vocabulary | None,
    extra: dict,
    vocab_min_count: int,
    vocab_patients: list[str] | None = None,
) -> dict:
    """Labels, vocabulary and the corpus files (cfg's cuts, into cfg.out_dir), written whole
    or not at all. `gathered`: the token spool and, per document, its parts, its docs.tsv
    row, its codes and its split.

    With `vocab_patients` (each document's patient), `vocab_min_count` counts the distinct
    training patients whose notes hold a word, not its occurrences (EMR vocabularies ship in
    every model); PubMed's public text keeps the occurrence rule.
    """
    spool, parts, docs, doc_codes, splits = gathered
    numbers = tokenizer.numbers
    ids, offsets, raw = spool.finish()
    # PubMed descriptors are always counted in training abstracts; EMR codes per min_count_scope
    scope = cfg.min_count_scope if isinstance(cfg, TargetConfig) else "train"
    labelled = filter_labels(doc_codes, splits, cfg.min_count, scope)
    train = splits == TRAIN
    counts = train_counts(ids, offsets, parts, train, len(raw))
    patients = None
    if vocab_patients is not None:
        patients = train_patient_counts(ids, offsets, parts, train, vocab_patients, len(raw))
    vocab = build_vocabulary(
        raw, counts, numbers, vocab_min_count, cfg.vocab_max_size, base, patients=patients
    )
    with atomic_dir(cfg.out_dir) as tmp:
        stats = write_corpus(
            tmp,
            ids=ids,
            offsets=offsets,
            raw=raw,
            parts=parts,
            docs=docs,
            labelled=labelled,
            descriptions=descriptions,
            vocab=vocab,
            numbers=numbers,
            stats=extra,
        )
    ids.close()
    return stats
