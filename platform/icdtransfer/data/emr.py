"""EMR readers (stage-2 target corpus): MIMIC CSV tables and generic JSONL, streaming.

Both yield `NotePart`s: pieces of a document's text with an order key. MIMIC documents are
admissions (HADM_ID): their discharge summaries and addenda are joined in that order by the
corpus builder, so no note text is ever held for more than one row at a time. The notes table
is MIMIC-III's NOTEEVENTS or MIMIC-IV-Note's discharge table, told apart by their headers.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from icdtransfer.data.errors import InputError, clip
from icdtransfer.data.files import check_text, compressed_stream_errors, open_binary

NOTE_COLUMNS = (
    "ROW_ID",
    "SUBJECT_ID",
    "HADM_ID",
    "CHARTDATE",
    "CATEGORY",
    "DESCRIPTION",
    "ISERROR",
    "TEXT",
)
# MIMIC-IV-Note `note/discharge.csv.gz`: discharge summaries (note_type DS) and addenda (AD)
NOTE_COLUMNS_IV = ("NOTE_ID", "SUBJECT_ID", "HADM_ID", "NOTE_TYPE", "NOTE_SEQ", "CHARTTIME", "TEXT")
DIAGNOSIS_COLUMNS = ("SUBJECT_ID", "HADM_ID")


@dataclass(slots=True)
class NotePart:
    doc_id: str
    patient_id: str | None
    order: tuple  # sort key inside the document: reports before addenda, then date, then row
    text: str
    where: str  # how errors name this record ("ROW_ID 17", "line 3")
    codes: list[str] | None = None  # JSONL carries codes inline; MIMIC reads them separately


@dataclass
class ReadStats:
    """Rows read and rows skipped, by reason; never any text."""

    counts: Counter = field(default_factory=Counter)
    replaced: int = 0  # records whose undecodable bytes became U+FFFD (encoding_errors: replace)


def _csv_rows(path: Path, encoding: str, label: str) -> Iterator[tuple[dict[str, int], list, int]]:
    """Rows of a CSV file with a case-insensitive header map; yields (columns, row, line)."""
    csv.field_size_limit(sys.maxsize)  # real discharge summaries exceed csv's 128 KiB default
    with open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="")
        reader = csv.reader(text)
        line = {"n": 1}
        with compressed_stream_errors(path, lambda: f"line {line['n']}"):
            try:
                header = next(reader, None)
            except csv.Error as err:
                raise InputError(path, "line 1", f"malformed CSV header: {err}") from None
            if not header:
                raise InputError(path, None, f"empty file: no header and no {label} rows")
            columns = {name.strip().upper(): i for i, name in enumerate(header)}
            try:
                for row in reader:
                    line["n"] = reader.line_num
                    if len(row) != len(header):
                        raise InputError(
                            path,
                            f"line {reader.line_num}",
                            f"{len(row)} fields where the header has {len(header)}",
                        )
                    yield columns, row, reader.line_num
            except csv.Error as err:
                raise InputError(path, f"line {reader.line_num}", f"malformed CSV: {err}") from None


def _require(path: Path, columns: dict[str, int], names: tuple[str, ...]) -> None:
    missing = [n for n in names if n not in columns]
    if missing:
        raise InputError(path, "header", f"missing required column(s) {', '.join(missing)}")


def read_notes(
    path: Path, categories: list[str], encoding: str, errors: str, stats: ReadStats
) -> Iterator[NotePart]:
    """Discharge summaries and their addenda, one row at a time.

    MIMIC-III NOTEEVENTS: rows in the wanted categories (e.g. "Discharge summary"); ISERROR rows
    (a physician marked the note as an error) are dropped; rows without HADM_ID cannot be
    linked to codes and are skipped; addenda (DESCRIPTION "Addendum") follow the report.
    MIMIC-IV-Note discharge (a NOTE_ID column): every row is a discharge summary (NOTE_TYPE DS)
    or an addendum (AD), so `categories` does not apply; addenda follow the summaries, each in
    NOTE_SEQ order. Skips are counted in `stats`.
    """
    wanted = {c.strip().lower() for c in categories}
    rows = 0
    mimic4 = False
    for columns, row, line in _csv_rows(path, encoding, "note"):
        if rows == 0:
            mimic4 = "NOTE_ID" in columns
            _require(path, columns, NOTE_COLUMNS_IV if mimic4 else NOTE_COLUMNS)
        rows += 1
        if mimic4:
            part = _mimic4_part(path, columns, row, line, errors, stats)
        else:
            part = _mimic3_part(path, columns, row, line, wanted, errors, stats)
        if part is not None:
            yield part
    if rows == 0:
        raise InputError(path, None, "empty input: a header but no note rows")


def _mimic3_part(
    path: Path,
    columns: dict[str, int],
    row: list[str],
    line: int,
    wanted: set[str],
    errors: str,
    stats: ReadStats,
) -> NotePart | None:
    row_id = row[columns["ROW_ID"]].strip()
    where = f"ROW_ID {clip(row_id)}" if row_id else f"line {line}"
    if row[columns["CATEGORY"]].strip().lower() not in wanted:
        stats.counts["note_rows_other_category"] += 1
        return None
    if row[columns["ISERROR"]].strip() not in ("", "0"):
        stats.counts["note_rows_iserror"] += 1
        return None
    is_addendum = row[columns["DESCRIPTION"]].strip().lower().startswith("addendum")
    try:
        order = (int(is_addendum), row[columns["CHARTDATE"]].strip(), int(row_id))
    except ValueError:
        problem = f"ROW_ID {clip(row_id)!r} is not an integer"
        raise InputError(path, f"line {line}", problem) from None
    return _admission_part(path, columns, row, where, order, errors, stats)


def _mimic4_part(
    path: Path, columns: dict[str, int], row: list[str], line: int, errors: str, stats: ReadStats
) -> NotePart | None:
    note_id = row[columns["NOTE_ID"]].strip()
    where = f"note_id {clip(note_id)}" if note_id else f"line {line}"
    note_type = row[columns["NOTE_TYPE"]].strip().upper()
    if note_type not in ("DS", "AD"):
        stats.counts["note_rows_other_type"] += 1
        return None
    seq = row[columns["NOTE_SEQ"]].strip()
    try:
        order = (int(note_type == "AD"), int(seq), row[columns["CHARTTIME"]].strip())
    except ValueError:
        raise InputError(path, where, f"note_seq {clip(seq)!r} is not an integer") from None
    return _admission_part(path, columns, row, where, order, errors, stats)


def _admission_part(
    path: Path,
    columns: dict[str, int],
    row: list[str],
    where: str,
    order: tuple,
    errors: str,
    stats: ReadStats,
) -> NotePart | None:
    """The note as a part of its admission (HADM_ID), or None (counted) without one."""
    hadm = row[columns["HADM_ID"]].strip()
    if not hadm:
        stats.counts["note_rows_without_hadm_id"] += 1
        return None
    text, replaced = check_text(row[columns["TEXT"]], path, where, errors)
    stats.replaced += replaced
    patient = row[columns["SUBJECT_ID"]].strip() or None
    return NotePart(_id(hadm), patient, order, text, where)


def read_code_table(
    path: Path, system: str, procedure: bool, encoding: str
) -> Iterator[tuple[str, str | None, str, bool, str]]:
    """(HADM_ID, SUBJECT_ID, code, is_procedure, where) from DIAGNOSES_ICD / PROCEDURES_ICD.

    Codes are read as text, never as numbers (0389 keeps its leading zero). MIMIC-III's
    ICD9_CODE column and MIMIC-IV's ICD_CODE + ICD_VERSION columns are both understood; with
    ICD_VERSION, rows of the other ICD version are skipped.
    """
    rows = 0
    for columns, row, line in _csv_rows(path, encoding, "code"):
        if rows == 0:
            _require(path, columns, DIAGNOSIS_COLUMNS)
            if "ICD9_CODE" not in columns and "ICD_CODE" not in columns:
                raise InputError(path, "header", "missing required column ICD9_CODE (or ICD_CODE)")
        rows += 1
        code_col = columns.get("ICD9_CODE", columns.get("ICD_CODE"))
        version_col = columns.get("ICD_VERSION")
        if version_col is not None and system in ("icd9", "icd10"):
            if row[version_col].strip() != system[3:]:
                continue
        row_id = row[columns["ROW_ID"]].strip() if "ROW_ID" in columns else ""
        where = f"ROW_ID {clip(row_id)}" if row_id else f"line {line}"
        code, _ = check_text(row[code_col], path, where, "strict")
        yield (
            _id(row[columns["HADM_ID"]].strip()),
            row[columns["SUBJECT_ID"]].strip() or None,
            code,
            procedure,
            where,
        )
    if rows == 0:
        raise InputError(path, None, "empty input: a header but no code rows")


def _id(value: str) -> str:
    """MIMIC ids are integers; some exports write them as floats ("100001.0")."""
    return value[:-2] if value.endswith(".0") else value


def read_jsonl(
    path: Path, encoding: str, errors: str, stats: ReadStats, require_codes: bool = True
) -> Iterator[NotePart]:
    """Records of a JSONL file: {"id", "text", "codes": [...], "patient_id"?} per line
    ("codes" optional when `require_codes` is false, as for prediction).

    A line that is not a JSON object, lacks a field or has a field of the wrong type is an
    InputError naming the line. Blank lines are ignored.
    """
    records = 0
    with open_binary(path) as stream:
        lineno = 0
        with compressed_stream_errors(path, lambda: f"line {lineno + 1}"):
            for lineno, raw in enumerate(stream, start=1):  # noqa: B007 - used by the lambda
                if not raw.strip():
                    continue
                where = f"line {lineno}"
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as err:
                    if errors == "strict":
                        raise InputError(
                            path,
                            where,
                            f"byte 0x{raw[err.start]:02x} at byte {err.start} is not valid "
                            f"{encoding} (set target.encoding_errors: replace to substitute it)",
                        ) from None
                    line = raw.decode(encoding, errors="replace")
                    stats.replaced += 1
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(path, where, f"not valid JSON ({err.msg})") from None
                yield _jsonl_record(obj, path, where, require_codes)
                records += 1
    if records == 0:
        raise InputError(path, None, "empty input: no records")


def _jsonl_record(obj: object, path: Path, where: str, require_codes: bool) -> NotePart:
    if not isinstance(obj, dict):
        raise InputError(path, where, f"a record must be a JSON object, got {type(obj).__name__}")
    for key in ("id", "text", "codes") if require_codes else ("id", "text"):
        if key not in obj:
            raise InputError(path, where, f"record has no {key!r} field")
    doc_id, text, codes = obj["id"], obj["text"], obj.get("codes", [])
    if not isinstance(doc_id, str | int) or isinstance(doc_id, bool) or str(doc_id) == "":
        raise InputError(path, where, "'id' must be a non-empty string or an integer")
    if not isinstance(text, str):
        raise InputError(path, where, "'text' must be a string")
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise InputError(path, where, "'codes' must be a list of strings")
    patient = obj.get("patient_id")
    if patient is not None and (not isinstance(patient, str | int) or isinstance(patient, bool)):
        raise InputError(path, where, "'patient_id' must be a string or an integer")
    return NotePart(
        str(doc_id), None if patient is None else str(patient), (0,), text, where, codes
    )


def find_table(folder: Path, tables: list[str]) -> Path:
    """The first of `tables` found in `folder`, or in its MIMIC-IV module subfolders (`hosp/`
    for diagnoses, `note/` for discharge notes), as .csv.gz or .csv, in upper or lower case."""
    for table in tables:
        for where in (folder, folder / "hosp", folder / "note"):
            for name in (table.upper(), table.lower()):
                for ext in (".csv.gz", ".csv"):
                    if (where / f"{name}{ext}").is_file():
                        return where / f"{name}{ext}"
    wanted = " or ".join(f"{t}.csv[.gz]" for t in tables)
    raise InputError(folder, None, f"no {wanted} in this folder (nor in hosp/ or note/)")
