"""Embedding -> Conv1d -> max over time, with a backward pass that touches only the maxima.

Max-over-time passes each filter's gradient to one window per document: the one that held the
maximum. The textbook backward (autograd through conv1d and amax) still computes dense
[B, F, T] gradients and runs two full convolutions over them, twice the forward's work, to
obtain gradients that are zero everywhere but at those windows. Here the backward gathers the
B x F winning windows instead:

    dW_f[:, k]   = sum_b g[b, f] * E[x[b, t_bf + k]]        (weights, per width)
    dE[v]       += g[b, f] * W_f[:, k]  for v = x[b, t_bf + k]  (embedding rows)

which is 2 * B * F * w * E multiply-adds per width instead of 4 * B * F * w * E * T. In fp32
the gradients equal autograd's up to summation order; the one difference is ties: amax
shares a gradient among equal maxima, max's index gives it to the first. In fp32 two windows
tie only when they hold the same words, and then both routes give the same weight and
embedding gradients; under bf16, where ties between different windows are common, either is a
valid subgradient.

The forward is oneDNN's (or cuDNN's) conv1d on the [B, E, T] layout (a channels-last view
measured slower on CPU: oneDNN reorders it per width; so did one convolution of 3F filters of
the widest width, zero-padded, and a GEMM over unfolded windows), windows reaching into padding
excluded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NEG_INF = float("-inf")


def conv_max_pool(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    embedding: nn.Embedding,
    convs: Sequence[nn.Conv1d],
    dtype: torch.dtype,
) -> torch.Tensor:
    """[B, F * len(convs)] max over the valid windows of each width (before ReLU); 0 for a
    document shorter than the width. Computed in `dtype`, gradients in the parameters' dtype."""
    params = [p for conv in convs for p in (conv.weight, conv.bias)]
    return _ConvMaxPool.apply(
        tokens, lengths, dtype, embedding.padding_idx, embedding.weight, *params
    )


class _ConvMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tokens, lengths, dtype, padding_idx, table, *params):  # noqa: ANN001
        pooled, winners = [], []
        with torch.autocast(tokens.device.type, enabled=False):  # dtype is chosen explicitly
            if table.shape[0] < tokens.numel():  # cast the smaller of table and lookup
                x = F.embedding(tokens, table.to(dtype))
            else:
                x = F.embedding(tokens, table).to(dtype)
            x = x.transpose(1, 2).contiguous()  # [B, E, T]
            for weight, bias in zip(params[::2], params[1::2], strict=True):
                values, index = _pool_one_width(x, lengths, weight.to(dtype), bias.to(dtype))
                pooled.append(values)
                winners.append(index)
        ctx.padding_idx = padding_idx
        ctx.save_for_backward(tokens, lengths, table, *params[::2], *winners)
        return torch.cat(pooled, dim=1)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        tokens, lengths, table, *rest = ctx.saved_tensors
        weights, winners = rest[: len(rest) // 2], rest[len(rest) // 2 :]
        needs = ctx.needs_input_grad
        d_table = torch.zeros_like(table) if needs[4] else None
        d_params: list[torch.Tensor | None] = []
        grad = grad.float()
        filters = weights[0].shape[0]
        for i, (weight, index) in enumerate(zip(weights, winners, strict=True)):
            width, dim = weight.shape[2], weight.shape[1]
            g = grad[:, i * filters : (i + 1) * filters] * (lengths >= width)[:, None]
            g = g.t().contiguous()  # [F, B]: filter-major, as bmm over filters wants it
            ids = _winning_tokens(tokens, index, width).permute(1, 2, 0)  # [F, w, B]
            per_k = weight.float().permute(2, 0, 1)  # [w, F, E]
            d_weight = weight.new_empty(width, filters, dim) if needs[5 + 2 * i] else None
            for k in range(width):
                rows = ids[:, k].reshape(-1)  # embedding row of each (filter, document)
                if d_weight is not None:
                    windows = table.index_select(0, rows).view(filters, -1, dim).float()
                    d_weight[k] = torch.bmm(g[:, None, :], windows).squeeze(1)
                if d_table is not None:
                    step = (g[:, :, None] * per_k[k][:, None, :]).view(-1, dim)
                    d_table.index_add_(0, rows, step.to(table.dtype))
            if d_weight is not None:
                d_weight = d_weight.permute(1, 2, 0).contiguous()  # [F, E, w]
            d_bias = g.sum(1) if needs[6 + 2 * i] else None
            d_params += [d_weight, d_bias]
        if d_table is not None and ctx.padding_idx is not None:
            d_table[ctx.padding_idx] = 0  # nn.Embedding's rule: the padding row never learns
        return (None, None, None, None, d_table, *d_params)


def _pool_one_width(
    x: torch.Tensor, lengths: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and positions of the max over valid windows; 0 where there is no valid window."""
    width = weight.shape[2]
    if x.shape[2] < width:  # no document in the batch is that long
        zeros = x.new_zeros(x.shape[0], weight.shape[0])
        return zeros, torch.zeros(zeros.shape, dtype=torch.long, device=x.device)
    h = F.conv1d(x, weight, bias)  # [B, F, T - w + 1]
    windows = lengths - width + 1  # valid windows per document
    # Only the columns past the shortest document can hold padding windows: in a bucketed
    # batch a short tail. On the GPU the whole map is masked instead of syncing for the start.
    start = max(int(windows.min()), 0) if h.device.type == "cpu" else 0
    if start < h.shape[2]:
        steps = torch.arange(start, h.shape[2], device=h.device)
        tail = (steps[None, :] >= windows[:, None])[:, None, :]
        h[:, :, start:].masked_fill_(tail, NEG_INF)
    values, index = h.max(dim=2)
    return values.masked_fill_((windows <= 0)[:, None], 0.0), index


def _winning_tokens(tokens: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
    """Token ids of each filter's winning window: [B, F, w]."""
    steps = torch.arange(width, device=index.device)
    positions = (index[:, :, None] + steps).reshape(index.shape[0], -1)
    return tokens.gather(1, positions).view(*index.shape, width)


def reference_features(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    embedding: nn.Embedding,
    convs: Sequence[nn.Conv1d],
    widths: Sequence[int],
) -> torch.Tensor:
    """The textbook formulation, as the encoder computed it before issue 11: every width's full
    feature map, windows reaching into padding set to -inf, amax over time, ReLU, autograd's
    dense backward. The oracle for the tests and the baseline of the benches."""
    x = embedding(tokens).transpose(1, 2)  # [B, E, T]
    if torch.is_autocast_enabled(x.device.type):
        x = x.to(torch.get_autocast_dtype(x.device.type))
    x = x.contiguous()
    steps = torch.arange(tokens.shape[1], device=tokens.device)
    pooled = []
    for conv, width in zip(convs, widths, strict=True):
        h = conv(x)
        invalid = steps[: h.shape[2]][None, :] > (lengths[:, None] - width)
        h = h.masked_fill(invalid[:, None, :], NEG_INF)
        pooled.append(torch.relu(h.amax(dim=2)) if h.shape[2] else h.new_zeros(h.shape[:2]))
    return torch.cat(pooled, dim=1)
