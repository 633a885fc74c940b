"""The five variants: which parameters come from stage 1 and which ones move in stage 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icdtransfer.model.cnn import CNNEncoder, EncoderShape, SourceModel
from icdtransfer.model.transfer import VARIANTS, build_target_model, encoder_state_by_vocabulary
from icdtransfer.train.loop import make_optimizer

SHAPE = EncoderShape(vocab_size=30, embedding_dim=8, filters=4, widths=(2, 3))
STAGE1_TOKENS = ["<pad>", "<unk>", "<num>"] + [f"s{i}" for i in range(27)]
# the target vocabulary shares some words, in another order, and has words of its own
TARGET_TOKENS = ["<pad>", "<unk>", "<num>", "s5", "new1", "s1", "s20"] + [
    f"t{i}" for i in range(23)
]


@pytest.fixture
def stage1() -> tuple[dict[str, torch.Tensor], list[str]]:
    torch.manual_seed(123)
    source = SourceModel(SHAPE, n_labels=7, dropout=0.0)
    state = {
        k.removeprefix("encoder."): v.clone()
        for k, v in source.state_dict().items()
        if k.startswith("encoder.")
    }
    return state, STAGE1_TOKENS


def build(name: str, stage1, seed: int = 0):
    return build_target_model(
        VARIANTS[name],
        SHAPE,
        n_labels=5,
        adaptation_size=6,
        dropout=0.0,
        target_tokens=TARGET_TOKENS,
        stage1=stage1,
        seed=seed,
    )


def train_steps(model: torch.nn.Module, steps: int = 3) -> None:
    optimizer = make_optimizer(model, "adam", 0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        tokens = torch.randint(1, SHAPE.vocab_size, (4, 12), generator=gen)
        lengths = torch.tensor([12, 10, 7, 3])
        labels = (torch.rand(4, 5, generator=gen) < 0.4).float()
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(tokens, lengths), labels)
        loss.backward()
        optimizer.step()


def snapshot(encoder: CNNEncoder) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return encoder.embedding.weight.detach().clone(), [
        c.weight.detach().clone() for c in encoder.convs
    ]


def test_words_keep_their_vectors_across_vocabularies(stage1) -> None:
    state, tokens = stage1
    model = build("tune_all", stage1)
    emb = model.encoder.embedding.weight.detach()
    for word in ("s5", "s1", "s20", "<unk>"):
        assert torch.equal(
            emb[TARGET_TOKENS.index(word)], state["embedding.weight"][tokens.index(word)]
        )
    assert torch.equal(model.encoder.convs[1].weight, state["convs.1.weight"])
    fresh = CNNEncoder(SHAPE)
    assert (
        encoder_state_by_vocabulary(state, tokens, fresh, TARGET_TOKENS) == 6
    )  # 3 specials + s5, s1, s20


def test_frozen_leaves_em_and_cv_bit_identical(stage1) -> None:
    model = build("frozen", stage1)
    emb, convs = snapshot(model.encoder)
    head = model.output.weight.detach().clone()
    train_steps(model)
    assert torch.equal(model.encoder.embedding.weight, emb)
    assert all(torch.equal(c.weight, w) for c, w in zip(model.encoder.convs, convs, strict=True))
    assert not torch.equal(model.output.weight, head)  # the heads do learn


def test_tune_conv_moves_cv_only(stage1) -> None:
    model = build("tune_conv", stage1)
    emb, convs = snapshot(model.encoder)
    train_steps(model)
    assert torch.equal(model.encoder.embedding.weight, emb)
    assert not torch.equal(model.encoder.convs[0].weight, convs[0])


def test_tune_all_frozen_copy_keeps_the_copy(stage1) -> None:
    model = build("tune_all_frozen_copy", stage1)
    assert model.frozen_encoder is not None
    emb_copy, convs_copy = snapshot(model.frozen_encoder)
    emb, _ = snapshot(model.encoder)
    shared = [i for i, t in enumerate(TARGET_TOKENS) if t in STAGE1_TOKENS]
    assert torch.equal(emb[shared], emb_copy[shared])  # both copies start from stage 1
    model.train()
    assert not model.frozen_encoder.training  # the copy never runs in training mode
    train_steps(model)
    assert torch.equal(model.frozen_encoder.embedding.weight, emb_copy)
    assert all(
        torch.equal(c.weight, w)
        for c, w in zip(model.frozen_encoder.convs, convs_copy, strict=True)
    )
    assert not torch.equal(model.encoder.embedding.weight, emb)


NEW_WORDS = [i for i, t in enumerate(TARGET_TOKENS) if t not in STAGE1_TOKENS]


@pytest.mark.parametrize("name", ["frozen", "tune_conv"])
def test_fixed_embeddings_read_new_words_as_unknown(stage1, name: str) -> None:
    state, tokens = stage1
    unk = state["embedding.weight"][tokens.index("<unk>")]
    model = build(name, stage1)
    emb = model.encoder.embedding.weight.detach()
    assert len(NEW_WORDS) == 24  # new1, t0..t22
    assert all(torch.equal(emb[i], unk) for i in NEW_WORDS)  # no frozen random row
    # so the model reads a note with words stage 1 never saw as stage 1 would: as <unk>
    doc = torch.tensor([[TARGET_TOKENS.index("s5"), NEW_WORDS[0], NEW_WORDS[5], 2, 1, 6]])
    as_unk = torch.where(torch.isin(doc, torch.tensor(NEW_WORDS)), 1, doc)
    lengths = torch.tensor([6])
    assert torch.equal(model.encoder(doc, lengths), model.encoder(as_unk, lengths))
    train_steps(model)
    assert torch.equal(model.encoder.embedding.weight, emb)  # and they stay fixed


def test_tuned_embeddings_learn_a_vector_per_new_word(stage1) -> None:
    state, tokens = stage1
    unk = state["embedding.weight"][tokens.index("<unk>")]
    model = build("tune_all_frozen_copy", stage1)
    assert model.frozen_encoder is not None
    copy_rows = model.frozen_encoder.embedding.weight.detach()
    tuned_rows = model.encoder.embedding.weight.detach().clone()
    assert all(torch.equal(copy_rows[i], unk) for i in NEW_WORDS)  # the copy is EM[x]
    assert not any(torch.equal(tuned_rows[i], unk) for i in NEW_WORDS)  # EM[v]: fresh rows
    assert len({tuple(tuned_rows[i].tolist()) for i in NEW_WORDS}) == len(NEW_WORDS)


def test_frozen_copy_doubles_the_feature_width(stage1) -> None:
    tokens, lengths = torch.randint(1, 30, (2, 9)), torch.tensor([9, 4])
    single = build("tune_all", stage1).features(tokens, lengths)
    double = build("tune_all_frozen_copy", stage1).features(tokens, lengths)
    assert single.shape == (2, SHAPE.features)
    assert double.shape == (2, 2 * SHAPE.features)


def test_scratch_never_reads_stage1(stage1) -> None:
    without = build("scratch", None, seed=4)  # works with no stage-1 model at all
    with_stage1 = build("scratch", stage1, seed=4)
    for a, b in zip(without.state_dict().values(), with_stage1.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    row = TARGET_TOKENS.index("s5")
    assert not torch.equal(
        without.encoder.embedding.weight[row],
        stage1[0]["embedding.weight"][STAGE1_TOKENS.index("s5")],
    )
    with pytest.raises(ValueError, match="needs a stage-1 model"):
        build("tune_all", None)


def test_padding_does_not_change_features() -> None:
    torch.manual_seed(0)
    encoder = CNNEncoder(SHAPE).eval()
    doc = torch.randint(3, 30, (1, 7))
    padded = torch.cat([doc, torch.zeros(1, 20, dtype=torch.long)], dim=1)
    a = encoder(doc, torch.tensor([7]))
    b = encoder(padded, torch.tensor([7]))
    # Not bitwise: oneDNN picks its kernel by sequence length, and on an AMD EPYC the 7- and
    # 27-step convolutions round differently (6e-8 apart here). A window that
    # reached into padding would be off by a whole filter response.
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    short = encoder(torch.tensor([[5, 0, 0, 0]]), torch.tensor([1]))  # shorter than any width
    assert torch.equal(short, torch.zeros_like(short))
    assert np.isfinite(a.detach().numpy()).all()
