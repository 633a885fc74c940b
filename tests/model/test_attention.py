"""Label-attention pooling (issue 22): every variant trains and transfers stage 1's EM and CV,
and the head's gradients equal a loop-based reference's (docs/DESIGN.md section 4)."""

from __future__ import annotations

import pytest
import torch
from tests.model.test_transfer import SHAPE, TARGET_TOKENS, stage1, train_steps  # noqa: F401

from icdtransfer.config import EncoderConfig, HeadConfig, TrainTargetConfig
from icdtransfer.model.attention import (
    attend,
    conv_feature_maps,
    reference_attend,
    reference_feature_maps,
)
from icdtransfer.model.cnn import CNNEncoder, TargetModel, build_model
from icdtransfer.model.transfer import VARIANTS, build_target_model
from icdtransfer.model_meta import EncoderShape, ModelMeta
from icdtransfer.sweep.manifest import member_sections


def build(name: str, stage1_model, seed: int = 0) -> TargetModel:  # noqa: ANN001
    return build_target_model(
        VARIANTS[name], SHAPE, 5, 6, 0.0, TARGET_TOKENS, stage1_model, seed, "label_attention"
    )


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_trains_and_transfers(name: str, stage1) -> None:  # noqa: F811
    model = build(name, stage1)
    state, _ = stage1
    if VARIANTS[name].transfer:
        for k, conv in enumerate(model.encoder.convs):
            assert torch.equal(conv.weight, state[f"convs.{k}.weight"])
            assert torch.equal(conv.bias, state[f"convs.{k}.bias"])
    before = model.attention.weight.detach().clone()
    train_steps(model)
    assert not torch.equal(before, model.attention.weight)
    if not VARIANTS[name].tune_convolutions:
        for k, conv in enumerate(model.encoder.convs):
            assert torch.equal(conv.weight, state[f"convs.{k}.weight"])


def test_gradients_match_a_loop_reference() -> None:
    torch.manual_seed(0)
    shape = EncoderShape(vocab_size=20, embedding_dim=5, filters=3, widths=(2, 4))
    encoder = CNNEncoder(shape).double()
    tokens = torch.randint(1, 20, (4, 9))
    lengths = torch.tensor([9, 6, 3, 1])  # 3: only width 2 fits; 1: no window at all
    tokens[torch.arange(9)[None, :] >= lengths[:, None]] = 0
    u = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    proj = torch.nn.Linear(6, 6).double()  # the adaptation layer, per position
    maps, valid = conv_feature_maps(
        tokens, lengths, encoder.embedding, encoder.convs, torch.float64
    )
    fast = attend(torch.relu(proj(maps)), valid, u, w, b)
    assert torch.isfinite(fast).all()
    refs = reference_feature_maps(tokens, lengths, encoder.embedding, encoder.convs)
    for i, ref in enumerate(refs):
        assert torch.allclose(maps[i][valid[i]], ref)
    params = [encoder.embedding.weight, *encoder.parameters(), u, w, b, *proj.parameters()]
    params = list(dict.fromkeys(params))
    g_fast = torch.autograd.grad(fast.sin().sum(), params)
    padded = torch.nn.utils.rnn.pad_sequence(refs, batch_first=True)
    slow = reference_attend(torch.relu(proj(padded)), valid[:, : padded.shape[1]], u, w, b)
    g_slow = torch.autograd.grad(slow.sin().sum(), params)
    assert torch.allclose(fast, slow)
    for a, c in zip(g_fast, g_slow, strict=True):
        assert torch.allclose(a, c)
    assert torch.equal(fast[3], b.detach())  # no window: the biases


def test_saved_member_rebuilds_and_old_meta_reads_as_max() -> None:
    meta = ModelMeta("target", SHAPE, 5, 0.0, 50, "tune_all", "x", 6, False, "label_attention")
    again = ModelMeta.from_json(meta.to_json())
    assert again.pooling == "label_attention"
    torch.manual_seed(1)
    model = build_model(meta).eval()
    copy = build_model(again).eval()
    copy.load_state_dict(model.state_dict())
    tokens, lengths = torch.randint(1, 30, (3, 8)), torch.tensor([8, 5, 2])
    assert torch.equal(model(tokens, lengths), copy(tokens, lengths))
    old = meta.to_json()
    del old["pooling"]
    assert ModelMeta.from_json(old).pooling == "max"


def test_max_pooling_keys_unchanged() -> None:
    sections = member_sections(EncoderConfig(), HeadConfig(), TrainTargetConfig())
    assert "pooling" not in sections["head"]
    attention = HeadConfig(pooling="label_attention")
    assert member_sections(EncoderConfig(), attention, TrainTargetConfig())["head"]["pooling"]


def test_codes_in_checkpointed_chunks_give_the_same_logits_and_gradients() -> None:
    """Chunks of 3 codes of 7 (3, 3, 1), checkpointed: the same logits and gradients as all
    7 at once, in float64 to the last digits, and the empty document still gets its biases."""
    torch.manual_seed(1)
    h = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    valid = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])
    u, w = (torch.randn(7, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    whole = attend(h, valid, u, w, b)
    chunked = attend(h, valid, u, w, b, chunk=3)
    assert torch.allclose(whole, chunked, rtol=0, atol=1e-12)
    assert torch.equal(chunked[2], b.detach())
    for a, c in zip(
        torch.autograd.grad(whole.sin().sum(), (h, u, w, b)),
        torch.autograd.grad(chunked.sin().sum(), (h, u, w, b)),
        strict=True,
    ):
        assert torch.allclose(a, c, rtol=0, atol=1e-12)
    with torch.no_grad():  # no gradients: chunks without checkpoints, the same values
        assert torch.allclose(attend(h, valid, u, w, b, chunk=2), whole, rtol=0, atol=1e-12)


def test_the_default_chunk_bounds_one_tensor_by_attention_bytes() -> None:
    """At 2 documents x 64 positions, ATTENTION_BYTES / 512 bytes per code: 8 codes fit
    when the bound is 4 KiB, so 20 codes run as 8 + 8 + 4, with the same result."""
    from icdtransfer.model import attention

    h = torch.randn(2, 64, 3)
    valid = torch.ones(2, 64, dtype=torch.bool)
    u, w, b = torch.randn(20, 3), torch.randn(20, 3), torch.randn(20)
    whole = attend(h, valid, u, w, b)
    seen = []
    real = attention._attend

    def spy(*args):  # noqa: ANN002, ANN202
        seen.append(args[2].shape[0])
        return real(*args)

    old = attention.ATTENTION_BYTES
    attention._attend, attention.ATTENTION_BYTES = spy, 4096
    try:
        chunked = attention.attend(h, valid, u, w, b)
    finally:
        attention._attend, attention.ATTENTION_BYTES = real, old
    assert seen == [8, 8, 4] and torch.allclose(chunked, whole, atol=1e-6)
