"""The training loop, stage runs, members, ensembles and the LR baseline on tiny corpora."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import loop_settings as settings
from icdtransfer.artifacts import MemberInfo, Metrics, read_probs
from icdtransfer.baseline.lr import train_baseline
from icdtransfer.config import MemberConfig
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.splits import patient_subsample
from icdtransfer.evaluate.metrics import evaluate
from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.train.ensemble import build_ensemble
from icdtransfer.train.loop import fit
from icdtransfer.train.stages import pretrain, train_target
from icdtransfer.train.state import FileCheckpointer


@pytest.fixture(scope="module")
def pretrained(tiny: dict) -> Path:
    pretrain(tiny["encoder"], tiny["pretrain"], tiny["source"])
    return Path(tiny["pretrain"].out_dir)


def member(tiny: dict, variant: str, seed: int, checkpoints: Path | None = None) -> MemberConfig:
    """The tiny fixture's member settings for one variant and seed."""
    ckpt = str(checkpoints) if checkpoints else tiny["member"].checkpoint_dir
    return replace(tiny["member"], variant=variant, seed=seed, checkpoint_dir=ckpt)


def train(tiny: dict, cfg, variant: str, seed: int, out: Path | None = None, ck=None) -> Metrics:
    return train_target(
        tiny["encoder"],
        tiny["head"],
        cfg,
        tiny["target"],
        member(tiny, variant, seed, ck),
        out_dir=None if out is None else str(out),
    )


def tiny_model(corpus: Corpus, seed: int = 0) -> TargetModel:
    torch.manual_seed(seed)
    return TargetModel(
        EncoderShape(len(corpus.vocab), 16, 16, (2, 3)), len(corpus.label_table), 16, 0.1
    )


def test_stage_runs_write_complete_members(tiny: dict, pretrained: Path) -> None:
    for name in ("model.pt", "vocab.tsv", "labels.tsv", "metrics.json", "history.json"):
        assert (pretrained / name).exists()
    metrics = train(tiny, tiny["train_target"], "tune_all_frozen_copy", 1)
    folder = Path(tiny["member"].out_dir) / "tune_all_frozen_copy-seed1"
    corpus = Corpus.open(tiny["target"])
    val, test = read_probs(folder)
    assert np.load(folder / "probs_test.npy").dtype == np.float16
    assert val.shape == (len(corpus.split("validation")), len(corpus.label_table))
    assert test.shape == (len(corpus.split("test")), len(corpus.label_table))
    info = json.loads((folder / "member.json").read_text())
    assert (
        info["variant"] == "tune_all_frozen_copy" and info["paper"] == "EM[v] CV[v] + EM[x] CV[x]"
    )
    history = json.loads((folder / "history.json").read_text())
    assert info["epochs_run"] == len(history) and info["epoch_cap"] == 3
    assert info["validation_curve"] == [h["val_macro_f"] for h in history]
    # its compute (docs/DESIGN.md, "Cost accounting"): CPU time spent, no GPU on a CPU run
    assert info["cpu_seconds"] > 0 and info["gpu_seconds"] == 0.0
    assert info["device"].startswith("cpu") and info["epochs"] == info["epochs_run"]
    # the stored metrics are exactly a recomputation from the stored probabilities
    again = evaluate(
        corpus.labels[corpus.split("validation")],
        val,
        corpus.labels[corpus.split("test")],
        test,
        corpus.label_table["train_frequency"].to_numpy(),
    )
    assert metrics.tuned == again.tuned and metrics.fixed == again.fixed
    assert Metrics.read(folder) == metrics
    stored = json.loads((folder / "metrics.json").read_text())
    assert set(stored) >= {"fixed", "tuned", "validation"} and stored["fixed"]["threshold"] == 0.5


def test_same_seed_same_model_other_seed_other_model(
    tiny: dict, pretrained: Path, tmp_path: Path
) -> None:
    outs = []
    for i, seed in enumerate((5, 5, 6)):
        train(tiny, tiny["train_target"], "tune_all", seed, tmp_path / f"m{i}", tmp_path / f"ck{i}")
        outs.append(read_probs(tmp_path / f"m{i}")[1])
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_killed_run_resumes_to_the_same_result(tiny: dict, tmp_path: Path) -> None:
    corpus = Corpus.open(tiny["target"])
    full = fit(tiny_model(corpus), corpus, settings(epochs=3), FileCheckpointer(tmp_path / "a.pt"))
    killed = FileCheckpointer(tmp_path / "b.pt")
    fit(tiny_model(corpus), corpus, settings(epochs=1), killed)  # "killed" after epoch 1
    resumed_model = tiny_model(corpus, seed=99)  # different init: resume must overwrite it
    resumed = fit(resumed_model, corpus, settings(epochs=3), killed)
    assert [h.epoch for h in resumed.state.history] == [1, 2, 3]

    def timeless(history):
        return [{**h.to_json(), "train_docs_per_s": None} for h in history]

    assert timeless(resumed.state.history) == timeless(full.state.history)
    for key, value in full.best_state.items():
        assert torch.equal(value, resumed.best_state[key])


def test_early_stopping_after_patience_epochs(tiny: dict) -> None:
    corpus = Corpus.open(tiny["target"])
    # learning rate 0: validation macro-F can never improve after the first epoch
    result = fit(tiny_model(corpus), corpus, settings(epochs=10, patience=2, learning_rate=0.0))
    assert len(result.state.history) == 3 and result.state.best_epoch == 1
    assert result.state.epochs_without_improvement == 2


def test_bf16_and_fp32_reach_similar_metrics(tiny: dict) -> None:
    """Stated tolerance: validation micro-F within 0.05 after the same training, on average
    over four seeds. One run of this 40-note task moves by up to 0.15 with any change of
    rounding (measured over five seeds, before and after the J_CE loss), in either direction."""
    corpus = Corpus.open(tiny["target"])
    results: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in range(4):
        for precision in results:
            model = tiny_model(corpus, seed)
            result = fit(model, corpus, settings(epochs=8, precision=precision, seed=seed + 3))
            curve = [h.val_micro_f for h in result.state.history]
            results[precision].append(max(curve))
            assert curve[-1] > curve[0] + 0.1
    fp32, bf16 = (float(np.mean(v)) for v in results.values())
    assert fp32 > 0.65  # the keyword task is learnt
    assert abs(fp32 - bf16) <= 0.05, results


def test_ensemble_averages_member_probabilities(
    tiny: dict, pretrained: Path, tmp_path: Path
) -> None:
    members = []
    for seed in (1, 2, 3):
        out = tmp_path / f"seed{seed}"
        train(tiny, tiny["train_target"], "tune_conv", seed, out, tmp_path / "ck")
        members.append(out)
    metrics = build_ensemble(members, tiny["target"], str(tmp_path / "ens"))
    val, test = read_probs(tmp_path / "ens")
    expected = np.mean([read_probs(m)[1] for m in members], axis=0)
    assert np.allclose(test, expected, atol=1e-3)  # float16 storage
    assert metrics.ensemble_size == 3 and Metrics.read(tmp_path / "ens").ensemble_size == 3
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
    assert metrics.tuned.micro_f > 0.5  # keywords make this easy for tf-idf + LR
    info = MemberInfo.read(tmp_path / "lr")
    assert info.stage == "baseline" and info.training is None and info.features > 0


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


def test_a_run_that_reaches_its_epoch_cap_has_not_converged(tiny: dict, tmp_path: Path) -> None:
    """Two epochs allowed, patience 10: the cap ends the run, so member.json says it did not
    converge, whatever its curve looks like."""
    cfg = replace(tiny["train_target"], epochs=2, patience=10)
    train(tiny, cfg, "scratch", 1, tmp_path / "m", tmp_path / "ck")
    info = MemberInfo.read(tmp_path / "m")
    assert info.training is not None
    assert (info.training.converged, info.training.stop_reason) == (False, "epoch_cap")
    assert (info.training.epochs_run, info.training.epoch_cap, info.training.patience) == (2, 2, 10)
    assert len(info.training.validation_curve) == 2
    stored = json.loads((tmp_path / "m" / "member.json").read_text())
    assert stored["converged"] is False and stored["stop_reason"] == "epoch_cap"


def test_a_run_stopped_early_has_converged(tiny: dict, tmp_path: Path) -> None:
    """Learning rate 0: validation macro-F cannot improve after epoch 1, so with patience 1
    early stopping fires after epoch 2, well before the cap of 10; with min_epochs 4 it
    may fire only from epoch 4 on."""
    for min_epochs, ran in ((1, 2), (4, 4)):
        cfg = replace(
            tiny["train_target"], epochs=10, patience=1, learning_rate=0.0, min_epochs=min_epochs
        )
        out = tmp_path / f"m{min_epochs}"
        train(tiny, cfg, "scratch", 1, out, tmp_path / f"ck{min_epochs}")
        training = MemberInfo.read(out).training
        assert training is not None
        assert (training.converged, training.stop_reason) == (True, "early_stopping")
        assert (training.best_epoch, training.epochs_run, training.epoch_cap) == (1, ran, 10)
        assert training.min_epochs == min_epochs
        assert len(set(training.validation_curve)) == 1  # nothing changed after epoch 1


def test_the_stage1_member_records_its_training(tiny: dict, pretrained: Path) -> None:
    training = MemberInfo.read(pretrained).training
    assert training is not None and training.epoch_cap == tiny["pretrain"].epochs
    assert training.epochs_run == len(training.validation_curve) > 0
    assert training.converged == (training.stop_reason == "early_stopping")
    stored = json.loads((pretrained / "member.json").read_text())  # stage 1 records its cost
    assert stored["cpu_seconds"] > 0 and stored["device"].startswith("cpu")


def _timeless(history) -> list[dict]:
    return [{**h.to_json(), "train_docs_per_s": None} for h in history]


def test_a_corrupt_checkpoint_is_moved_aside_and_the_previous_epoch_resumes(
    tiny: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = Corpus.open(tiny["target"])
    full = fit(tiny_model(corpus), corpus, settings(epochs=3))
    killed = FileCheckpointer(tmp_path / "b.pt")
    fit(tiny_model(corpus), corpus, settings(epochs=2), killed)  # "killed" after epoch 2
    data = killed.path.read_bytes()
    killed.path.write_bytes(data[: len(data) // 2])  # a power loss before the data was on disk
    resumed = fit(tiny_model(corpus, seed=99), corpus, settings(epochs=3), killed)
    assert _timeless(resumed.state.history) == _timeless(full.state.history)
    for key, value in full.best_state.items():
        assert torch.equal(value, resumed.best_state[key])
    assert (tmp_path / "b.pt.corrupt").read_bytes() == data[: len(data) // 2]
    assert "does not load" in caplog.text and "b.pt.corrupt" in caplog.text


def test_with_no_checkpoint_that_loads_the_run_starts_over_with_a_warning(
    tiny: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = Corpus.open(tiny["target"])
    full = fit(tiny_model(corpus), corpus, settings(epochs=2))
    killed = FileCheckpointer(tmp_path / "b.pt")
    fit(tiny_model(corpus), corpus, settings(epochs=2), killed)
    for path in tmp_path.iterdir():  # the last epoch's file and the one before it
        path.write_bytes(b"\0" * 100)
    rerun = fit(tiny_model(corpus), corpus, settings(epochs=2), killed)
    assert _timeless(rerun.state.history) == _timeless(full.state.history)
    assert "starting at epoch 1" in caplog.text
    rerun_again = fit(tiny_model(corpus), corpus, settings(epochs=2), killed)  # resumes now
    assert [h.epoch for h in rerun_again.state.history] == [1, 2]


def test_a_train_fraction_trains_on_its_patients_only(tiny: dict, tmp_path: Path) -> None:
    """train_fraction 0.5 (issue 22): the member trains on the documents of half the training
    patients (data/splits.py patient_subsample with its seed), and says how many."""
    cfg = replace(tiny["train_target"], epochs=2, train_fraction=0.5)
    train(tiny, cfg, "scratch", 1, tmp_path / "half", ck=tmp_path / "ck")
    corpus = Corpus.open(tiny["target"])
    patients = corpus.docs["patient_id"].to_numpy()[corpus.split("train")]
    expected = int(patient_subsample(patients, 0.5, seed=1).sum())
    info = json.loads((tmp_path / "half" / "member.json").read_text())
    assert info["train_fraction"] == 0.5 and info["train_documents"] == expected
    assert 0 < expected < len(patients)
