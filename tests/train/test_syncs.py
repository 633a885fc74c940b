"""No host sync in the training step (issue 19): the epoch's loss is read once, at its end,
and `predict` copies its probabilities to the host once, in the order of the documents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builders import loop_settings as settings
from icdtransfer.data.corpus import Corpus
from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.train.loop import make_optimizer, predict, train_epoch

CPU = torch.device("cpu")


def tiny_model(corpus: Corpus) -> TargetModel:
    torch.manual_seed(0)
    return TargetModel(
        EncoderShape(len(corpus.vocab), 16, 16, (2, 3)), len(corpus.label_table), 16, 0.1
    )


def test_an_epoch_reads_its_loss_once(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = Corpus.open(tiny["target"])
    model = tiny_model(corpus)
    optimizer = make_optimizer(model, "adam", 0.01)
    docs = corpus.split("train")
    reads: list[str] = []
    to_float, item = torch.Tensor.__float__, torch.Tensor.item

    def counted_float(self: torch.Tensor) -> float:
        reads.append("float")
        return to_float(self)

    def counted_item(self: torch.Tensor):  # noqa: ANN202
        reads.append("item")
        return item(self)

    monkeypatch.setattr(torch.Tensor, "__float__", counted_float)
    monkeypatch.setattr(torch.Tensor, "item", counted_item)
    loss, _ = train_epoch(model, corpus, docs, optimizer, settings(batch_size=4), 0, CPU, False)
    steps = -(-len(docs) // 4)
    assert steps > 3 and reads == ["float"]  # one read for the whole epoch, not one a step
    assert np.isfinite(loss) and loss > 0


def test_predict_returns_the_documents_order(tiny: dict) -> None:
    corpus = Corpus.open(tiny["target"])
    model = tiny_model(corpus)
    docs = corpus.split("validation")
    order = np.random.default_rng(0).permutation(docs)
    args = (4, 60, 3, CPU, False)
    sorted_probs, shuffled = (
        predict(model, corpus, docs, *args),
        predict(model, corpus, order, *args),
    )
    assert sorted_probs.dtype == np.float32 and sorted_probs.shape[0] == len(docs)
    position = {int(d): i for i, d in enumerate(docs)}
    expected = sorted_probs[[position[int(d)] for d in order]]
    np.testing.assert_allclose(shuffled, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(shuffled, sorted_probs)  # the permutation moved rows
