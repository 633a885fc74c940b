"""How the synthetic notes word each code: a fixed family of phrases per billable code.

Clinicians rarely copy the CMS description into a note. They write an abbreviation ("CHF"), a
chart synonym ("a-fib with RVR"), another terminology's name for the condition (ICD-10-CM via
the GEMs, a MeSH heading), or only the evidence (an ejection fraction and a diuretic). Each code
gets one family of such phrases, fixed for the whole corpus, so that the language about a code
is consistent across notes and a model can learn it; the CMS description itself is quoted only
at `synthesize.description_rate`.

A phrase that contains one of the code group's CMS descriptions is left out of the family: it
would quote the description under another name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from icdtransfer.data.codes import icd9_descriptions
from icdtransfer.synth.clinical_terms import terms_for
from icdtransfer.synth.synonyms import clean_phrase, icd10_wordings

# Words that name no condition on their own: a MeSH heading "Disease" or "Hemorrhage" matched
# to a code is not a name a note would use for it.
_GENERIC = set(
    "disease diseases disorder disorders syndrome infection infections neoplasm neoplasms "
    "malignant hemorrhage fistula injury injuries pain lung abscess ulcer urinary tract of the "
    "and in with other unspecified site".split()
)


def names_something(phrase: str) -> bool:
    """False for a phrase made only of generic words ("disease", "malignant neoplasm")."""
    return bool(set(re.findall(r"[a-z]+", phrase.lower())) - _GENERIC)


@dataclass(frozen=True)
class Family:
    names: tuple[str, ...]  # phrases that name the condition
    findings: tuple[str, ...]  # sentences that imply it without naming it


def cms_wordings(group: str, children: list[str]) -> list[str]:
    """The full CMS descriptions that count as quoting code group `group`, lower case: the
    group's own description where the release has the truncated code, else its children's."""
    table = icd9_descriptions()
    codes = [group] if group in table else children
    return [table[c].lower() for c in codes if c in table]


def quotes(text_lower: str, wordings: list[str]) -> bool:
    """True when a lower-cased note contains one of the full descriptions verbatim."""
    return any(w in text_lower for w in wordings)


def build_family(child: str, wordings: list[str], mesh_names: list[str]) -> Family:
    """The phrase family of billable code `child` (its group's CMS `wordings`, and the MeSH
    descriptor names that match the group)."""
    terms = terms_for(child)
    candidates = [
        *terms.abbreviations,
        *terms.synonyms,
        *icd10_wordings(child),
        *(n.lower() for n in mesh_names),
    ]
    names = [
        p
        for p in dict.fromkeys(candidates)
        if names_something(p) and not quotes(p.lower(), wordings)
    ]
    if not names:
        # The only name is the description itself ("Wheezing"); its clinician's form drops
        # the coding qualifiers and keeps the head of the description.
        short = clean_phrase(icd9_descriptions()[child]).split(",")[0].strip()
        if short and not quotes(short, wordings):
            names = [short]
    return Family(tuple(names), terms.findings)
