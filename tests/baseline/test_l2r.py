"""LR + L2R (+ NERC) on the tiny corpus: out-of-fold first level, member files without pickle,
calibrated probabilities, and `predict` from the stored files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from builders import write_jsonl
from icdtransfer.artifacts import read_probs
from icdtransfer.baseline import store
from icdtransfer.baseline.l2r import out_of_fold, train_l2r
from icdtransfer.baseline.lr import id_text, make_classifier, make_vectorizer
from icdtransfer.data.corpus import Corpus
from icdtransfer.predict import member_probabilities

SMALL = {"min_df": 1, "folds": 3, "ranker_trees": 30, "lr_candidates": 3, "neighbours": 5}


@pytest.fixture(scope="module")
def l2r(tiny: dict, params, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("l2r")
    target = replace(
        params.target, format="jsonl", input=str(tiny["root"] / "t.jsonl"), out_dir=tiny["target"]
    )
    cfg = replace(params.baseline, out_dir=str(root / "baseline"), **SMALL)
    metrics = {
        method: train_l2r(replace(cfg, method=method), target, tiny["source"])
        for method in ("lr_l2r", "lr_l2r_nerc")
    }
    return {"cfg": cfg, "target": target, "metrics": metrics, "root": root}


def test_member_directories_hold_no_pickle(l2r: dict) -> None:
    for method in ("lr_l2r", "lr_l2r_nerc"):
        member = Path(l2r["cfg"].member_dir(method))
        names = {p.name for p in member.iterdir()}
        assert {"ranker.txt", "lr.npz", "vectorizer.npz", "knn_x.npz", "metrics.json"} <= names
        assert ("nerc.tsv" in names) == (method == "lr_l2r_nerc")
        assert not any(n.endswith((".joblib", ".pkl", ".pickle")) for n in names)
        for npz in member.glob("*.npz"):
            np.load(npz, allow_pickle=False)  # raises if any array needed pickle
        info = json.loads((member / "member.json").read_text())
        assert info["method"] == method and info["train_seconds"] > 0
        assert "nerc_hits" in info["features"] or method == "lr_l2r"


def test_probabilities_are_calibrated_scores_of_candidates(l2r: dict) -> None:
    member = Path(l2r["cfg"].member_dir("lr_l2r"))
    val, test = read_probs(member)
    assert val.min() >= 0 and test.max() <= 1
    # non-candidates get exactly 0; each document has at least lr_candidates candidates
    assert ((test > 0).sum(axis=1) >= SMALL["lr_candidates"]).all()
    # Platt scaling fitted on the validation candidates: there the mean probability equals the
    # share of candidates that are gold (the logistic fit's intercept condition)
    corpus = Corpus.open(l2r["target"].out_dir)
    gold = corpus.labels[corpus.split("validation")].toarray().astype(bool)
    candidate = val > 0
    assert val[candidate].mean() == pytest.approx(gold[candidate].mean(), abs=0.01)
    assert l2r["metrics"]["lr_l2r"].tuned.micro_f > 0.6  # keywords: an easy tiny task


def test_ranker_is_fitted_on_out_of_fold_lr_scores(l2r: dict) -> None:
    """Each training document's LR score comes from a model fitted without its fold: refit
    one fold by hand and compare."""
    from sklearn.model_selection import GroupKFold

    cfg = l2r["cfg"]
    corpus = Corpus.open(l2r["target"].out_dir)
    train = corpus.split("train")
    x = make_vectorizer(cfg).fit_transform(id_text(corpus, train))
    y = corpus.labels[train].tocsr()
    groups = corpus.docs["patient_id"].to_numpy()[train]
    lr_oof, _, count = out_of_fold(cfg, x, y, groups)
    folds = GroupKFold(n_splits=cfg.folds, shuffle=True, random_state=cfg.seed)
    fit_rows, held = next(folds.split(x, groups=groups))
    by_hand = make_classifier(cfg).fit(x[fit_rows], y[fit_rows].toarray()).predict_proba(x[held])
    np.testing.assert_allclose(lr_oof[held], by_hand, rtol=1e-4, atol=1e-5)  # float32
    in_sample = make_classifier(cfg).fit(x, y.toarray()).predict_proba(x[held])
    assert not np.allclose(lr_oof[held], in_sample, atol=1e-3)
    assert count.max() <= cfg.neighbours


def test_stored_model_reproduces_the_stage_probabilities(l2r: dict, tiny: dict) -> None:
    """predict's path (files only, no training objects) gives the stage's test probabilities."""
    corpus = Corpus.open(l2r["target"].out_dir)
    test_rows = corpus.split("test")[:12]
    ids = corpus.docs["doc_id"].to_numpy()[test_rows]
    records = {
        r["id"]: r["text"]
        for r in map(json.loads, (tiny["root"] / "t.jsonl").read_text().splitlines())
    }
    notes = [(i, records[i]) for i in ids]
    for method in ("lr_l2r", "lr_l2r_nerc"):
        member = Path(l2r["cfg"].member_dir(method))
        _, stored = read_probs(member)
        again = member_probabilities(member, notes)
        np.testing.assert_allclose(again, stored[: len(ids)], atol=2e-3)  # float16 on disk


def test_stored_vectorizer_and_linear_model_round_trip(tmp_path: Path, tiny: dict, params) -> None:
    corpus = Corpus.open(tiny["target"])
    docs = id_text(corpus, corpus.split("train"))
    cfg = replace(params.baseline, min_df=1)
    vectorizer = make_vectorizer(cfg)
    x = vectorizer.fit_transform(docs)
    classifier = make_classifier(cfg).fit(x, corpus.labels[corpus.split("train")].toarray())
    store.save_vectorizer(vectorizer, tmp_path / "v.npz")
    store.save_linear(classifier, tmp_path / "lr.npz")
    loaded = store.load_vectorizer(tmp_path / "v.npz", make_vectorizer(cfg))
    again = loaded.transform(docs)
    assert again.nnz == x.nnz
    np.testing.assert_allclose(again.toarray(), x.toarray(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        store.LinearScorer(tmp_path / "lr.npz").predict_proba(x),
        classifier.predict_proba(x),
        rtol=1e-4,
        atol=1e-5,
    )


def test_same_seed_same_member(l2r: dict, tmp_path: Path) -> None:
    cfg = replace(l2r["cfg"], method="lr_l2r", out_dir=str(tmp_path / "again"))
    train_l2r(cfg, l2r["target"], "unused-without-nerc")
    first = read_probs(Path(l2r["cfg"].member_dir("lr_l2r")))[1]
    second = read_probs(Path(cfg.member_dir()))[1]
    assert np.array_equal(first, second)


def test_unknown_method_is_an_error(l2r: dict) -> None:
    with pytest.raises(ValueError, match="not an L2R method"):
        train_l2r(replace(l2r["cfg"], method="lr"), l2r["target"], "x")


def test_predict_cli_reads_an_l2r_member(l2r: dict, tmp_path: Path) -> None:
    from icdtransfer.predict import predict

    notes = write_jsonl(tmp_path / "n.jsonl", [{"id": "a", "text": "w1 cardiac w2 kidney"}])
    rows = predict(Path(l2r["cfg"].member_dir("lr_l2r_nerc")), notes, 5, None)
    assert rows[0]["id"] == "a" and len(rows[0]["codes"]) == 5
    assert all(0 <= c["probability"] <= 1 for c in rows[0]["codes"])


def test_cli_trains_the_method_it_is_given(l2r: dict, tmp_path: Path) -> None:
    from icdtransfer.cli import main

    out = tmp_path / "b"
    sets = {
        "target.out_dir": l2r["target"].out_dir,
        "baseline.out_dir": str(out),
        **{f"baseline.{k}": v for k, v in SMALL.items()},
    }
    argv = ["baseline", "--method", "lr_l2r"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    assert (tmp_path / "b_lr_l2r" / "ranker.txt").is_file() and not out.exists()
    with pytest.raises(SystemExit):
        main(["baseline", "--method", "svm"])
