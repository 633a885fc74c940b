"""How the synthetic notes word codes: phrase families, and the verbatim-description share."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from icdtransfer.data.codes import format_icd9, icd9_descriptions, truncate
from icdtransfer.synth.clinical_terms import terms_for
from icdtransfer.synth.phrases import build_family, cms_wordings
from icdtransfer.synth.synonyms import clean_phrase, icd10_wordings
from icdtransfer.synth.synthesize import synthesize


def test_clean_phrase_drops_coding_qualifiers() -> None:
    assert clean_phrase("Essential (primary) hypertension") == "essential hypertension"
    assert clean_phrase("Heart failure, unspecified") == "heart failure"
    assert clean_phrase("Other and unspecified hyperlipidemia") == "hyperlipidemia"
    assert clean_phrase("Urinary tract infection, site not specified") == "urinary tract infection"


def test_icd10_wordings_follow_the_gem() -> None:
    assert icd10_wordings("428.0") == ["heart failure"]  # I50.9
    assert icd10_wordings("250.00") == ["type 2 diabetes mellitus"]  # E11.9


def test_terms_take_the_longest_prefix() -> None:
    assert "HFrEF" in terms_for("428.21").abbreviations
    assert terms_for("428.0").abbreviations == ("CHF",)
    assert terms_for("999.9").abbreviations == ()


def test_family_never_quotes_the_description() -> None:
    children = ["427.31", "427.32"]
    wordings = cms_wordings("427.3", children)
    assert wordings == ["atrial fibrillation", "atrial flutter"]  # 427.3 is not billable
    family = build_family("427.31", wordings, ["Atrial Fibrillation"])
    assert "AF" in family.names and "a-fib" in family.names
    assert all("atrial fibrillation" not in n.lower() for n in family.names)
    assert family.findings  # evidence sentences for the learned models


def _verbatim_share(folder: Path) -> tuple[float, float]:
    """Recomputed from the written MIMIC tables: the share of (note, code) pairs whose full
    CMS description (of the truncated code, else of one of its billable children) is in the
    note; and the share of pairs whose code's family, findings or description is in it."""
    table = icd9_descriptions()
    notes = pd.read_csv(folder / "NOTEEVENTS.csv.gz", dtype=str, keep_default_na=False)
    notes = notes[(notes["CATEGORY"] == "Discharge summary") & (notes["ISERROR"] != "1")]
    text = notes.groupby("HADM_ID")["TEXT"].agg(lambda t: " ".join(t).lower())
    codes = pd.read_csv(folder / "DIAGNOSES_ICD.csv.gz", dtype=str, keep_default_na=False)
    quoted = pairs = 0
    for hadm, code in codes[codes["HADM_ID"].isin(text.index)][["HADM_ID", "ICD9_CODE"]].values:
        group = truncate(format_icd9(code), 1)
        if group in table:
            descriptions = [table[group]]
        else:
            descriptions = [d for c, d in table.items() if truncate(c, 1) == group]
        pairs += 1
        quoted += any(d.lower() in text[hadm] for d in descriptions)
    return quoted / pairs, pairs


def test_synthesizer_reports_a_small_verbatim_share(params, tmp_path: Path) -> None:
    small = replace(params.synthesize, notes=150, words_per_note=300, out_dir=str(tmp_path))
    stats = synthesize(small, params.source)
    share, pairs = _verbatim_share(tmp_path)
    assert stats["note_code_pairs"] == pairs
    assert abs(stats["description_verbatim_share"] - share) < 1e-4
    assert share <= 0.10
    # and the knob moves it: notes that always quote the description quote it in every pair
    always = synthesize(
        replace(small, description_rate=1.0, out_dir=str(tmp_path / "all")), params.source
    )
    assert always["description_verbatim_share"] > 0.95
