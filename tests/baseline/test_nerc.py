"""The NERC matcher and its dictionary, on hand-written sentences (no note text anywhere)."""

from __future__ import annotations

import pytest

from icdtransfer.baseline.nerc import NercMatcher, evidence
from icdtransfer.baseline.nerc_dictionary import (
    build_dictionary,
    load_dictionary,
    save_dictionary,
)

TERMS = {
    "congestive heart failure": [("428.0", "description")],
    "heart failure": [("428.0", "synonym"), ("428.9", "synonym")],
    "chf": [("428.0", "abbreviation")],
    "s/p cabg": [("V45.8", "abbreviation")],
    "atrial fibrillation": [("427.3", "description")],
    "type 2 diabetes mellitus": [("250.0", "synonym")],
}


@pytest.fixture(scope="module")
def matcher() -> NercMatcher:
    return NercMatcher(TERMS)


def found(matcher: NercMatcher, text: str) -> list[tuple[str, str, str]]:
    return [(m.code, m.match_type, m.assertion) for m in matcher.mentions(text)]


def test_abbreviation_with_punctuation_inside(matcher) -> None:
    assert found(matcher, "Pt with CHF, S/P CABG in 2009.") == [
        ("428.0", "abbreviation", "affirmed"),
        ("V45.8", "abbreviation", "affirmed"),
    ]
    assert found(matcher, "CHFX and schf are not words of the dictionary.") == []


def test_multi_word_term_longest_match_wins(matcher) -> None:
    # "congestive heart failure" contains "heart failure": only the longer term counts
    assert found(matcher, "Admitted with congestive heart failure exacerbation.") == [
        ("428.0", "description", "affirmed")
    ]
    assert found(matcher, "Chronic heart failure.") == [
        ("428.0", "synonym", "affirmed"),
        ("428.9", "synonym", "affirmed"),
    ]


def test_negation_before_and_after(matcher) -> None:
    assert found(matcher, "Denies chest pain or atrial fibrillation.") == [
        ("427.3", "description", "negated")
    ]
    assert found(matcher, "No evidence of CHF during this admission.") == [
        ("428.0", "abbreviation", "negated")
    ]
    assert found(matcher, "Atrial fibrillation was ruled out. CHF noted.") == [
        ("427.3", "description", "negated"),
        ("428.0", "abbreviation", "affirmed"),
    ]


def test_negation_scope_ends_at_clause_and_but(matcher) -> None:
    assert found(matcher, "No fever; atrial fibrillation on telemetry.") == [
        ("427.3", "description", "affirmed")
    ]
    assert found(matcher, "No fever but atrial fibrillation on telemetry.") == [
        ("427.3", "description", "affirmed")
    ]
    # beyond the six-word window a negation no longer reaches the mention
    far = "No fever chills sweats cough sputum wheeze headache, then atrial fibrillation."
    assert found(matcher, far) == [("427.3", "description", "affirmed")]


def test_family_history(matcher) -> None:
    assert found(matcher, "Family history of type 2 diabetes mellitus.") == [
        ("250.0", "synonym", "family")
    ]
    assert found(matcher, "Family History:\nFather with CHF; Mother with atrial fibrillation") == [
        ("428.0", "abbreviation", "family"),
        ("427.3", "description", "family"),
    ]


def test_evidence_counts_per_code(matcher) -> None:
    text = "CHF. Congestive heart failure again. No atrial fibrillation. Father with CHF."
    ev = evidence(matcher.mentions(text))
    assert (ev["428.0"].hits, ev["428.0"].best_type, ev["428.0"].family) == (2, 3, 1)
    assert (ev["427.3"].hits, ev["427.3"].negated, ev["427.3"].best_type) == (0, 1, 0)


def test_empty_dictionary_finds_nothing() -> None:
    assert NercMatcher({}).mentions("CHF and atrial fibrillation") == []


def test_dictionary_from_shipped_sources(tmp_path) -> None:
    terms = build_dictionary(
        ["428.0", "427.3", "250.0"], "icd9", 1, ["Heart Failure", "Atrial Fibrillation", "Humans"]
    )
    assert ("428.0", "description") in terms["congestive heart failure, unspecified"]
    assert ("428.0", "abbreviation") in terms["chf"]  # clinical_terms.py
    assert ("428.0", "synonym") in terms["heart failure"]  # ICD-10-CM I50.9 via the GEM, MeSH
    assert ("427.3", "description") in terms["atrial flutter"]  # 427.32 truncates to 427.3
    assert ("250.0", "synonym") in terms["type 2 diabetes mellitus"]
    assert "humans" not in terms  # a MeSH check tag names no code
    save_dictionary(terms, tmp_path / "nerc.tsv")
    assert load_dictionary(tmp_path / "nerc.tsv") == terms
    assert build_dictionary(["428.0"], "none", None, []) == {}
