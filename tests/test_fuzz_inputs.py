"""A property-based fuzzer over every input the CLI reads (hypothesis, derandomized: the same
cases on every run). Whatever the corruption (truncations, byte flips, inserted and deleted
bytes in MEDLINE XML, MIMIC CSVs and JSONL; wrong types and out-of-range values in study
files and params; split sizes beyond the corpus), the input either reads as valid or fails
with the CLI's bad-input error (ConfigError / InputError: exit 2) whose message is one line
naming the file or the key, never another exception (a traceback); a stage that fails writes
nothing. Cases run in this process, through the functions the CLI calls; the last tests run
a few of them through `python -m icdtransfer` to prove the exit code and the one line.

Cases in the fast suite: 150 MEDLINE, 60 MIMIC notes, 40 MIMIC codes, 130 JSONL, 30 stage
runs on corrupt MIMIC and JSONL, 20 split sizes, 100 study files, 100 params: 630.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import DIAG_HEADER, NOTE_HEADER, tiny_medline, tiny_target_jsonl, write_csv
from icdtransfer.config import ConfigError, Params, load_params
from icdtransfer.data.emr import ReadStats, read_code_table, read_jsonl, read_notes
from icdtransfer.data.errors import InputError
from icdtransfer.data.medline import read_medline
from icdtransfer.sweep.study import load_study

REPO = Path(__file__).resolve().parents[1]
BAD_INPUT = (ConfigError, InputError)  # what cli.py prints as one line, with exit 2
COUNTER = itertools.count()


def _settings(n: int):
    return settings(
        max_examples=n,
        derandomize=True,  # deterministic: the same cases every run
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@st.composite
def corrupted(draw, data: bytes) -> bytes:
    """`data` truncated, with bytes flipped, inserted or deleted (one to three times)."""
    for _ in range(draw(st.integers(1, 3))):
        n = len(data)
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        at = draw(st.integers(0, max(0, n - 1)))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip" and n:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        else:
            data = data[:at] + data[at + draw(st.integers(1, 64)) :]
    return data


def _case(folder: Path, name: str, data: bytes) -> Path:
    path = folder / f"case{next(COUNTER)}-{name}"
    path.write_bytes(data)
    return path


def check_bad_input(run, names: str | list[str]) -> None:
    """`run()` succeeds, or fails with one line of bad-input error naming one of `names`."""
    try:
        run()
    except BAD_INPUT as err:
        message = str(err)
        assert "\n" not in message, message
        wanted = [names] if isinstance(names, str) else names
        assert any(name in message for name in wanted), (message, wanted)


_CLEAN: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    _CLEAN.update(_clean(folder))
    return folder


def _clean(work: Path) -> dict[str, bytes]:
    """The valid inputs each case corrupts (kept out of the tests' arguments, which
    hypothesis prints with a failing case)."""
    notes = [
        [i, i // 2, 100 + i, "2150-01-02", "", "", "Discharge summary", "Report", "", "", f"w{i}"]
        for i in range(1, 7)
    ]
    codes = [[i, i // 2, 100 + i, 1, f"428{i}"] for i in range(1, 7)]
    return {
        "medline": tiny_medline(work / "m.xml", n=12).read_bytes(),
        "notes": write_csv(work / "NOTEEVENTS.csv", NOTE_HEADER, notes).read_bytes(),
        "codes": write_csv(work / "DIAGNOSES_ICD.csv", DIAG_HEADER, codes).read_bytes(),
        "jsonl": tiny_target_jsonl(work / "t.jsonl", n=8).read_bytes(),
    }


# --- the corpora's readers -------------------------------------------------------------------


@_settings(150)
@given(data=st.data())
def test_corrupt_medline_xml(work: Path, data) -> None:
    path = _case(work, "m.xml", data.draw(corrupted(_CLEAN["medline"])))
    check_bad_input(lambda: list(read_medline(path)), str(path))


@_settings(60)
@given(data=st.data())
def test_corrupt_mimic_notes(work: Path, data) -> None:
    path = _case(work, "NOTEEVENTS.csv", data.draw(corrupted(_CLEAN["notes"])))
    stats = ReadStats()
    read = lambda: list(read_notes(path, ["Discharge summary"], "utf-8", "strict", stats))  # noqa: E731
    check_bad_input(read, str(path))


@_settings(40)
@given(data=st.data())
def test_corrupt_mimic_codes(work: Path, data) -> None:
    path = _case(work, "DIAGNOSES_ICD.csv", data.draw(corrupted(_CLEAN["codes"])))
    check_bad_input(lambda: list(read_code_table(path, "icd9", False, "utf-8")), str(path))


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def jsonl_records(draw, clean: bytes) -> bytes:
    """A JSONL file with one record's field given a value of any type, or a field dropped,
    or the bytes corrupted."""
    import json

    lines = clean.decode().splitlines()
    if draw(st.booleans()):
        return draw(corrupted(clean))
    i = draw(st.integers(0, len(lines) - 1))
    record = json.loads(lines[i])
    key = draw(st.sampled_from(["id", "text", "codes", "patient_id"]))
    if draw(st.booleans()):
        record.pop(key)
    else:
        record[key] = draw(VALUES)
    lines[i] = json.dumps(record)
    return ("\n".join(lines) + "\n").encode()


@_settings(130)
@given(data=st.data())
def test_corrupt_jsonl(work: Path, data) -> None:
    path = _case(work, "t.jsonl", data.draw(jsonl_records(_CLEAN["jsonl"])))
    check_bad_input(lambda: list(read_jsonl(path, "utf-8", "strict", ReadStats())), str(path))


# --- whole stages: a failing one writes nothing ----------------------------------------------


def _prepare(params: Params, target, tiny: dict) -> None:
    from icdtransfer.data.prepare import prepare_target

    prepare_target(target, params.tokenizer, tiny["source"])


def _no_output(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@_settings(30)
@given(data=st.data())
def test_a_stage_on_corrupt_input_writes_nothing(work, params, tiny, data) -> None:
    case = work / f"stage{next(COUNTER)}"
    case.mkdir()
    out = case / "out"
    base = dict(out_dir=str(out), min_count=1, validation_size=1, test_size=1)
    if data.draw(st.booleans()):
        (case / "NOTEEVENTS.csv").write_bytes(data.draw(corrupted(_CLEAN["notes"])))
        (case / "DIAGNOSES_ICD.csv").write_bytes(_CLEAN["codes"])
        target = replace(params.target, format="mimic", input=str(case), **base)
        names = [str(case / "NOTEEVENTS.csv")]
    else:
        path = case / "t.jsonl"
        path.write_bytes(data.draw(jsonl_records(_CLEAN["jsonl"])))
        target = replace(params.target, format="jsonl", input=str(path), **base)
        names = [str(path)]
    try:
        _prepare(params, target, tiny)
    except BAD_INPUT as err:
        assert "\n" not in str(err) and any(n in str(err) for n in names + ["target."]), str(err)
        _no_output(out)


@_settings(20)
@given(validation=st.integers(0, 40), data=st.data())
def test_split_sizes_beyond_the_corpus(work, params, tiny, validation, data) -> None:
    """The JSONL holds 8 documents: sizes that leave no training document name the keys."""
    test = data.draw(st.integers(max(0, 8 - validation), 40))
    out = work / f"split{next(COUNTER)}"
    path = _case(work, "t.jsonl", _CLEAN["jsonl"])
    target = replace(
        params.target, format="jsonl", input=str(path), out_dir=str(out),
        min_count=1, validation_size=validation, test_size=test,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"target\.validation_size .* target\.test_size"):
        _prepare(params, target, tiny)
    _no_output(out)


# --- study files and params ------------------------------------------------------------------

STUDY = {
    "name": "fuzz",
    "kind": "optuna",
    "metric": "val_macro_f",
    "mode": "max",
    "num_samples": 4,
    "scheduler": "asha",
    "max_concurrent": 1,
    "seeds": [1, 2],
    "search_seed": 1,
    "space": {"variant": ["scratch", "frozen"], "word_dropout": {"uniform": [0.0, 0.5]}},
    "train": {"epochs": 2},
}
STUDY_KEYS = [
    *STUDY, "space.variant", "space.word_dropout", "space.learning_rate", "train.epochs",
    "train.patience", "points", "convergence", "resources", "max_failures", "unknown",
]  # fmt: skip


@_settings(100)
@given(key=st.sampled_from(STUDY_KEYS), value=VALUES, drop=st.booleans(), data=st.data())
def test_study_files_with_wrong_types_and_values(work, key, value, drop, data) -> None:
    import copy

    study = copy.deepcopy(STUDY)
    section, _, sub = key.partition(".")
    target = study.setdefault(section, {}) if sub else study
    name = sub or section
    if not isinstance(target, dict):
        return
    if drop:
        target.pop(name, None)
    else:
        target[name] = value
    text = yaml.safe_dump(study).encode()
    if data.draw(st.integers(0, 4)) == 0:
        text = data.draw(corrupted(text))
    path = _case(work, "study.yaml", text)
    check_bad_input(lambda: load_study(path), str(path))


def _param_keys() -> list[tuple[str, str]]:
    defaults = Params()
    return [
        (section.name, f.name)
        for section in fields(Params)
        for f in fields(getattr(defaults, section.name))
    ]


PARAM_KEYS = _param_keys()
TEXTS = st.one_of(
    st.sampled_from(["-1", "0", "1e309", "nan", "[]", "{}", "null", "yes", "x", "[1, x]", ""]),
    VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
)


@_settings(100)
@given(key=st.sampled_from(PARAM_KEYS), value=TEXTS)
def test_params_overrides_with_wrong_types_and_values(key, value) -> None:
    section, name = key
    check_bad_input(
        lambda: load_params(REPO / "params.yaml", [f"{section}.{name}={value}"]),
        [f"{section}.{name}", "params.yaml"],
    )


# --- end to end: exit 2 and one line -----------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "icdtransfer", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _one_line(out: subprocess.CompletedProcess, command: str, named: str) -> None:
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"icdtransfer {command}: error: ")
    assert named in errors[0], errors[0]


def test_the_cli_gives_one_line_for_corrupt_inputs(work: Path, tiny) -> None:
    xml = _case(work, "cut.xml", _CLEAN["medline"][: len(_CLEAN["medline"]) // 2])
    out = work / "cli-source"
    result = _cli("prepare-source", "--set", f"source.input={xml}",
                  "--set", f"source.out_dir={out}")  # fmt: skip
    _one_line(result, "prepare-source", str(xml))
    assert not out.exists()
    bad = _CLEAN["jsonl"].replace(b'"codes": [', b'"codes": 7, "x": [', 1)
    jsonl = _case(work, "bad.jsonl", bad)
    out = work / "cli-target"
    result = _cli(
        "prepare-target", "--set", "target.format=jsonl", "--set", f"target.input={jsonl}",
        "--set", f"source.out_dir={tiny['source']}", "--set", f"target.out_dir={out}",
    )  # fmt: skip
    _one_line(result, "prepare-target", str(jsonl))
    assert not out.exists()
    study = _case(work, "study.yaml", yaml.safe_dump({**STUDY, "num_samples": "many"}).encode())
    _one_line(_cli("sweep", "--study", str(study), "--status"), "sweep", str(study))
    _one_line(_cli("synthesize", "--set", "synthesize.notes=-3"), "synthesize", "synthesize.notes")
