"""The encoder's fused max-pool against the textbook formulation it replaced (issue 11).

Tolerances: fp32 forward and gradients rtol=1e-5, atol=1e-6 (the two differ only in summation
order); bf16 forward identical (the same convolution), bf16 gradients rtol=atol=2e-2 on the
filters whose maximum is unique (at a tie, amax shares the gradient and max gives it to the
first window: both are subgradients). Every test runs with each forward kernel
(conv_pool.KERNELS); the `gemm` kernel's bf16 forward rounds apart from conv1d's (another
summation order before the bf16 rounding): rtol=atol=2e-2 there.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from icdtransfer.model.cnn import CNNEncoder, EncoderShape
from icdtransfer.model.conv_pool import KERNELS, reference_features

WIDTHS = (3, 4, 5)


def batch(repeats: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Six documents padded to 40 tokens: full, padded, exactly one width-5 window, shorter
    than widths 4 and 5, a single token, and (with `repeats`) a repeated phrase (tied windows)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([40, 23, 5, 3, 1, 30])
    tokens = torch.randint(1, 200, (6, 40), generator=g)
    if repeats:
        tokens[5, :30] = torch.tensor([7, 8, 9, 10, 11] * 6)
    tokens[torch.arange(40)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


@pytest.fixture(params=KERNELS)
def kernel(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def encoder(kernel: str):  # noqa: ANN201 - a factory
    def make(seed: int = 0) -> CNNEncoder:
        torch.manual_seed(seed)
        model = CNNEncoder(EncoderShape(200, 12, 8, WIDTHS))
        model.kernel = kernel
        return model

    return make


def forward_backward(model: CNNEncoder, fn, bf16: bool = False, repeats: bool = True):  # noqa: ANN001
    model.zero_grad(set_to_none=True)
    tokens, lengths = batch(repeats)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = fn(model, tokens, lengths)
    weights = torch.linspace(-1.0, 1.0, out.numel()).view_as(out)  # every feature matters
    (out.float() * weights).sum().backward()
    return out.float().detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def fused(model: CNNEncoder, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return model(tokens, lengths)


def textbook(model: CNNEncoder, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return reference_features(tokens, lengths, model.embedding, model.convs, WIDTHS)


def test_fp32_forward_and_gradients_match_the_textbook_formulation(encoder) -> None:
    model = encoder()
    ours, ours_grads = forward_backward(model, fused)
    ref, ref_grads = forward_backward(model, textbook)
    assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert set(ours_grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        assert grad.abs().sum() > 0, name  # the comparison is not between zeros
        assert_close(ours_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_semantics_padding_excluded_and_short_documents_give_zero(encoder) -> None:
    model = encoder()
    tokens, lengths = batch()
    with torch.no_grad():
        features = model(tokens, lengths)
        wider = model(torch.nn.functional.pad(tokens, (0, 25)), lengths)  # more padding
    assert_close(features, wider, rtol=0, atol=1e-6)  # kernels chosen by length may round apart
    per_width = features.view(len(lengths), len(WIDTHS), -1)
    assert torch.equal(per_width[3, 1:], torch.zeros_like(per_width[3, 1:]))  # 3 tokens: w4, w5
    assert torch.equal(per_width[4], torch.zeros_like(per_width[4]))  # one token: every width
    assert per_width[2].abs().sum() > 0  # exactly one window of width 5 still counts
    assert (per_width[0] > 0).any()


def test_gradient_only_where_a_window_won(encoder) -> None:
    model = encoder()
    tokens, lengths = batch()
    model(tokens[4:5], lengths[4:5]).sum().backward()  # a one-token document: no window at all
    for name, param in model.named_parameters():
        assert param.grad is None or not param.grad.any(), name


def test_frozen_encoder_gets_no_gradients_and_the_rest_still_does(encoder) -> None:
    model = encoder()
    model.embedding.weight.requires_grad_(False)
    tokens, lengths = batch()
    model(tokens, lengths).sum().backward()
    assert model.embedding.weight.grad is None
    assert all(conv.weight.grad is not None and conv.weight.grad.any() for conv in model.convs)


def test_bf16_forward_identical_and_gradients_match_where_the_maximum_is_unique(
    encoder, kernel: str
) -> None:
    model = encoder()
    ours, ours_grads = forward_backward(model, fused, bf16=True, repeats=False)
    ref, ref_grads = forward_backward(model, textbook, bf16=True, repeats=False)
    if kernel == "conv":
        assert torch.equal(ours, ref)
    else:
        assert_close(ours, ref, rtol=2e-2, atol=2e-2)
    tokens, lengths = batch(repeats=False)
    x = model.embedding(tokens).transpose(1, 2).to(torch.bfloat16).contiguous()
    for i, (conv, width) in enumerate(zip(model.convs, WIDTHS, strict=True)):
        with torch.no_grad():
            h = torch.nn.functional.conv1d(x, conv.weight.bfloat16(), conv.bias.bfloat16())
        valid = torch.arange(h.shape[2])[None, :] <= (lengths[:, None] - width)
        h = h.masked_fill(~valid[:, None, :], float("-inf"))
        unique = ((h == h.amax(2, keepdim=True)).sum(2) == 1) | (lengths[:, None] < width)
        filters = unique.all(0)
        assert filters.sum() >= 4  # enough filters compared to mean something
        name = f"convs.{i}.weight"
        assert_close(
            ours_grads[name][filters], ref_grads[name][filters], rtol=2e-2, atol=2e-2, msg=name
        )


@pytest.mark.parametrize("bf16", [False, True])
def test_training_step_runs_and_updates_every_trained_parameter(encoder, bf16: bool) -> None:
    model = encoder()
    head = torch.nn.Linear(model.shape.features, 3)
    tokens, lengths = batch()
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=0.01)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = head(model(tokens, lengths)).float().pow(2).mean()
    loss.backward()
    optimizer.step()
    for name, param in model.named_parameters():
        assert not torch.equal(param, before[name]), name
    assert torch.equal(model.embedding.weight[0], before["embedding.weight"][0])  # padding row


@pytest.mark.parametrize("bf16", [False, True])
def test_without_gradients_the_features_are_the_same(encoder, bf16: bool) -> None:
    """No grad (validation, prediction, a frozen copy): an amax without positions, the same
    values as the training forward."""
    model = encoder()
    tokens, lengths = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        trained = model(tokens, lengths)
        with torch.inference_mode():
            inferred = model(tokens, lengths)
    assert trained.requires_grad and not inferred.requires_grad
    assert torch.equal(trained.detach(), inferred)


def test_the_kernels_agree_in_fp32() -> None:
    tokens, lengths = batch()
    torch.manual_seed(0)
    model = CNNEncoder(EncoderShape(200, 64, 16, WIDTHS))
    features = {}
    for kernel in KERNELS:
        model.kernel = kernel
        with torch.no_grad():
            features[kernel] = model(tokens, lengths)
    assert features["conv"].abs().sum() > 0
    assert_close(features["gemm"], features["conv"], rtol=1e-5, atol=1e-5)
    assert_close(features["unique"], features["conv"], rtol=1e-5, atol=1e-5)
    model.kernel = "winograd"
    with pytest.raises(ValueError, match="unknown convolution kernel 'winograd'"):
        model(tokens, lengths)


def test_the_gemm_kernel_in_chunks_of_documents_computes_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the unfolded windows would pass UNFOLD_BYTES, `gemm` runs a few documents at a
    time (the paper's 6,000-token notes): same features, same gradients."""
    from icdtransfer.model import conv_pool

    torch.manual_seed(0)
    model = CNNEncoder(EncoderShape(200, 12, 8, WIDTHS))
    model.kernel = "gemm"
    whole, whole_grads = forward_backward(model, fused)
    monkeypatch.setattr(conv_pool, "UNFOLD_BYTES", 40 * max(WIDTHS) * 12 * 4 * 2)  # 2 documents
    chunked, chunked_grads = forward_backward(model, fused)
    assert torch.equal(whole, chunked)
    for name, grad in whole_grads.items():
        assert torch.equal(grad, chunked_grads[name]), name


def test_the_unique_kernel_in_chunks_of_documents_computes_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`unique` projects the batch's distinct tokens once and sums windows a few documents at
    a time where their map would pass UNFOLD_BYTES: same features, same gradients."""
    from icdtransfer.model import conv_pool

    torch.manual_seed(0)
    model = CNNEncoder(EncoderShape(200, 12, 8, WIDTHS))
    model.kernel = "unique"
    whole, whole_grads = forward_backward(model, fused)
    monkeypatch.setattr(conv_pool, "UNFOLD_BYTES", 40 * 3 * 8 * 4 * 2)  # 2 documents
    chunked, chunked_grads = forward_backward(model, fused)
    assert torch.equal(whole, chunked)
    for name, grad in whole_grads.items():
        assert torch.equal(grad, chunked_grads[name]), name


def test_the_unique_kernel_by_hand() -> None:
    """One width-2 filter over a 1-d embedding: a window's value is 10 e[x_t] + e[x_t+1] + 0.5,
    each distinct token projected once. Document of length 3, tokens 3 1 3 then 4: windows
    (3, 1) = 31.5 and (1, 3) = 13.5; (3, 4) = 34.5 reaches past the end and is excluded."""
    model = CNNEncoder(EncoderShape(5, 1, 1, (2,)))
    model.kernel = "unique"
    with torch.no_grad():
        model.embedding.weight.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]]))
        model.convs[0].weight.copy_(torch.tensor([[[10.0, 1.0]]]))
        model.convs[0].bias.fill_(0.5)
        tokens, lengths = torch.tensor([[3, 1, 3, 4], [2, 0, 0, 0]]), torch.tensor([3, 1])
        assert model(tokens, lengths).tolist() == [[31.5], [0.0]]  # 1 token: no window
