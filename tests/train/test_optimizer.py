"""The loss is the paper's J_CE, and the paper preset's AdaDelta trains (issue: it stalled)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from builders import keyword_codes_jsonl, loop_settings
from icdtransfer.config import load_params
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.prepare import prepare_target
from icdtransfer.evaluate.metrics import dense, scores_at, tune_threshold
from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.train.loop import fit, make_optimizer, multilabel_bce, predict

REPO = Path(__file__).resolve().parents[2]


def test_loss_sums_over_labels_and_averages_over_the_batch() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    p = torch.sigmoid(logits)
    by_hand = -(labels * p.log() + (1 - labels) * (1 - p).log()).sum() / 2  # J_CE, batch mean
    assert multilabel_bce(logits, labels).item() == pytest.approx(by_hand.item(), rel=1e-6)
    # three labels: three times the mean over batch x labels, so gradients are not L-fold small
    mean = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert multilabel_bce(logits, labels).item() == pytest.approx(3 * mean.item(), rel=1e-6)


def test_adadelta_uses_kims_rho_and_epsilon() -> None:
    group = make_optimizer(torch.nn.Linear(2, 2), "adadelta", 1.0).param_groups[0]
    assert (group["rho"], group["eps"], group["lr"]) == (0.95, 1e-6, 1.0)


@pytest.fixture(scope="module")
def keyword_corpus(tiny: dict, params, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """1,500 short notes, 30 codes, each code present exactly when its keyword is."""
    root = tmp_path_factory.mktemp("keywords")
    target = replace(
        params.target,
        format="jsonl",
        code_system="none",
        truncate_depth=None,
        input=str(keyword_codes_jsonl(root / "notes.jsonl")),
        out_dir=str(root / "target"),
        validation_size=150,
        test_size=150,
        min_count=2,
        vocab_min_patients=1,
    )
    prepare_target(target, params.tokenizer, tiny["source"])
    return Corpus.open(target.out_dir)


def test_paper_preset_optimiser_trains_like_adam(keyword_corpus: Corpus) -> None:
    """The preset's AdaDelta settings reach at least 80% of Adam's best validation macro-F in
    the same 10 epochs (same model, the preset's minibatch of 50). Measured: Adam 0.58, the
    preset 0.74. With the loop before the fix (loss averaged over labels too, PyTorch's rho
    0.9) AdaDelta reached 0.36 and Adam 0.62: this test failed. A model that learned nothing
    scores about 0.34."""
    paper = load_params(REPO / "presets" / "paper.yaml").train_target
    adam_lr = load_params(REPO / "params.yaml").train_target.learning_rate
    corpus = keyword_corpus
    assert len(corpus.label_table) == 30
    val = corpus.split("validation")
    y_val = dense(corpus.labels[val])
    best = {}
    for name, optimizer, lr in (
        ("adam", "adam", adam_lr),
        ("preset", paper.optimizer, paper.learning_rate),
    ):
        torch.manual_seed(1)
        model = TargetModel(
            EncoderShape(len(corpus.vocab), 32, 64, (2, 3)), len(corpus.label_table), 64, 0.1
        )
        if name == "adam":  # what a model that learned nothing scores (a tuned threshold)
            probs = predict(model, corpus, val, 50, 80, 3, torch.device("cpu"), False)
            untrained = scores_at(y_val, probs >= tune_threshold(y_val, probs)).macro_f
        settings = loop_settings(
            optimizer=optimizer,
            learning_rate=lr,
            batch_size=paper.batch_size,  # the preset's minibatch for both
            epochs=10,
            patience=10,
            seed=1,
            max_tokens=80,
            word_dropout=0.0,
            min_length=3,
        )
        history = fit(model, corpus, settings).state.history
        best[name] = max(h.val_macro_f for h in history)
    assert paper.optimizer == "adadelta" and paper.batch_size == 50
    assert best["adam"] > untrained + 0.15, (best, untrained)  # Adam learned the keywords
    assert best["preset"] >= 0.8 * best["adam"], best
