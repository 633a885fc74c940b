"""The NERC dictionary: names of the corpus' codes from sources the project can ship.

For each code of the label table (a truncated code such as 428.0 or 427.3), every billable
ICD-9-CM code under it contributes:

* `description`: its CMS v32 long description, whole and without coding qualifiers
  ("Congestive heart failure, unspecified", "congestive heart failure");
* `synonym`: the ICD-10-CM 2024 descriptions of its GEM targets (synonyms.py), and the MeSH
  descriptor names of the stage-1 corpus that match it (the MEDLINE files give descriptor
  names, not MeSH entry terms; the rule is mesh_match.match_mesh_to_groups');
* `abbreviation`: its clinical abbreviations (clinical_terms.py).

ICD-10-CM corpora get their 2024 descriptions; `none` corpora an empty dictionary (the NERC
features are then all zero). The dictionary is saved in the member directory as TSV, so
`predict` needs nothing else.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from icdtransfer.baseline.nerc import MatchType
from icdtransfer.data.codes import CodeSystem, icd9_descriptions, icd10cm_descriptions, truncate
from icdtransfer.synth.clinical_terms import terms_for
from icdtransfer.synth.mesh_match import match_mesh_to_groups
from icdtransfer.synth.phrases import names_something
from icdtransfer.synth.synonyms import clean_phrase, icd10_wordings

Terms = dict[str, list[tuple[str, MatchType]]]


def _children(codes: list[str], table: dict[str, str], depth: int | None) -> dict[str, list[str]]:
    """Label code -> the billable codes of `table` it stands for (itself, or those that
    truncate to it)."""
    wanted = set(codes)
    out: dict[str, list[str]] = {c: [] for c in codes}
    for code in table:
        for key in {code, truncate(code, depth)}:
            if key in wanted:
                out[key].append(code)
    return {c: sorted(set(v)) for c, v in out.items()}


def build_dictionary(
    codes: list[str], system: CodeSystem, depth: int | None, mesh_names: list[str]
) -> Terms:
    """Term -> [(label code, match type)] for the label codes `codes`."""
    terms: Terms = {}

    def add(term: str, code: str, kind: MatchType) -> None:
        term = term.strip()
        if len(term) >= 2 and names_something(term):
            entry = (code, kind)
            if entry not in terms.setdefault(term.lower(), []):
                terms[term.lower()].append(entry)

    if system == "none":
        return terms
    table = icd9_descriptions() if system == "icd9" else icd10cm_descriptions()
    children = _children(codes, table, depth)
    for code, kids in children.items():
        for child in kids:
            add(table[child], code, "description")
            add(clean_phrase(table[child]), code, "description")
            if system == "icd9":
                for wording in icd10_wordings(child):
                    add(wording, code, "synonym")
                for abbreviation in terms_for(child).abbreviations:
                    add(abbreviation, code, "abbreviation")
    if system == "icd9":
        for name, matched in match_mesh_to_groups(mesh_names, children).items():
            for code in matched:
                add(name, code, "synonym")
    return dict(sorted(terms.items()))


def mesh_names_of(source_dir: str | Path) -> list[str]:
    """MeSH descriptor names of the stage-1 label table (labels.tsv's description column)."""
    labels = pd.read_csv(
        Path(source_dir) / "labels.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    return sorted(set(labels["description"]) - {""})


def save_dictionary(terms: Terms, path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle, delimiter="\t", lineterminator="\n")
        out.writerow(["term", "code", "match_type"])
        for term, entries in terms.items():
            for code, kind in entries:
                out.writerow([term, code, kind])


def load_dictionary(path: Path) -> Terms:
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    terms: Terms = {}
    for term, code, kind in table[["term", "code", "match_type"]].itertuples(index=False):
        terms.setdefault(term, []).append((code, kind))
    return terms
