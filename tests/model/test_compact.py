"""Two speed-ups that change no number. Training only the embedding rows the training
documents use (model/compact.py): the trained model, the weight average, the curves and a
resumed run are bit for bit those of training the whole table. Remembering a fixed encoder's
validation features (TargetModel._encode): the same curves, and the encoder runs once per
validation batch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from builders import loop_settings
from icdtransfer.data.corpus import Corpus
from icdtransfer.model import cnn
from icdtransfer.model import compact as compact_module
from icdtransfer.model.cnn import CNNEncoder, EncoderShape, TargetModel
from icdtransfer.model.compact import CompactEmbedding, compact_embeddings
from icdtransfer.train.loop import fit, make_optimizer, predict, used_rows
from icdtransfer.train.state import FileCheckpointer


class Killed(RuntimeError):
    pass


def tiny_model(corpus: Corpus, frozen_copy: bool = False) -> TargetModel:
    """`tune_all`, or `tune_all_frozen_copy` (its copy fixed, as model/transfer.py sets it)."""
    torch.manual_seed(0)
    shape = EncoderShape(len(corpus.vocab), 16, 16, (2, 3))
    model = TargetModel(shape, len(corpus.label_table), 16, 0.1, frozen_copy=frozen_copy)
    if model.frozen_encoder is not None:
        model.frozen_encoder.requires_grad_(False)
    return model


def timeless(history):  # noqa: ANN001, ANN202
    return [{**h.to_json(), "train_docs_per_s": None} for h in history]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("frozen_copy", [False, True])
def test_training_the_used_rows_only_gives_the_same_weights_bit_for_bit(
    tiny: dict,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    precision: str,
    frozen_copy: bool,
) -> None:
    corpus = Corpus.open(tiny["target"])
    train = corpus.split("train")
    settings = loop_settings(epochs=3, weight_average=0.9, precision=precision, max_tokens=20)
    used = used_rows(corpus, train, settings.max_tokens)
    assert 1 < len(used) < len(corpus.vocab)  # some rows unused: the test can tell
    results = {}
    for share in (-1.0, 1.0):  # never compact; always
        monkeypatch.setattr(compact_module, "MAX_SHARE", share)
        model = tiny_model(corpus, frozen_copy)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="icdtransfer.train.loop"):
            results[share] = (fit(model, corpus, settings), model.state_dict())
        said = f"embedding: {len(used)} of {len(corpus.vocab)} rows occur in the training"
        assert (said in caplog.text) == (share > 0)
    (whole, whole_last), (compact, compact_last) = results[-1.0], results[1.0]
    assert timeless(whole.state.history) == timeless(compact.state.history)
    assert_same(whole.best_state, compact.best_state)
    assert_same(whole_last, compact_last)  # the model handed back holds the trained table
    table = whole_last["encoder.embedding.weight"]
    start = tiny_model(corpus, frozen_copy).state_dict()["encoder.embedding.weight"]
    unused = torch.ones(len(table), dtype=torch.bool)
    unused[used] = False
    assert torch.equal(table[unused], start[unused])  # unused rows never moved
    assert not torch.equal(table[used[1:]], start[used[1:]])  # used rows learned


def test_a_compacted_run_killed_and_resumed_ends_where_an_uninterrupted_one_does(
    tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compact_module, "MAX_SHARE", 1.0)
    corpus = Corpus.open(tiny["target"])
    settings = loop_settings(epochs=4, weight_average=0.9, max_tokens=20)
    full = fit(tiny_model(corpus), corpus, settings, FileCheckpointer(tmp_path / "a.pt"))

    def kill_after_epoch_2(record) -> None:  # noqa: ANN001
        if record.epoch == 2:
            raise Killed

    path = tmp_path / "b.pt"
    with pytest.raises(Killed):
        fit(tiny_model(corpus), corpus, settings, FileCheckpointer(path), kill_after_epoch_2)
    resumed = fit(tiny_model(corpus), corpus, settings, FileCheckpointer(path))
    assert timeless(resumed.state.history) == timeless(full.state.history)
    assert_same(full.best_state, resumed.best_state)


def test_the_compact_table_reads_writes_and_refuses_like_the_embedding() -> None:
    torch.manual_seed(0)
    embedding = nn.Embedding(10, 4, padding_idx=0)
    holder = nn.Module()
    holder.embedding = embedding
    original = embedding.weight.detach().clone()
    rows = torch.tensor([0, 3, 7])
    compaction = compact_embeddings(holder, rows)
    compact = holder.embedding
    assert isinstance(compact, CompactEmbedding) and compaction.rows_used == (3, 10)
    assert [name for name, _ in holder.named_parameters()] == ["embedding.compact"]
    assert list(holder.state_dict()) == ["embedding.weight"]  # saved as the embedding
    assert torch.equal(holder.state_dict()["embedding.weight"], original)
    with torch.no_grad():
        compact.compact[1] += 1.0  # row 3 trains
    expected = original.clone()
    expected[3] += 1.0
    assert torch.equal(compact.weight, expected)  # the full table follows
    ids, table = compact.lookup(torch.tensor([[3, 7, 0]]))
    assert ids.tolist() == [[1, 2, 0]] and table.padding_idx == 0
    with pytest.raises(IndexError):  # an unused word in a training batch is a bug: loud
        compact(torch.tensor([[5]]))
    with torch.no_grad():  # without gradients every word is looked up in the full table
        assert torch.equal(compact(torch.tensor([[5, 3]]))[0], expected[[5, 3]])
    state = {"embedding.weight": torch.zeros(10, 4)}
    holder.load_state_dict(state)
    assert torch.equal(compact.compact, torch.zeros(3, 4))
    compaction.restore()
    assert holder.embedding is embedding and torch.equal(embedding.weight, torch.zeros(10, 4))


def test_adam_moments_of_the_whole_table_become_the_used_rows_moments() -> None:
    holder = nn.Module()
    holder.embedding = nn.Embedding(10, 4, padding_idx=0)
    compaction = compact_embeddings(holder, torch.tensor([0, 3, 7]))
    optimizer = make_optimizer(holder, "adam", 0.01)
    moments = torch.arange(40.0).view(10, 4)
    optimizer.state[holder.embedding.compact] = {
        "step": torch.tensor(5.0),
        "exp_avg": moments.clone(),
        "exp_avg_sq": moments.clone(),
    }
    compaction.adopt(optimizer)
    state = optimizer.state[holder.embedding.compact]
    assert torch.equal(state["exp_avg"], moments[[0, 3, 7]])
    assert torch.equal(state["exp_avg_sq"], moments[[0, 3, 7]]) and float(state["step"]) == 5


def frozen_model(corpus: Corpus, frozen_copy: bool) -> TargetModel:
    """`frozen` (the encoder does not train) or `tune_all_frozen_copy` (its copy does not)."""
    model = tiny_model(corpus, frozen_copy)
    if not frozen_copy:
        model.encoder.requires_grad_(False)
    return model


@pytest.mark.parametrize("frozen_copy", [False, True])
def test_a_fixed_encoders_remembered_validation_features_change_no_curve(
    tiny: dict, monkeypatch: pytest.MonkeyPatch, frozen_copy: bool
) -> None:
    corpus = Corpus.open(tiny["target"])
    settings = loop_settings(epochs=3, weight_average=0.9, max_tokens=20)
    results = {}
    for cache in (False, True):
        monkeypatch.setattr(cnn, "FIXED_FEATURE_CACHE", cache)
        results[cache] = fit(frozen_model(corpus, frozen_copy), corpus, settings)
    assert timeless(results[False].state.history) == timeless(results[True].state.history)
    assert_same(results[False].best_state, results[True].best_state)


def test_a_fixed_encoder_runs_once_per_validation_batch(
    tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = Corpus.open(tiny["target"])
    val = corpus.split("validation")
    calls = {"fixed": 0, "trained": 0}
    forward = CNNEncoder.forward

    def counted(self, tokens, lengths):  # noqa: ANN001, ANN202
        trains = any(p.requires_grad for p in self.parameters())
        calls["trained" if trains else "fixed"] += 1
        return forward(self, tokens, lengths)

    monkeypatch.setattr(CNNEncoder, "forward", counted)
    model = frozen_model(corpus, frozen_copy=True)  # a trained encoder and a frozen copy
    cpu = torch.device("cpu")
    first = predict(model, corpus, val, 8, 20, 3, cpu, False)
    batches = calls["trained"]
    assert batches == -(-len(val) // 8) and calls["fixed"] == batches
    with torch.no_grad():
        model.frozen_encoder.convs[0].bias += 0.0  # an in-place change: computed again
    second = predict(model, corpus, val, 8, 20, 3, cpu, False)
    third = predict(model, corpus, val, 8, 20, 3, cpu, False)
    assert calls["trained"] == 3 * batches and calls["fixed"] == 2 * batches
    assert np.array_equal(first, second) and np.array_equal(second, third)
