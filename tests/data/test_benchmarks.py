"""MIMIC benchmark presets (issue 21): shipped split ids, label-set rules, the tolerance.

Fake MIMIC-III and MIMIC-IV folders hold a slice of each shipped split file's HADM_IDs (plus
admissions no benchmark lists); each preset must put every id in its split, drop the rest,
and apply its label set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from builders import DIAG_HEADER, NOTE_HEADER, write_csv
from icdtransfer.cli import main
from icdtransfer.config import load_params
from icdtransfer.data.benchmarks import BENCHMARKS, SPLITS_DIR, BenchmarkSplits, top_codes
from icdtransfer.data.codes import CodeSyntaxError, format_icd10pcs
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.errors import InputError
from icdtransfer.data.prepare import prepare_target
from icdtransfer.data.vocab import SPECIALS, Vocabulary

REPO = Path(__file__).resolve().parents[2]
PROC_HEADER = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"]
DISCHARGE_HEADER = [
    "note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"
]  # fmt: skip
DIAG_IV_HEADER = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
PROC_IV_HEADER = ["subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"]
UNLISTED = [1, 2, 3]  # HADM_IDs no benchmark lists (real ones have six or eight digits)
TRAIN_SLICE, EVAL_SLICE = 60, 12
# Diagnosis codes of rank k (0-based) are in the first 60 - k training documents, so the
# training frequencies are distinct and the top 50 are ranks 0..49.
RANKED = [f"{400 + k}" for k in range(TRAIN_SLICE)]
TEST_ONLY = "2501"  # in every evaluation document and one training document: not top-50


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    Vocabulary(list(SPECIALS), np.zeros(3, dtype=np.int64)).save(folder / "vocab.tsv")
    return folder


def id_slice(benchmark: str) -> dict[str, list[int]]:
    """The first ids (by id) of each split of a shipped file."""
    table = pd.read_parquet(SPLITS_DIR / f"{benchmark}.parquet")
    sizes = {"train": TRAIN_SLICE, "validation": EVAL_SLICE, "test": EVAL_SLICE}
    return {s: sorted(table[table["split"] == s]["hadm_id"])[:n] for s, n in sizes.items()}


def admissions(ids: dict[str, list[int]]) -> list[tuple[int, list[str], list[str]]]:
    """(HADM_ID, diagnosis codes, procedure codes) of every fake admission, undotted."""
    rows = []
    for j, hadm in enumerate(ids["train"]):
        diag = [c for k, c in enumerate(RANKED) if j < TRAIN_SLICE - k]
        rows.append((hadm, diag + ([TEST_ONLY] if j == 0 else []), ["3893"]))
    for hadm in ids["validation"] + ids["test"]:
        rows.append((hadm, [RANKED[0], TEST_ONLY], ["3893"]))
    rows.extend((hadm, [RANKED[0]], []) for hadm in UNLISTED)
    return rows


def mimic3(folder: Path, rows: list[tuple[int, list[str], list[str]]]) -> Path:
    folder.mkdir()
    notes, diags, procs = [], [], []
    for n, (hadm, diag, proc) in enumerate(rows):
        ds = "Discharge summary"
        notes.append([n, n, hadm, "2150-01-01", "", "", ds, "Report", "", "", "report words"])
        notes.append([n + 10**6, n, hadm, "2150-01-02", "", "", ds, "Addendum", "", "", "late"])
        diags.extend([len(diags), n, hadm, i, c] for i, c in enumerate(diag))
        procs.extend([len(procs), n, hadm, i, c] for i, c in enumerate(proc))
    write_csv(folder / "NOTEEVENTS.csv.gz", NOTE_HEADER, notes, compress=True)
    write_csv(folder / "DIAGNOSES_ICD.csv.gz", DIAG_HEADER, diags, compress=True)
    write_csv(folder / "PROCEDURES_ICD.csv.gz", PROC_HEADER, procs, compress=True)
    return folder


def mimic4(folder: Path, rows: list[tuple[int, list[str], list[str]]], version: int) -> Path:
    """MIMIC-IV layout; ICD-10 admissions get ICD-10 codes (and an ICD-9 row to skip)."""
    (folder / "note").mkdir(parents=True)
    (folder / "hosp").mkdir()
    notes, diags, procs = [], [], []
    for n, (hadm, diag, proc) in enumerate(rows):
        notes.append([f"{n}-DS-1", n, hadm, "DS", 1, "2180-01-01 00:00:00", "", "summary words"])
        if version == 10:
            diag = [f"I{int(c) % 100:02d}{k % 10}" for k, c in enumerate(diag)]
            proc = ["0DTJ4ZZ" for _ in proc]
            diags.append([n, hadm, 99, "4280", 9])
        diags.extend([n, hadm, i, c, version] for i, c in enumerate(diag))
        procs.extend([n, hadm, i, "2180-01-01", c, version] for i, c in enumerate(proc))
    write_csv(folder / "note" / "discharge.csv.gz", DISCHARGE_HEADER, notes, compress=True)
    write_csv(folder / "hosp" / "diagnoses_icd.csv.gz", DIAG_IV_HEADER, diags, compress=True)
    write_csv(folder / "hosp" / "procedures_icd.csv.gz", PROC_IV_HEADER, procs, compress=True)
    return folder


def fake_folder(benchmark: str, tmp_path: Path) -> tuple[Path, dict[str, list[int]]]:
    ids = id_slice(benchmark)
    rows = admissions(ids)
    if benchmark.startswith("mimic3"):
        return mimic3(tmp_path / "mimic", rows), ids
    return mimic4(tmp_path / "mimic", rows, 10 if benchmark.endswith("icd10") else 9), ids


def preset(name: str, folder: Path, out: Path, source: Path, tolerance: float | None = 1.0):
    sets = [f"target.input={folder}", f"target.out_dir={out}", f"source.out_dir={source}"]
    sets.append("target.vocab_min_patients=1")
    if tolerance is not None:
        sets.append(f"target.benchmark_tolerance={tolerance}")  # a slice misses most ids
    return load_params(REPO / "presets" / f"{name}.yaml", sets)


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_preset_puts_each_id_in_its_split(benchmark: str, tmp_path: Path, source_dir: Path):
    folder, ids = fake_folder(benchmark, tmp_path)
    params = preset(benchmark, folder, tmp_path / "out", source_dir)
    assert params.target.benchmark == benchmark
    stats = prepare_target(params.target, params.tokenizer, str(source_dir))
    corpus = Corpus.open(tmp_path / "out")
    got = dict(zip(corpus.docs["doc_id"], corpus.docs["split"], strict=True))
    want = {str(i): split for split, listed in ids.items() for i in listed}
    assert got == want  # every listed id in its split; the unlisted admissions dropped
    sizes = BenchmarkSplits.read(benchmark).sizes()
    missing = stats["split_ids_not_in_corpus"]
    assert missing["train"] == sizes["train"] - TRAIN_SLICE
    assert missing["test"] == sizes["test"] - EVAL_SLICE
    assert missing["not_in_benchmark"] == len(UNLISTED)
    codes = list(corpus.label_table["code"])
    if benchmark == "mimic3-50":
        # training frequencies: 38.93 and 400 60 each (tie: code order), 401 59, ..., 448 12,
        # 449 11; 250.1 is in every evaluation document but one training document
        assert codes == sorted(["38.93", *RANKED[:49]])
    elif benchmark == "mimic4-icd10":
        assert "0DTJ4ZZ" in codes  # ICD-10-PCS as stored, no dot
        assert all(c == "0DTJ4ZZ" or c.startswith("I") for c in codes)  # no ICD-9 row read
    else:
        assert "38.93" in codes and "400" in codes and "250.1" in codes  # proc + diag, dotted
    if benchmark.startswith("mimic3") and benchmark != "mimic3-50":
        # min_count (1 or 10) over all splits: rank 59 is in one document only
        assert ("459" in codes) == (params.target.min_count == 1)


def test_top_codes_ranks_by_training_frequency() -> None:
    docs = [["a", "b"], ["a", "c"], ["b", "c"], ["c"], ["z"], ["z"], ["z"]]
    splits = np.array([0, 0, 0, 0, 2, 2, 1])
    # train counts: c 3, a 2, b 2 (tie: code order), z 0 (evaluation documents only)
    assert top_codes(docs, splits, 2) == [["a"], ["a", "c"], ["c"], ["c"], [], [], []]


def test_missing_ids_over_tolerance_stop_with_counts(tmp_path: Path, source_dir: Path) -> None:
    folder, _ = fake_folder("mimic3-full", tmp_path)
    params = preset("mimic3-full", folder, tmp_path / "out", source_dir, tolerance=None)
    assert params.target.benchmark_tolerance == 0.005  # small by default
    with pytest.raises(InputError) as err:
        prepare_target(params.target, params.tokenizer, str(source_dir))
    message = str(err.value)
    assert "47663 of 47723 train ids" in message and "1619 of 1631 validation ids" in message
    assert "3360 of 3372 test ids" in message and "target.benchmark_tolerance" in message
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_reports_missing_ids_in_one_line(tmp_path: Path, source_dir: Path, capsys) -> None:
    folder, _ = fake_folder("mimic4-icd9", tmp_path)
    argv = ["prepare-target", "--params", str(REPO / "presets" / "mimic4-icd9.yaml")]
    for item in (f"target.input={folder}", f"target.out_dir={tmp_path / 'o'}"):
        argv += ["--set", item]
    argv += ["--set", f"source.out_dir={source_dir}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mimic4-icd9.parquet" in err[0] and "of 154542 train ids" in err[0]


def test_unknown_benchmark_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="target.benchmark: no such split file"):
        BenchmarkSplits.read("mimic3-nonesuch")


def test_shipped_files_hold_ids_only() -> None:
    for name in BENCHMARKS:
        table = pd.read_parquet(SPLITS_DIR / f"{name}.parquet")
        assert list(table.columns) == ["hadm_id", "split"]
        assert table["hadm_id"].is_unique and set(table["split"]) == {"train", "validation", "test"}
    readme = (SPLITS_DIR / "README.md").read_text()
    for source in ("jamesmullenbach/caml-mimic", "JoakimEdin/medical-coding-reproducibility"):
        assert source in readme
    assert "44a47455070d3d5c6ee69fb5305e32caec104960" in readme and "MIT License" in readme
    assert "c0e1d4261f73ea36deae0392c7fe3bf1486ab981" in readme and "Apache License 2.0" in readme


def test_icd10_pcs_codes_are_kept_as_stored() -> None:
    assert format_icd10pcs(" 0dtj4zz ") == "0DTJ4ZZ"
    for bad in ("0DTJ4Z", "0DTI4ZZ", "0DT.J4ZZ"):  # six characters; the letter I; a dot
        with pytest.raises(CodeSyntaxError, match="not an ICD-10-PCS code"):
            format_icd10pcs(bad)
