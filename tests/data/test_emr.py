"""MIMIC-III and JSONL readers: joins, drops, codes as text, and every bad-input case."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from builders import DIAG_HEADER, NOTE_HEADER, write_csv, write_jsonl
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.errors import InputError, clip
from icdtransfer.data.prepare import prepare_target
from icdtransfer.data.tokenizer import tokenize
from icdtransfer.data.vocab import SPECIALS, Vocabulary

DS = "Discharge summary"


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A stage-1 vocabulary of just the special tokens (prepare_target extends it)."""
    folder = tmp_path / "source"
    folder.mkdir()
    Vocabulary(list(SPECIALS), np.zeros(3, dtype=np.int64)).save(folder / "vocab.tsv")
    return folder


def mimic(folder: Path, notes: list[list], diagnoses: list[list], compress: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    ext = ".csv.gz" if compress else ".csv"
    write_csv(folder / f"NOTEEVENTS{ext}", NOTE_HEADER, notes, compress)
    write_csv(folder / f"DIAGNOSES_ICD{ext}", DIAG_HEADER, diagnoses, compress)
    return folder


def target_cfg(params, folder: Path, out: Path, **kw):
    # Everything in training, so every word is in the vocabulary and every code counts.
    base = dict(
        input=str(folder),
        out_dir=str(out),
        min_count=1,
        validation_size=0,
        test_size=0,
        vocab_min_patients=1,
    )
    return replace(params.target, **{**base, **kw})


def fixture_rows() -> tuple[list[list], list[list]]:
    notes = [
        # admission 100: report + addendum (addendum listed first; joined after the report)
        [3, 1, 100, "2150-01-03", "", "", DS, "Addendum", "", "", "late addendum words"],
        [1, 1, 100, "2150-01-02", "", "", DS, "Report", "", "", "first report words"],
        [2, 1, 100, "2150-01-02", "", "", "Radiology", "CHEST", "", "", "radiology words"],
        # an ISERROR copy for admission 101, then its real report
        [4, 2, 101, "2150-02-01", "", "", DS, "Report", "", 1, "erroneous words"],
        [5, 2, 101, "2150-02-01", "", "", DS, "Report", "", "", "second admission words"],
        [6, 3, 102, "2150-03-01", "", "", DS, "Report", "", "", "third admission words"],
        [7, 4, 104, "2150-04-01", "", "", DS, "Report", "", "", "fourth admission words"],
        # a note with no codes anywhere
        [8, 5, 105, "2150-05-01", "", "", DS, "Report", "", "", "uncoded words"],
    ]
    diagnoses = [
        [1, 1, 100, 1, "4280"],
        [2, 1, 100, 2, "42821"],
        [3, 1, 100, 3, "42823"],  # 428.2 twice
        [4, 2, 101, 1, "0389"],
        [5, 2, 101, 2, "4280"],
        [6, 3, 102, 1, "4280"],
        [7, 3, 102, 2, "12"],  # "12" is not ICD-9 syntax
        [8, 6, 103, 1, "4019"],  # admission without a note
        [9, 4, 104, 1, "V3001"],
    ]
    return notes, diagnoses


def test_mimic_joins_drops_and_dedups(params, tmp_path: Path, source_dir: Path) -> None:
    notes, diagnoses = fixture_rows()
    folder = mimic(tmp_path / "mimic", notes, diagnoses)
    out = tmp_path / "out"
    stats = prepare_target(target_cfg(params, folder, out), params.tokenizer, str(source_dir))
    corpus = Corpus.open(out)
    assert list(corpus.docs["doc_id"]) == ["100", "101", "102", "104"]
    words = [[corpus.vocab.tokens[i] for i in corpus.document(d)] for d in range(len(corpus))]
    assert words[0] == tokenize("first report words late addendum words")  # report, then addendum
    assert words[1] == tokenize("second admission words")  # the ISERROR row is gone
    codes = corpus.label_table["code"].tolist()
    assert codes == ["038.9", "428.0", "428.2", "V30.0"]
    doc_codes = [sorted(codes[j] for j in corpus.labels[d].indices) for d in range(len(corpus))]
    assert doc_codes[0] == ["428.0", "428.2"]  # 42821 and 42823 truncate to one label
    assert doc_codes[1] == ["038.9", "428.0"]  # 0389 read as text, not the number 389
    assert stats["invalid_codes"] == 1
    assert stats["skipped"]["note_rows_iserror"] == 1
    assert stats["skipped"]["note_rows_other_category"] == 1
    assert stats["skipped"]["admissions_with_codes_but_no_note"] == 1
    assert stats["skipped"]["notes_of_admissions_without_codes"] == 1
    assert stats["instances"] == 4 and stats["label_cardinality"] == 1.5  # (2 + 2 + 1 + 1) / 4


# MIMIC-IV's own layouts: hosp/diagnoses_icd and MIMIC-IV-Note's note/discharge
DISCHARGE_HEADER = [
    "note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"
]  # fmt: skip
DIAG_IV_HEADER = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]


def mimic4(folder: Path, notes: list[list], diagnoses: list[list]) -> Path:
    (folder / "note").mkdir(parents=True)
    (folder / "hosp").mkdir()
    write_csv(folder / "note" / "discharge.csv.gz", DISCHARGE_HEADER, notes, compress=True)
    write_csv(folder / "hosp" / "diagnoses_icd.csv.gz", DIAG_IV_HEADER, diagnoses, compress=True)
    return folder


def test_mimic4_discharge_notes_and_icd10(params, tmp_path: Path, source_dir: Path) -> None:
    t = "2180-05-06 00:00:00"
    notes = [
        # admission 200: an addendum listed before its summary, and a second summary
        ["11-AD-1", 11, 200, "AD", 1, t, "", "addendum words"],
        ["11-DS-2", 11, 200, "DS", 2, t, "", "later summary words"],
        ["11-DS-1", 11, 200, "DS", 1, t, "", "first summary words"],
        ["12-DS-1", 12, 201, "DS", 1, t, "", "heart failure words"],
        ["13-DS-1", 13, 202, "DS", 1, t, "", "only ninth revision words"],
    ]
    diagnoses = [
        [11, 200, 1, "I509", 10],
        [11, 200, 2, "E1165", 10],
        [11, 200, 3, "4280", 9],  # an ICD-9 row: skipped when reading ICD-10-CM
        [12, 201, 1, "I5022", 10],
        [13, 202, 1, "4019", 9],  # only ICD-9 codes: not an ICD-10 document
    ]
    folder = mimic4(tmp_path / "mimic-iv", notes, diagnoses)
    out = tmp_path / "out"
    cfg = target_cfg(params, folder, out, code_system="icd10", truncate_depth=1)
    stats = prepare_target(cfg, params.tokenizer, str(source_dir))
    corpus = Corpus.open(out)
    assert list(corpus.docs["doc_id"]) == ["200", "201"]
    assert list(corpus.docs["patient_id"]) == ["11", "12"]
    words = [[corpus.vocab.tokens[i] for i in corpus.document(d)] for d in range(len(corpus))]
    assert words[0] == tokenize("first summary words later summary words addendum words")
    codes = corpus.label_table["code"].tolist()
    assert codes == ["E11.6", "I50.2", "I50.9"]  # E1165 truncated to depth 1; 4280 not read
    doc_codes = [sorted(codes[j] for j in corpus.labels[d].indices) for d in range(len(corpus))]
    assert doc_codes == [["E11.6", "I50.9"], ["I50.2"]]
    assert stats["skipped"]["notes_of_admissions_without_codes"] == 1
    assert stats["invalid_codes"] == 0


def test_mimic4_missing_column_names_the_file(params, tmp_path: Path, source_dir: Path) -> None:
    notes = [["11-DS-1", 11, 200, "DS", 1, "2180-05-06", "", "words"]]
    folder = mimic4(tmp_path / "m", notes, [[11, 200, 1, "I509", 10]])
    header = [c for c in DISCHARGE_HEADER if c != "note_seq"]
    write_csv(folder / "note" / "discharge.csv.gz", header, [notes[0][:4] + notes[0][5:]], True)
    out = tmp_path / "out"
    with pytest.raises(
        InputError, match=r"discharge\.csv\.gz: header: missing required column\(s\) NOTE_SEQ"
    ):
        prepare_target(
            target_cfg(params, folder, out, code_system="icd10"), params.tokenizer, str(source_dir)
        )
    assert not out.exists()


def test_uncompressed_csv_and_strict_codes(params, tmp_path: Path, source_dir: Path) -> None:
    notes, diagnoses = fixture_rows()
    folder = mimic(tmp_path / "plain", notes, diagnoses, compress=False)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"DIAGNOSES_ICD\.csv: ROW_ID 7: '12' is not an ICD-9"):
        prepare_target(
            target_cfg(params, folder, out, strict=True), params.tokenizer, str(source_dir)
        )
    assert not out.exists()


def test_missing_column_is_an_error(params, tmp_path: Path, source_dir: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    write_csv(
        folder / "NOTEEVENTS.csv",
        [h for h in NOTE_HEADER if h != "ISERROR"],
        [[1, 1, 100, "2150-01-02", "", "", DS, "Report", "", "text"]],
    )
    write_csv(folder / "DIAGNOSES_ICD.csv", DIAG_HEADER, [[1, 1, 100, 1, "4280"]])
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"NOTEEVENTS\.csv: header: missing required column"):
        prepare_target(target_cfg(params, folder, out), params.tokenizer, str(source_dir))
    assert not out.exists()


def test_empty_table_is_an_error(params, tmp_path: Path, source_dir: Path) -> None:
    folder = mimic(tmp_path / "m", [], [[1, 1, 100, 1, "4280"]], compress=False)
    with pytest.raises(InputError, match="empty input"):
        prepare_target(
            target_cfg(params, folder, tmp_path / "o"), params.tokenizer, str(source_dir)
        )
    (folder / "NOTEEVENTS.csv").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        prepare_target(
            target_cfg(params, folder, tmp_path / "o"), params.tokenizer, str(source_dir)
        )
    assert not (tmp_path / "o").exists()


def test_truncated_gzip_csv(params, tmp_path: Path, source_dir: Path) -> None:
    notes, diagnoses = fixture_rows()
    notes = notes * 200
    folder = mimic(tmp_path / "m", notes, diagnoses)
    data = (folder / "NOTEEVENTS.csv.gz").read_bytes()
    (folder / "NOTEEVENTS.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"NOTEEVENTS\.csv\.gz: line \d+: truncated gzip"):
        prepare_target(
            target_cfg(params, folder, tmp_path / "o"), params.tokenizer, str(source_dir)
        )
    assert not (tmp_path / "o").exists()


def test_undecodable_bytes_fail_or_are_replaced(params, tmp_path: Path, source_dir: Path) -> None:
    notes, diagnoses = fixture_rows()
    folder = mimic(tmp_path / "m", notes, diagnoses, compress=False)
    path = folder / "NOTEEVENTS.csv"
    path.write_bytes(path.read_bytes().replace(b"second admission", b"second adm\xe9ssion"))
    out = tmp_path / "o"
    with pytest.raises(InputError, match=r"NOTEEVENTS\.csv: ROW_ID 5: byte 0xe9"):
        prepare_target(target_cfg(params, folder, out), params.tokenizer, str(source_dir))
    assert not out.exists()
    stats = prepare_target(
        target_cfg(params, folder, out, encoding_errors="replace"),
        params.tokenizer,
        str(source_dir),
    )
    assert stats["records_with_replaced_bytes"] == 1
    latin = prepare_target(
        target_cfg(params, folder, tmp_path / "l", encoding="latin-1"),
        params.tokenizer,
        str(source_dir),
    )
    assert latin["records_with_replaced_bytes"] == 0


def jsonl_cfg(params, path: Path, out: Path, **kw):
    return target_cfg(params, path, out, format="jsonl", **kw)


def test_jsonl_reads_codes_and_patients(params, tmp_path: Path, source_dir: Path) -> None:
    path = write_jsonl(
        tmp_path / "notes.jsonl",
        [
            {
                "id": "a",
                "text": "alpha words",
                "codes": ["I509", "I50.9", "E1165"],
                "patient_id": 1,
            },
            {"id": "b", "text": "beta words", "codes": ["E1165"], "patient_id": 1},
            {"id": 3, "text": "gamma words", "codes": ["I509"]},
            {"id": "d", "text": "delta words", "codes": []},
            {"id": "e", "text": "", "codes": ["I509"]},
        ],
    )
    stats = prepare_target(
        jsonl_cfg(params, path, tmp_path / "o", code_system="icd10"),
        params.tokenizer,
        str(source_dir),
    )
    corpus = Corpus.open(tmp_path / "o")
    assert list(corpus.docs["doc_id"]) == ["a", "b", "3"]
    assert corpus.label_table["code"].tolist() == ["E11.6", "I50.9"]
    assert corpus.labels[0].nnz == 2  # I509 and I50.9 are one code
    assert stats["skipped"] == {"records_with_empty_text": 1, "documents_without_valid_code": 1}
    assert corpus.docs.loc[0, "split"] == corpus.docs.loc[1, "split"]  # same patient


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("[1, 2]", "a record must be a JSON object, got list"),
        ('{"id": "x", "codes": []}', "record has no 'text' field"),
        ('{"id": "x", "text": "t"}', "record has no 'codes' field"),
        ('{"id": "x", "text": "t", "codes": "4280"}', "'codes' must be a list of strings"),
        ('{"id": "x", "text": 5, "codes": []}', "'text' must be a string"),
        ('{"id": "x", "text": "t", ', "not valid JSON"),
    ],
)
def test_jsonl_bad_lines(params, tmp_path: Path, source_dir: Path, line: str, problem: str) -> None:
    path = write_jsonl(
        tmp_path / "n.jsonl", [{"id": "ok", "text": "fine", "codes": ["4280"]}, line]
    )
    out = tmp_path / "o"
    with pytest.raises(InputError) as err:
        prepare_target(jsonl_cfg(params, path, out), params.tokenizer, str(source_dir))
    assert str(err.value).startswith(f"{path}: line 2: {problem}")
    assert not out.exists()


def test_jsonl_empty_duplicate_and_bad_bytes(params, tmp_path: Path, source_dir: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="empty input: no records"):
        prepare_target(jsonl_cfg(params, empty, tmp_path / "o"), params.tokenizer, str(source_dir))
    dup = write_jsonl(
        tmp_path / "dup.jsonl",
        [{"id": "x", "text": "a", "codes": ["4280"]}, {"id": "x", "text": "b", "codes": ["4280"]}],
    )
    with pytest.raises(InputError, match="line 2: duplicate id x"):
        prepare_target(jsonl_cfg(params, dup, tmp_path / "o"), params.tokenizer, str(source_dir))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "x", "text": "caf\xe9", "codes": ["4280"]}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl: line 1: byte 0xe9"):
        prepare_target(jsonl_cfg(params, bad, tmp_path / "o"), params.tokenizer, str(source_dir))
    assert not (tmp_path / "o").exists()


def test_missing_input_files(params, tmp_path: Path, source_dir: Path) -> None:
    with pytest.raises(InputError, match=r"no DIAGNOSES_ICD\.csv\[\.gz\] in this folder"):
        prepare_target(
            target_cfg(params, tmp_path, tmp_path / "o"), params.tokenizer, str(source_dir)
        )
    with pytest.raises(InputError, match="file not found"):
        prepare_target(
            jsonl_cfg(params, tmp_path / "nope.jsonl", tmp_path / "o"),
            params.tokenizer,
            str(source_dir),
        )


# Note text where an id or a code belongs, as an export with shifted columns delivers it.
SHIFTED_TEXT = "Patient Johanna Testperson, 67, admitted with chest pain after a fall at home"


def _assert_no_text(message: str) -> None:
    for fragment in ("Johanna", "Testperson", "chest pain", "admitted"):
        assert fragment not in message
    assert len(message) < 250


def test_shifted_note_columns_never_put_note_text_in_the_error(
    params, tmp_path: Path, source_dir: Path
) -> None:
    notes, diagnoses = fixture_rows()
    # TEXT and ROW_ID swapped in one row: the ROW_ID field holds the note
    notes.append([SHIFTED_TEXT, 6, 106, "2150-06-01", "", "", DS, "Report", "", "", "9"])
    folder = mimic(tmp_path / "shifted", notes, diagnoses, compress=False)
    with pytest.raises(InputError) as err:
        cfg = target_cfg(params, folder, tmp_path / "o")
        prepare_target(cfg, params.tokenizer, str(source_dir))
    message = str(err.value)
    assert "NOTEEVENTS.csv: line 10: ROW_ID 'Pati" in message and "is not an integer" in message
    _assert_no_text(message)


def test_shifted_code_columns_never_put_note_text_in_the_error(
    params, tmp_path: Path, source_dir: Path
) -> None:
    notes, diagnoses = fixture_rows()
    diagnoses.insert(0, [SHIFTED_TEXT, 1, 100, 4, SHIFTED_TEXT])  # ROW_ID and code hold text
    folder = mimic(tmp_path / "shifted", notes, diagnoses, compress=False)
    with pytest.raises(InputError) as err:
        cfg = target_cfg(params, folder, tmp_path / "o", strict=True)
        prepare_target(cfg, params.tokenizer, str(source_dir))
    message = str(err.value)
    assert "DIAGNOSES_ICD.csv: ROW_ID Pati" in message and "is not an ICD-9" in message
    _assert_no_text(message)


def test_long_jsonl_ids_are_cut_in_errors(params, tmp_path: Path, source_dir: Path) -> None:
    dup = write_jsonl(
        tmp_path / "dup.jsonl",
        [{"id": SHIFTED_TEXT, "text": "a", "codes": ["4280"]}] * 2,
    )
    with pytest.raises(InputError) as err:
        prepare_target(jsonl_cfg(params, dup, tmp_path / "o"), params.tokenizer, str(source_dir))
    assert "line 2: duplicate id Pati" in str(err.value)
    _assert_no_text(str(err.value))


def test_clip_keeps_ids_and_codes_whole_and_cuts_anything_else() -> None:
    for value in ("1234", "428.21", "E11.65", "10000032-DS-21", "V30.01"):
        assert clip(value) == value
    assert clip(SHIFTED_TEXT) == f"Pati…[{len(SHIFTED_TEXT)} characters]"
    assert clip("Smith, John") == "Smit…[11 characters]"
