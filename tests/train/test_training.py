"""The training loop, stage runs, members, ensembles and the LR baseline on tiny corpora."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from icdtransfer.baseline.lr import train_baseline
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import evaluate
from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.train.ensemble import build_ensemble
from icdtransfer.train.loop import LoopSettings, fit
from icdtransfer.train.member import read_probs
from icdtransfer.train.stages import pretrain, train_target


@pytest.fixture(scope="module")
def pretrained(tiny: dict) -> Path:
    pretrain(tiny["model"], tiny["pretrain"], tiny["source"])
    return Path(tiny["pretrain"].out_dir)


def settings(**kw) -> LoopSettings:
    base = dict(
        optimizer="adam",
        learning_rate=0.01,
        batch_size=8,
        epochs=3,
        patience=5,
        seed=3,
        precision="fp32",
        device="cpu",
        bucket=True,
        max_tokens=60,
        word_dropout=0.2,
        min_length=3,
    )
    return LoopSettings(**{**base, **kw})


def tiny_model(corpus: Corpus, seed: int = 0) -> TargetModel:
    torch.manual_seed(seed)
    return TargetModel(
        EncoderShape(len(corpus.vocab), 16, 16, (2, 3)), len(corpus.label_table), 16, 0.1
    )


def test_stage_runs_write_complete_members(tiny: dict, pretrained: Path) -> None:
    for name in ("model.pt", "vocab.tsv", "labels.tsv", "metrics.json", "history.json"):
        assert (pretrained / name).exists()
    cfg = tiny["train_target"]
    metrics = train_target(tiny["model"], cfg, tiny["target"], "tune_all_frozen_copy", seed=1)
    member = Path(cfg.out_dir) / "tune_all_frozen_copy-seed1"
    corpus = Corpus.open(tiny["target"])
    val, test = read_probs(member)
    assert np.load(member / "probs_test.npy").dtype == np.float16
    assert val.shape == (len(corpus.split("validation")), len(corpus.label_table))
    assert test.shape == (len(corpus.split("test")), len(corpus.label_table))
    info = json.loads((member / "member.json").read_text())
    assert (
        info["variant"] == "tune_all_frozen_copy" and info["paper"] == "EM[v] CV[v] + EM[x] CV[x]"
    )
    # the stored metrics are exactly a recomputation from the stored probabilities
    again = evaluate(
        corpus.labels[corpus.split("validation")],
        val,
        corpus.labels[corpus.split("test")],
        test,
        corpus.label_table["train_frequency"].to_numpy(),
    )
    assert metrics["tuned"] == again["tuned"] and metrics["fixed_0.5"] == again["fixed_0.5"]
    assert json.loads((member / "metrics.json").read_text())["tuned"] == again["tuned"]


def test_same_seed_same_model_other_seed_other_model(
    tiny: dict, pretrained: Path, tmp_path: Path
) -> None:
    cfg = replace(tiny["train_target"], checkpoint_dir=str(tmp_path / "ck"))
    outs = []
    for i, seed in enumerate((5, 5, 6)):
        train_target(
            tiny["model"],
            replace(cfg, checkpoint_dir=str(tmp_path / f"ck{i}")),
            tiny["target"],
            "tune_all",
            seed=seed,
            out_dir=str(tmp_path / f"m{i}"),
        )
        outs.append(read_probs(tmp_path / f"m{i}")[1])
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_killed_run_resumes_to_the_same_result(tiny: dict, tmp_path: Path) -> None:
    corpus = Corpus.open(tiny["target"])
    full = fit(tiny_model(corpus), corpus, settings(epochs=3), tmp_path / "a.pt")
    fit(tiny_model(corpus), corpus, settings(epochs=1), tmp_path / "b.pt")  # "killed" after 1
    resumed_model = tiny_model(corpus, seed=99)  # different init: resume must overwrite it
    resumed = fit(resumed_model, corpus, settings(epochs=3), tmp_path / "b.pt")
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    timeless = [{k: v for k, v in h.items() if k != "train_docs_per_s"} for h in full.history]
    assert [
        {k: v for k, v in h.items() if k != "train_docs_per_s"} for h in resumed.history
    ] == timeless
    for key, value in full.best_state.items():
        assert torch.equal(value, resumed.best_state[key])


def test_early_stopping_after_patience_epochs(tiny: dict) -> None:
    corpus = Corpus.open(tiny["target"])
    # learning rate 0: validation macro-F can never improve after the first epoch
    result = fit(tiny_model(corpus), corpus, settings(epochs=10, patience=2, learning_rate=0.0))
    assert len(result.history) == 3 and result.best_epoch == 1


def test_bf16_and_fp32_reach_similar_metrics(tiny: dict) -> None:
    """Stated tolerance: validation micro-F within 0.05 after the same training."""
    corpus = Corpus.open(tiny["target"])
    results = {}
    for precision in ("fp32", "bf16"):
        result = fit(tiny_model(corpus), corpus, settings(epochs=8, precision=precision))
        results[precision] = max(h["val_micro_f"] for h in result.history)
        assert result.history[-1]["val_micro_f"] > result.history[0]["val_micro_f"] + 0.1
    assert results["fp32"] > 0.65  # the keyword task is learnt
    assert abs(results["fp32"] - results["bf16"]) <= 0.05


def test_ensemble_averages_member_probabilities(
    tiny: dict, pretrained: Path, tmp_path: Path
) -> None:
    cfg = replace(tiny["train_target"], checkpoint_dir=str(tmp_path / "ck"))
    members = []
    for seed in (1, 2, 3):
        out = tmp_path / f"seed{seed}"
        train_target(tiny["model"], cfg, tiny["target"], "tune_conv", seed=seed, out_dir=str(out))
        members.append(out)
    metrics = build_ensemble(members, tiny["target"], str(tmp_path / "ens"))
    val, test = read_probs(tmp_path / "ens")
    expected = np.mean([read_probs(m)[1] for m in members], axis=0)
    assert np.allclose(test, expected, atol=1e-3)  # float16 storage
    assert metrics["ensemble_size"] == 3
    # self-contained: each member's model files are copied inside the ensemble folder
    spec = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert len(spec["members"]) == 3
    for name, member in zip(spec["members"], members, strict=True):
        copy = (tmp_path / "ens" / name).resolve()
        assert copy.is_relative_to((tmp_path / "ens").resolve())
        assert (copy / "model.pt").read_bytes() == (member / "model.pt").read_bytes()


def test_lr_baseline_writes_a_member(tiny: dict, params, tmp_path: Path) -> None:
    cfg = replace(params.baseline, out_dir=str(tmp_path / "lr"), min_df=1)
    metrics = train_baseline(cfg, tiny["target"])
    val, test = read_probs(tmp_path / "lr")
    corpus = Corpus.open(tiny["target"])
    assert test.shape == (len(corpus.split("test")), len(corpus.label_table))
    assert metrics["tuned"]["micro_f"] > 0.5  # keywords make this easy for tf-idf + LR


def test_lr_baseline_is_stored_as_arrays_that_reproduce_sklearn(
    tiny: dict, params, tmp_path: Path
) -> None:
    """No pickle: the model is plain arrays (np.load refuses object arrays by default), and
    the model read back from them gives scikit-learn's probabilities."""
    from icdtransfer.baseline.lr import id_text, load_lr, make_classifier, make_vectorizer
    from icdtransfer.evaluate.metrics import dense

    cfg = replace(params.baseline, out_dir=str(tmp_path / "lr"), min_df=1)
    (tmp_path / "lr").mkdir()
    (tmp_path / "lr" / "model.joblib").write_bytes(b"an older version's pickle")
    train_baseline(cfg, tiny["target"])
    files = sorted(p.name for p in (tmp_path / "lr").iterdir())
    assert {"lr.npz", "vectorizer.npz"} <= set(files)
    assert not any(f.endswith((".joblib", ".pkl", ".pickle")) for f in files)
    for name in ("lr.npz", "vectorizer.npz"):
        with np.load(tmp_path / "lr" / name, allow_pickle=False) as arrays:
            assert {arrays[k].dtype.kind for k in arrays.files} <= {"U", "f", "i"}
    corpus = Corpus.open(tiny["target"])
    vectorizer = make_vectorizer(cfg)
    x = vectorizer.fit_transform(id_text(corpus, corpus.split("train")))
    sk = make_classifier(cfg).fit(x, dense(corpus.labels[corpus.split("train")]))
    test_text = id_text(corpus, corpus.split("test"))
    expected = sk.predict_proba(vectorizer.transform(test_text))
    stored_vectorizer, linear = load_lr(tmp_path / "lr")
    np.testing.assert_allclose(
        linear.predict_proba(stored_vectorizer.transform(test_text)), expected, atol=1e-5
    )  # float32 coefficients
