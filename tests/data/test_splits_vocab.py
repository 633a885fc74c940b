"""Splits keep patients apart; the vocabulary sees only training text."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from builders import write_jsonl
from icdtransfer.config import SplitFiles
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.errors import InputError
from icdtransfer.data.prepare import prepare_target
from icdtransfer.data.splits import (
    TEST,
    TRAIN,
    VALIDATION,
    patient_subsample,
    split_by_group,
    split_from_files,
)
from icdtransfer.data.tokenizer import tokenize
from icdtransfer.data.vocab import NUM, SPECIALS, Vocabulary, build_vocabulary


def test_split_by_group_never_shares_a_patient() -> None:
    rng = np.random.default_rng(0)
    groups = [f"p{g}" for g in rng.integers(0, 300, size=1000)]
    splits = split_by_group(groups, validation_size=100, test_size=150, seed=3)
    owner: dict[str, set[int]] = {}
    for g, s in zip(groups, splits, strict=True):
        owner.setdefault(g, set()).add(int(s))
    assert all(len(s) == 1 for s in owner.values())
    sizes = np.bincount(splits, minlength=3)
    largest = max(groups.count(g) for g in set(groups))
    assert 150 <= sizes[TEST] < 150 + largest
    assert 100 <= sizes[VALIDATION] < 100 + largest
    assert (split_by_group(groups, 100, 150, seed=3) == splits).all()  # seeded
    assert not (split_by_group(groups, 100, 150, seed=4) == splits).all()


def test_split_sizes_must_leave_training_documents() -> None:
    with pytest.raises(ValueError, match="must be below the number of documents"):
        split_by_group(["a", "b", "c"], validation_size=2, test_size=1, seed=0)


def test_split_files(tmp_path: Path) -> None:
    (tmp_path / "val.txt").write_text("b\n# a comment\n\nzz\n")
    (tmp_path / "test.txt").write_text("c\n")
    splits, missing = split_from_files(
        ["a", "b", "c", "d"], str(tmp_path / "val.txt"), str(tmp_path / "test.txt")
    )
    assert splits.tolist() == [TRAIN, VALIDATION, TEST, TRAIN]
    assert missing == 1
    (tmp_path / "test.txt").write_text("b\n")
    with pytest.raises(InputError, match="id b: also listed in"):
        split_from_files(["a", "b"], str(tmp_path / "val.txt"), str(tmp_path / "test.txt"))


def test_vocabulary_extends_the_base_and_applies_the_number_policy() -> None:
    raw = ["heart", "failure", "123", "rare", "only"]
    counts = np.array([5, 3, 7, 1, 0])
    base = Vocabulary([*SPECIALS, "failure", "pubmed"], np.zeros(5, dtype=np.int64))
    vocab = build_vocabulary(raw, counts, "placeholder", min_count=2, max_size=10, base=base)
    assert vocab.tokens == [*SPECIALS, "failure", "pubmed", "heart"]  # base ids kept
    assert vocab.counts[NUM] == 7 and vocab.counts[vocab.index["heart"]] == 5
    assert vocab.encode(["heart", "123", "only"], "placeholder").tolist() == [5, NUM, 1]
    dropped = build_vocabulary(raw, counts, "drop", min_count=1, max_size=10)
    assert dropped.encode(["heart", "123", "only"], "drop").tolist() == [3, 1]  # "only": <unk>
    kept = build_vocabulary(raw, counts, "keep", min_count=1, max_size=1)
    assert kept.tokens == [*SPECIALS, "123"]  # most frequent first, size capped


def test_tokenizer() -> None:
    assert tokenize("BP 120/80, non-small-cell; Vit B12 x3 café") == [
        "bp",
        "<num>",
        "<num>",
        "non",
        "small",
        "cell",
        "vit",
        "b12",
        "x3",
        "café",
    ]
    assert tokenize("a 12 b", numbers="drop") == ["a", "b"]
    assert tokenize("a 12 b", numbers="keep") == ["a", "12", "b"]


def _prepare_jsonl(params, tmp_path: Path, path: Path, **target: object) -> dict:
    """prepare_target of a JSONL file into tmp_path/o, over a stage-1 vocabulary of only the
    special tokens."""
    source = tmp_path / "source"
    source.mkdir()
    Vocabulary(list(SPECIALS), np.zeros(3, dtype=np.int64)).save(source / "vocab.tsv")
    cfg = replace(
        params.target,
        format="jsonl",
        input=str(path),
        out_dir=str(tmp_path / "o"),
        min_count=1,
        **target,
    )
    return prepare_target(cfg, params.tokenizer, str(source))


def test_vocabulary_never_holds_a_word_seen_only_outside_training(params, tmp_path: Path) -> None:
    records = []
    for i in range(60):
        # every document has its own word (docword<i>) twice, plus shared words
        records.append(
            {
                "id": f"d{i}",
                "text": f"shared common docword{i} docword{i}",
                "codes": ["4280"],
                "patient_id": f"p{i // 3}",
            }
        )
    path = write_jsonl(tmp_path / "n.jsonl", records)
    stats = _prepare_jsonl(
        params, tmp_path, path, validation_size=9, test_size=9, vocab_min_patients=1
    )
    corpus = Corpus.open(tmp_path / "o")
    held_out = corpus.docs[corpus.docs["split"] != "train"]["doc_id"]
    train = corpus.docs[corpus.docs["split"] == "train"]["doc_id"]
    assert len(held_out) >= 18 and stats["patients_in_two_splits"] == 0
    vocab = set(corpus.vocab.tokens)
    assert {f"docword{d[1:]}" for d in held_out}.isdisjoint(vocab)
    assert {f"docword{d[1:]}" for d in train} <= vocab
    for i in corpus.split("test"):  # unseen words encode as <unk>, seen ones as themselves
        words = [corpus.vocab.tokens[t] for t in corpus.document(i)]
        assert words == ["shared", "common", "<unk>", "<unk>"]


def test_emr_vocabulary_counts_distinct_training_patients(params, tmp_path: Path) -> None:
    """A word enters the stage-2 vocabulary only when the notes of at least
    `vocab_min_patients` training patients hold it: a name repeated in one patient's notes,
    however often, never ships in a model."""
    records = [
        ("d0", "p0", "shared johanna johanna johanna johanna johanna"),  # 5 times, 1 patient
        *[(f"d{i}", "p1", "shared rarename almost") for i in (1, 2, 3)],  # 3 notes, 1 patient
        *[(f"d{i}", f"p{i - 2}", "shared fever") for i in (4, 5, 6)],  # 3 patients
        *[(f"d{i}", f"p{i - 2}", "shared twopat twopat twopat") for i in (7, 8)],  # 2 patients
        ("d9", "p7", "shared almost"),  # with p1: 2 training patients, and 1 in validation
        ("v1", "pv", "shared almost fever"),
        ("t1", "pt", "shared almost"),
    ]
    path = write_jsonl(
        tmp_path / "n.jsonl",
        [{"id": d, "text": t, "codes": ["4280"], "patient_id": p} for d, p, t in records],
    )
    (tmp_path / "val.txt").write_text("v1\n")
    (tmp_path / "test.txt").write_text("t1\n")
    split_files = SplitFiles(str(tmp_path / "val.txt"), str(tmp_path / "test.txt"))
    _prepare_jsonl(params, tmp_path, path, split_files=split_files, vocab_min_patients=3)
    vocab = Corpus.open(tmp_path / "o").vocab
    assert vocab.tokens == [*SPECIALS, "shared", "fever"]
    assert vocab.counts[vocab.index["fever"]] == 3  # train_count stays occurrences


def test_patient_subsamples_are_nested_whole_patients_and_seeded() -> None:
    """train_fraction's subsamples (issue 22): every patient at 10% is at 25%, 50% and 100%;
    a patient's documents are kept or dropped together; another seed draws other patients."""
    patients = [f"p{i // 2}" for i in range(400)] + [f"q{i}" for i in range(200)]  # 400 patients
    kept = {f: patient_subsample(patients, f, seed=3) for f in (0.1, 0.25, 0.5, 1.0)}
    chosen = {f: {p for p, k in zip(patients, mask, strict=True) if k} for f, mask in kept.items()}
    assert [len(chosen[f]) for f in (0.1, 0.25, 0.5, 1.0)] == [40, 100, 200, 400]
    assert chosen[0.1] < chosen[0.25] < chosen[0.5] < chosen[1.0]
    for f, mask in kept.items():  # both notes of a two-note patient share their fate
        assert all(mask[2 * i] == mask[2 * i + 1] for i in range(200)), f
    assert patient_subsample(patients, 0.1, seed=3).tolist() == kept[0.1].tolist()
    assert chosen[0.1] != {
        p for p, k in zip(patients, patient_subsample(patients, 0.1, seed=4), strict=True) if k
    }
    assert patient_subsample(["a", "b"], 0.01, seed=1).sum() == 1  # never an empty subsample
