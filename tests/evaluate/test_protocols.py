"""Scoring protocols and prediction files (issue 21): CAML's macro-F by hand, per-label
thresholds from validation only, and re-scoring a member's file reproducing metrics.json."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from icdtransfer.artifacts import METRICS_FILE, PREDICTIONS_FILE, read_json
from icdtransfer.cli import main
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.errors import InputError
from icdtransfer.evaluate import protocols
from icdtransfer.evaluate.metrics import tune_threshold
from icdtransfer.evaluate.predictions import read_predictions, score_file, write_predictions
from icdtransfer.evaluate.protocols import Protocol, per_label_thresholds

# 3 documents x 3 labels; label 2 has no positive
Y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=bool)
PRED = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)


def test_caml_macro_f_by_hand() -> None:
    # label 0: TP 1, FP 0, FN 1 -> P 1, R 1/2; label 1: TP 1, FP 1, FN 1 -> P 1/2, R 1/2;
    # label 2: TP 0, FP 1, FN 0 -> P 0, R 0 (nothing true)
    scores = PRED.astype(np.float32)
    caml_all = protocols.score(Protocol("fixed", "caml", "all"), Y, scores, Y, scores)
    # macro-P = 1.5/3 = 1/2, macro-R = 1/3, F = 2 (1/2)(1/3) / (1/2 + 1/3) = 0.4
    assert caml_all["macro_f"] == pytest.approx(0.4, abs=1e-12)
    mean_all = protocols.score(Protocol("fixed", "mean_f", "all"), Y, scores, Y, scores)
    assert mean_all["macro_f"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3, abs=1e-12)
    # codes with a test positive (0 and 1): macro-P 3/4, macro-R 1/2 -> F 0.6
    caml_present = protocols.score(Protocol("fixed", "caml", "present"), Y, scores, Y, scores)
    assert caml_present["macro_f"] == pytest.approx(0.6, abs=1e-12)
    assert caml_present["labels_averaged"] == 2
    # micro: TP 2, FP 2, FN 2 -> 0.5 whatever the macro choice
    assert caml_all["micro_f"] == mean_all["micro_f"] == pytest.approx(0.5)


def test_caml_macro_f_matches_caml_mimic_formula() -> None:
    """caml-mimic's evaluation.py: P and R per label with +1e-10 denominators, then F of the
    means (re-typed here from the repository at commit 44a4745)."""
    rng = np.random.default_rng(3)
    y = rng.random((40, 9)) < 0.3
    y[:, 4] = False  # a label without positives
    scores = rng.random((40, 9)).astype(np.float32)
    yhat = scores >= 0.5
    inter = (y & yhat).sum(axis=0)
    prec = np.mean(inter / (yhat.sum(axis=0) + 1e-10))
    rec = np.mean(inter / (y.sum(axis=0) + 1e-10))
    want = 2 * prec * rec / (prec + rec)
    got = protocols.score(protocols.NAMED["caml"], y, scores, y, scores)["macro_f"]
    assert got == pytest.approx(want, rel=1e-8)


def test_per_label_thresholds_come_from_validation() -> None:
    y_val = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)
    s_val = np.array(
        [[0.35, 0.9, 0.6], [0.4, 0.655, 0.2], [0.2, 0.1, 0.9], [0.1, 0.1, 0.1]], dtype=np.float32
    )
    t = per_label_thresholds(y_val, s_val)
    assert t[0] == pytest.approx(0.21)  # F 1 for 0.21..0.35: lowest
    assert t[1] == pytest.approx(0.66)  # F 1 for 0.66..0.9
    assert t[2] == tune_threshold(y_val, s_val)  # no validation positive: the global one
    # test labels never move a threshold: the same validation, any test, same thresholds
    test_a = protocols.score(Protocol("per_label", "mean_f", "all"), y_val, s_val, Y[:2], s_val[:2])
    flipped = protocols.score(
        Protocol("per_label", "mean_f", "all"), y_val, s_val, ~Y[:2], s_val[:2]
    )
    assert test_a != flipped  # the scores move with the test labels ...
    assert list(per_label_thresholds(y_val, s_val)) == list(t)  # ... the thresholds do not


def test_protocol_names_parse_and_bad_ones_say_why() -> None:
    assert Protocol.parse("per_label,caml,present") == Protocol("per_label", "caml", "present")
    assert len(protocols.every_protocol()) == 12
    with pytest.raises(ValueError, match="expected threshold,macro,labels"):
        Protocol.parse("tuned,median,all")


@pytest.fixture(scope="module")
def member(tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scratch member (one epoch) on the tiny corpus, trained by the train-target stage."""
    from icdtransfer.train.stages import train_target

    out = tmp_path_factory.mktemp("members")
    member = replace(tiny["member"], variant="scratch", seed=3, out_dir=str(out))
    settings = replace(tiny["train_target"], epochs=1, min_epochs=1)
    train_target(tiny["encoder"], tiny["head"], settings, tiny["target"], member)
    return out / "scratch-seed3"


def test_rescoring_a_member_reproduces_its_metrics(member: Path, tiny: dict) -> None:
    path = member / PREDICTIONS_FILE
    assert score_file(path, "metrics") == read_json(member / METRICS_FILE)  # exactly
    table = pq.read_table(path)
    assert table.column_names == ["split", "doc_id", "code", "probability", "gold"]  # no text
    corpus = Corpus.open(tiny["target"])
    pred = read_predictions(path)
    for split in ("validation", "test"):
        ids = list(corpus.docs["doc_id"].to_numpy()[corpus.split(split)])
        assert pred.doc_ids[split] == ids
    assert pred.codes == list(corpus.label_table["code"])


def test_rescoring_an_ensemble_reproduces_its_metrics(member: Path, tmp_path: Path, tiny) -> None:
    from icdtransfer.train.ensemble import build_ensemble

    build_ensemble([member, member], tiny["target"], str(tmp_path / "ens"))
    scored = score_file(tmp_path / "ens" / PREDICTIONS_FILE, "metrics")
    assert scored == read_json(tmp_path / "ens" / METRICS_FILE)
    assert scored["ensemble_size"] == 2
    assert not (tmp_path / "ens" / "members" / f"1-{member.name}" / PREDICTIONS_FILE).exists()


def test_score_command(member: Path, capsys) -> None:
    path = str(member / PREDICTIONS_FILE)
    assert main(["score", "--predictions", path, "--protocol", "caml"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "fixed,caml,all" and 0 <= out["macro_f"] <= 1
    assert main(["score", "--predictions", path, "--protocol", "all"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 12
    assert main(["score", "--predictions", path, "--protocol", "best"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--protocol" in err[0]
    assert main(["score", "--predictions", str(member / "nothing.parquet")]) == 2
    assert "prediction file not found" in capsys.readouterr().err


def _toy_corpus():
    import pandas as pd
    import scipy.sparse as sp

    docs = pd.DataFrame({"doc_id": ["11", "12", "13", "14", "15"], "split": ["train"] + [
        "validation"] * 2 + ["test"] * 2})  # fmt: skip
    labels = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 1]], dtype=bool))
    return SimpleNamespace(
        docs=docs,
        labels=labels,
        label_table=pd.DataFrame({"code": ["401.9", "38.93"], "train_frequency": [1, 0]}),
        split=lambda s: np.flatnonzero(docs["split"].to_numpy() == s),
    )


def test_prediction_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    corpus = _toy_corpus()
    val = np.array([[0.9, 0.2], [0.3, 0.7]], dtype=np.float32)
    test = np.array([[0.6, 0.8], [0.1, 0.4]], dtype=np.float32)
    path = tmp_path / "p.parquet"
    write_predictions(path, corpus, val, test)
    pred = read_predictions(path)
    assert pred.doc_ids == {"validation": ["12", "13"], "test": ["14", "15"]}
    assert np.array_equal(pred.probs["test"], test) and pred.codes == ["401.9", "38.93"]
    assert pred.gold["test"].tolist() == [[True, True], [False, True]]
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1).replace_schema_metadata(
        table.schema.metadata), tmp_path / "short.parquet")  # fmt: skip
    with pytest.raises(InputError, match="test: needs exactly one row per"):
        read_predictions(tmp_path / "short.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not an icdtransfer prediction file"):
        read_predictions(tmp_path / "junk.parquet")
