"""ICD-9-CM and ICD-10-CM code rules, worked out by hand from the coding conventions."""

from __future__ import annotations

import pytest

from icdtransfer.data.codes import (
    CodeNormalizer,
    CodeSyntaxError,
    describe,
    format_icd9,
    format_icd10cm,
    truncate,
    unique,
)


@pytest.mark.parametrize(
    ("raw", "procedure", "dotted"),
    [
        ("0389", False, "038.9"),  # leading zero kept: codes are text
        ("E8889", False, "E888.9"),  # E codes: dot after the fourth character
        ("V3001", False, "V30.01"),
        ("42821", False, "428.21"),
        ("4280", False, "428.0"),
        ("486", False, "486"),  # a three-character code has no dot
        ("3893", True, "38.93"),  # procedures: dot after the second character
        ("428.21", False, "428.21"),  # already dotted: kept
        ("38.93", False, "38.93"),  # a dotted procedure code is recognised by its dot
        (" v3001 ", False, "V30.01"),
    ],
)
def test_icd9_dot_insertion(raw: str, procedure: bool, dotted: str) -> None:
    assert format_icd9(raw, procedure) == dotted


@pytest.mark.parametrize(
    ("raw", "procedure", "truncated"),
    [
        ("42821", False, "428.2"),
        ("4280", False, "428.0"),
        ("0389", False, "038.9"),
        ("V3001", False, "V30.0"),
        ("E8889", False, "E888.9"),
        ("3893", True, "38.9"),
    ],
)
def test_icd9_truncation_to_depth_one(raw: str, procedure: bool, truncated: str) -> None:
    assert CodeNormalizer("icd9", depth=1)(raw, procedure=procedure) == truncated


def test_truncation_depths() -> None:
    assert truncate("428.21", None) == "428.21"
    assert truncate("428.21", 2) == "428.21"
    assert truncate("428.21", 0) == "428"
    assert truncate("486", 1) == "486"


@pytest.mark.parametrize("bad", ["12", "ABC", "4280X", "E88", "V3", "42.821", "", "428.213"])
def test_invalid_icd9_is_counted_or_strict_error(bad: str) -> None:
    lenient = CodeNormalizer("icd9", depth=1)
    assert lenient(bad) is None
    assert lenient.invalid == {bad: 1}
    with pytest.raises(CodeSyntaxError):
        CodeNormalizer("icd9", depth=1, strict=True)(bad)


def test_icd10cm() -> None:
    assert format_icd10cm("I509") == "I50.9"
    assert format_icd10cm("E1165") == "E11.65"
    assert format_icd10cm("E11.65") == "E11.65"
    assert format_icd10cm("I10") == "I10"
    assert CodeNormalizer("icd10", depth=1)("E1165") == "E11.6"
    assert CodeNormalizer("icd10", depth=None)("S72001A") == "S72.001A"
    with pytest.raises(CodeSyntaxError):
        format_icd10cm("4280")


def test_none_system_keeps_codes_byte_for_byte() -> None:
    normalise = CodeNormalizer("none", depth=1)
    for raw in ["428.21", " x-17 ", "Ü/ß", "42821"]:
        assert normalise(raw) == raw
    assert normalise("") is None


def test_unique_keeps_first_seen_order() -> None:
    assert unique(["428.2", "401.9", "428.2", "038.9", "401.9"]) == ["428.2", "401.9", "038.9"]


def test_descriptions_from_cms_v32() -> None:
    found = describe(["428.0", "038.9", "428.2", "38.9", "E11.6"], "icd9")
    assert found["428.0"] == "Congestive heart failure, unspecified"
    assert found["038.9"] == "Unspecified septicemia"
    assert found["428.2"] == "Systolic heart failure"  # from 428.20 "..., unspecified"
    assert "E11.6" not in found
    assert describe(["E11.65"], "icd10")["E11.65"].startswith(
        "Type 2 diabetes mellitus with hyperg"
    )
