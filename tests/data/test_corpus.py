"""The on-disk corpus written by the default pipeline, and the synthesizer's statistics."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icdtransfer.data.corpus import Corpus, filter_labels
from icdtransfer.data.emr import ReadStats, read_notes
from icdtransfer.data.splits import TEST, TRAIN, VALIDATION
from icdtransfer.data.tokenizer import raw_tokens
from icdtransfer.synth.synthesize import synthesize


def test_min_count_counts_training_documents_or_all_of_them() -> None:
    # "a" is in 2 training documents, "b" in 1 training + 2 held-out, "c" only held out
    codes = [["a", "b"], ["a"], ["b", "c"], ["b", "c"], []]
    splits = np.array([TRAIN, TRAIN, VALIDATION, TEST, TRAIN])
    train = filter_labels(codes, splits, min_count=2)
    assert train.codes == ["a"] and train.dropped_codes == 2
    assert train.doc_labels == [[0], [0], [], [], []]
    everything = filter_labels(codes, splits, min_count=2, scope="all")
    assert everything.codes == ["a", "b", "c"] and everything.dropped_codes == 0
    assert everything.doc_labels == [[0, 1], [0], [1, 2], [1, 2], []]
    # the label table keeps training frequencies (deciles are ordered by them)
    assert everything.train_frequency.tolist() == [2, 1, 0]


def test_corpus_files_round_trip(default_run: dict[str, Path]) -> None:
    corpus = Corpus.open(default_run["target"])
    assert isinstance(corpus.tokens, np.memmap) and corpus.tokens.dtype == np.int32
    assert corpus.offsets.dtype == np.int64 and corpus.offsets[0] == 0
    assert corpus.offsets[-1] == len(corpus.tokens)
    assert corpus.labels.shape == (len(corpus), len(corpus.label_table))
    stats = json.loads((default_run["target"] / "stats.json").read_text())
    assert stats["instances"] == len(corpus)
    assert stats["label_cardinality"] == pytest.approx(corpus.labels.sum() / len(corpus), abs=1e-3)
    assert stats["words_per_document"] == pytest.approx(np.diff(corpus.offsets).mean(), abs=0.1)
    freq = np.asarray(corpus.labels[corpus.split("train")].sum(axis=0)).ravel()
    assert (freq == corpus.label_table["train_frequency"].to_numpy()).all()
    # the stage-1 vocabulary is a prefix of the stage-2 vocabulary: same word, same id
    source = Corpus.open(default_run["source"])
    assert corpus.vocab.tokens[: len(source.vocab)] == source.vocab.tokens


def test_encoding_matches_the_tokenizer_on_the_raw_notes(default_run: dict[str, Path]) -> None:
    corpus = Corpus.open(default_run["target"])
    position = {doc_id: i for i, doc_id in enumerate(corpus.docs["doc_id"])}
    notes = read_notes(
        default_run["raw"] / "NOTEEVENTS.csv.gz",
        ["Discharge summary"],
        "utf-8",
        "strict",
        ReadStats(),
    )
    checked = 0
    for part in notes:
        i = position.get(part.doc_id)
        if i is None or part.order[0] != 0:  # reports only (addenda follow them)
            continue
        expected = corpus.vocab.encode(raw_tokens(part.text), "placeholder")
        assert (corpus.document(i)[: len(expected)] == expected).all()
        checked += 1
        if checked == 50:
            break
    assert checked == 50


def test_synthetic_corpus_statistics(default_run: dict[str, Path], params) -> None:
    corpus = Corpus.open(default_run["target"])
    n = len(corpus)
    doc_freq = np.asarray(corpus.labels.sum(axis=0)).ravel()
    assert doc_freq.max() / n >= 0.30  # one code in a large share of notes (paper: ~38%)
    train_freq = corpus.label_table["train_frequency"].to_numpy()
    assert (train_freq < 2 * params.target.min_count).mean() >= 0.30  # a long tail near the cut
    cardinality = corpus.labels.sum() / n
    assert 4 <= cardinality <= 10
    raw = json.loads((default_run["raw"] / "stats.json").read_text())
    assert 4 <= raw["label_cardinality"] <= 10
    assert raw["patients"] < raw["instances"]  # some patients have several admissions
    assert raw["addenda"] > 0 and raw["iserror_rows"] > 0 and raw["other_category_notes"] > 0
    # notes word codes as clinicians do: few quote the CMS description (issue 13: <= 10%)
    assert raw["description_verbatim_share"] <= 0.10
    codes = pd.read_csv(default_run["raw"] / "DIAGNOSES_ICD.csv.gz", dtype={"ICD9_CODE": str})
    assert codes.groupby("HADM_ID")["SUBJECT_ID"].nunique().max() == 1
    assert (codes.groupby("SUBJECT_ID")["HADM_ID"].nunique() > 1).any()
    assert (
        raw["words_per_document"]
        > 5 * Corpus.open(default_run["source"]).stats["words_per_document"]
    )  # notes are long compared with abstracts


def test_synthesizer_is_deterministic_and_uses_only_held_out_abstracts(
    params, tmp_path: Path, default_run
) -> None:
    small = replace(params.synthesize, notes=120, words_per_note=300)
    first = synthesize(replace(small, out_dir=str(tmp_path / "a")), params.source)
    second = synthesize(replace(small, out_dir=str(tmp_path / "b")), params.source)
    assert first == second
    for name in ("NOTEEVENTS.csv.gz", "DIAGNOSES_ICD.csv.gz", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = synthesize(
        replace(small, seed=small.seed + 1, out_dir=str(tmp_path / "c")), params.source
    )
    assert (tmp_path / "c" / "NOTEEVENTS.csv.gz").read_bytes() != (
        tmp_path / "a" / "NOTEEVENTS.csv.gz"
    ).read_bytes()
    assert other["instances"] == 120
