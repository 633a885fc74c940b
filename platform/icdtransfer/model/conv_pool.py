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

The forward has two kernels, both excluding windows that reach into padding; which one runs is
measured per machine (train/precision.py, `KERNELS`):

* `conv`: oneDNN's (or cuDNN's) conv1d per width on the [B, E, T] layout, max over time;
* `gemm`: the batch's embeddings gathered once as channels-last rows [B*T, E], every row's
  widest window unfolded beside it ([B*T, w_max*E]), and ONE GEMM against all widths' filters
  at once, the narrower widths' weights zero-padded ([w_max*E, F*len(widths)]; 20% more
  multiply-adds at widths 3/4/5), then max over time on [B, T, F*len(widths)]. On an AVX-512
  EPYC it beat `conv` by 1.3-1.5x at the default dimensions; on the same chip limited to AVX2
  `conv` was faster (README, "Speed for the science").
* `unique`: the convolution is linear in the embedding rows, so each distinct token of the
  batch is projected once through every width's every offset (one GEMM, [U, E] x
  [E, w_max * widths * F], narrower widths zero-padded), and a window's pre-activation is the
  sum of its tokens' projections at their offsets: an embedding_bag of w_max rows per
  position (the bias folded into offset 0). Its multiply-adds scale with the distinct tokens
  U rather than the positions B*T: a default training batch holds ~840 distinct tokens in
  ~4,500 positions (stage 1: ~820 in ~2,200), 3-5x fewer than `conv`'s. With 4,500 positions
  it ran 2.1x faster than `conv` on one AVX2 core (README, "Speed for the science").

Without gradients (validation, prediction, a frozen copy) the max-pool keeps no positions:
an amax, several times cheaper than max-with-indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NEG_INF = float("-inf")
KERNELS = ("conv", "gemm", "unique")
UNFOLD_BYTES = 64 << 20  # `gemm`: unfolded windows of at most this size at once (paper: 2 notes)


def conv_max_pool(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    embedding: nn.Embedding,
    convs: Sequence[nn.Conv1d],
    dtype: torch.dtype,
    kernel: str = "conv",
) -> torch.Tensor:
    """[B, F * len(convs)] max over the valid windows of each width (before ReLU); 0 for a
    document shorter than the width. Computed in `dtype` with `kernel` (KERNELS), gradients in
    the parameters' dtype."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown convolution kernel {kernel!r} ({', '.join(KERNELS)})")
    params = [p for conv in convs for p in (conv.weight, conv.bias)]
    table = embedding.weight
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in (table, *params)):
        with torch.autocast(tokens.device.type, enabled=False):
            pooled, _ = _pool(kernel, tokens, lengths, dtype, table, params, positions=False)
        return pooled
    return _ConvMaxPool.apply(tokens, lengths, dtype, kernel, embedding.padding_idx, table, *params)


def _pool(
    kernel: str,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    dtype: torch.dtype,
    table: torch.Tensor,
    params: Sequence[torch.Tensor],
    positions: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The pooled features [B, F * widths] and, with `positions`, each width's winners [B, F]."""
    weights, biases = params[::2], params[1::2]
    if kernel == "gemm":
        return _pool_gemm(tokens, lengths, dtype, table, weights, biases, positions)
    if kernel == "unique":
        return _pool_unique(tokens, lengths, dtype, table, weights, biases, positions)
    x = _lookup(tokens, table, dtype).transpose(1, 2).contiguous()  # [B, E, T]
    pooled, winners = [], []
    for weight, bias in zip(weights, biases, strict=True):
        values, index = _pool_one_width(x, lengths, weight.to(dtype), bias.to(dtype), positions)
        pooled.append(values)
        winners.append(index)
    return torch.cat(pooled, dim=1), winners


def _lookup(tokens: torch.Tensor, table: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Embedding rows in `dtype`, casting the smaller of the table and the lookup."""
    if table.shape[0] < tokens.numel():
        return F.embedding(tokens, table.to(dtype))
    return F.embedding(tokens, table).to(dtype)


class _ConvMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tokens, lengths, dtype, kernel, padding_idx, table, *params):  # noqa: ANN001
        with torch.autocast(tokens.device.type, enabled=False):  # dtype is chosen explicitly
            pooled, winners = _pool(kernel, tokens, lengths, dtype, table, params, positions=True)
        ctx.padding_idx = padding_idx
        ctx.save_for_backward(tokens, lengths, table, *params[::2], *winners)
        return pooled

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        tokens, lengths, table, *rest = ctx.saved_tensors
        weights, winners = rest[: len(rest) // 2], rest[len(rest) // 2 :]
        needs = ctx.needs_input_grad
        d_table = torch.zeros_like(table) if needs[5] else None
        d_params: list[torch.Tensor | None] = []
        grad = grad.float()
        filters = weights[0].shape[0]
        for i, (weight, index) in enumerate(zip(weights, winners, strict=True)):
            width, dim = weight.shape[2], weight.shape[1]
            g = grad[:, i * filters : (i + 1) * filters] * (lengths >= width)[:, None]
            g = g.t().contiguous()  # [F, B]: filter-major, as bmm over filters wants it
            ids = _winning_tokens(tokens, index, width).transpose(0, 1).reshape(-1)  # [F*B*w]
            d_weight = None
            if needs[6 + 2 * i]:  # dW[f, :, k] = sum_b g[f, b] E[x[b, t_bf + k]]
                windows = table.index_select(0, ids).view(filters, -1, width * dim).float()
                d_weight = torch.bmm(g[:, None, :], windows).view(filters, width, dim)
                d_weight = d_weight.transpose(1, 2).contiguous()  # [F, E, w]
            if d_table is not None:  # dE[x[b, t_bf + k]] += g[f, b] W[f, :, k]
                per_k = weight.float().transpose(1, 2)  # [F, w, E]
                step = (g[:, :, None, None] * per_k[:, None]).reshape(-1, dim)
                d_table.index_add_(0, ids, step.to(table.dtype))
            d_bias = g.sum(1) if needs[7 + 2 * i] else None
            d_params += [d_weight, d_bias]
        if d_table is not None and ctx.padding_idx is not None:
            d_table[ctx.padding_idx] = 0  # nn.Embedding's rule: the padding row never learns
        return (None, None, None, None, None, d_table, *d_params)


def _pool_one_width(
    x: torch.Tensor,
    lengths: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    positions: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Values and positions of the max over valid windows; 0 where there is no valid window."""
    width = weight.shape[2]
    if x.shape[2] < width:  # no document in the batch is that long
        zeros = x.new_zeros(x.shape[0], weight.shape[0])
        return zeros, torch.zeros(zeros.shape, dtype=torch.long, device=x.device)
    h = F.conv1d(x, weight, bias)  # [B, F, T - w + 1]
    windows = lengths - width + 1  # valid windows per document
    _mask_tail(h.unsqueeze(3), windows[:, None], time_dim=2)
    values, index = h.max(dim=2) if positions else (h.amax(dim=2), None)
    return values.masked_fill_((windows <= 0)[:, None], 0.0), index


def _mask_tail(h: torch.Tensor, windows: torch.Tensor, time_dim: int) -> None:
    """-inf at every window position >= `windows` ([B, G]: valid windows per document and width
    group) of `h` ([B, F, T, G] with time_dim 2, or [B, T, G, F] with time_dim 1), in place.

    Only the positions past the shortest document's last window can hold padding windows: in
    a bucketed batch a short tail. On the GPU the whole map is masked instead of syncing for
    the start."""
    steps_total = h.shape[time_dim]
    start = max(int(windows.min()), 0) if h.device.type == "cpu" else 0
    if start >= steps_total:
        return
    steps = torch.arange(start, steps_total, device=h.device)
    tail = steps[None, :, None] >= windows[:, None, :]  # [B, T - start, G]
    if time_dim == 2:
        h[:, :, start:].masked_fill_(tail[:, None, :, :], NEG_INF)
    else:
        h[:, start:].masked_fill_(tail[:, :, :, None], NEG_INF)


def _pool_gemm(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    dtype: torch.dtype,
    table: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    positions: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """All widths in one GEMM over unfolded channels-last windows (module docstring), a few
    documents at a time where the unfolded windows would pass UNFOLD_BYTES."""
    batch, steps = tokens.shape
    filters, dim = weights[0].shape[0], weights[0].shape[1]
    widths = [w.shape[2] for w in weights]
    widest = max(widths)
    per_document = steps * widest * dim * torch.empty((), dtype=dtype).element_size()
    chunk = max(UNFOLD_BYTES // max(per_document, 1), 1)
    if batch > chunk:
        parts = [
            _pool_gemm(
                tokens[i : i + chunk],
                lengths[i : i + chunk],
                dtype,
                table,
                weights,
                biases,
                positions,
            )
            for i in range(0, batch, chunk)
        ]
        values = torch.cat([v for v, _ in parts])
        per_width = zip(*(w for _, w in parts), strict=True)
        winners = [torch.cat(ws) for ws in per_width] if positions else []
        return values, winners
    # the rows' tokens back to back, then widest - 1 padding tokens, so that every row has a
    # full window; windows reaching past a document's end are masked below
    flat = torch.cat([tokens.reshape(-1), tokens.new_zeros(widest - 1)])
    rows = _lookup(flat, table, dtype)  # [B*T + widest - 1, E]
    unfolded = rows.as_strided((batch * steps, widest * dim), (dim, 1)).contiguous()
    packed = torch.zeros(len(widths) * filters, widest * dim, dtype=dtype, device=tokens.device)
    for i, weight in enumerate(weights):  # [F, E, w] -> [F, w*E], the unfolded rows' order
        block = weight.to(dtype).permute(0, 2, 1).reshape(filters, -1)
        packed[i * filters : (i + 1) * filters, : block.shape[1]] = block
    h = _linear(unfolded, packed, torch.cat(biases).to(dtype))
    h = h.view(batch, steps, len(widths), filters)
    windows = lengths[:, None] - torch.tensor(widths, device=tokens.device)[None, :] + 1
    _mask_tail(h, windows, time_dim=1)
    h = h.view(batch, steps, -1)
    if positions:
        values, index = h.max(dim=1)
        winners = list(index.split(filters, dim=1))
    else:
        values, winners = h.amax(dim=1), []
    empty = (windows <= 0).repeat_interleave(filters, dim=1)
    return values.masked_fill_(empty, 0.0), winners


def _pool_unique(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    dtype: torch.dtype,
    table: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    positions: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Every distinct token projected once, windows summed from the projections (module
    docstring); the sums and max over time a few documents at a time where their
    [positions, F * widths] map would pass UNFOLD_BYTES. The sums in fp32 in every `dtype`."""
    batch, steps = tokens.shape
    filters, dim = weights[0].shape[0], weights[0].shape[1]
    widths = [w.shape[2] for w in weights]
    widest, groups = max(widths), len(widths)
    flat = torch.cat([tokens.reshape(-1), tokens.new_zeros(widest - 1)])  # as in `gemm`
    distinct, inverse = torch.unique(flat, return_inverse=True)
    packed = torch.zeros(dim, widest, groups, filters, dtype=dtype, device=tokens.device)
    for i, weight in enumerate(weights):  # [F, E, w] -> [E, offset, width, F]
        packed[:, : weight.shape[2], i] = weight.to(dtype).permute(1, 2, 0)
    projected = _lookup(distinct, table, dtype) @ packed.view(dim, -1)  # [U, w_max*widths*F]
    projected = projected.float().view(-1, widest, groups * filters)
    projected[:, 0] += torch.cat(biases).float()
    projected = projected.view(-1, groups * filters)  # row u * widest + offset
    offsets = torch.arange(widest, device=tokens.device)
    windows = lengths[:, None] - torch.tensor(widths, device=tokens.device)[None, :] + 1
    chunk = max(UNFOLD_BYTES // max(steps * groups * filters * 4, 1), 1)
    values, winners = [], []
    for start in range(0, batch, chunk):
        end = min(start + chunk, batch)
        rows = inverse[start * steps : end * steps + widest - 1].unfold(0, widest, 1)
        h = F.embedding_bag(rows * widest + offsets, projected, mode="sum")
        h = h.view(end - start, steps, groups, filters)
        _mask_tail(h, windows[start:end], time_dim=1)
        h = h.view(end - start, steps, -1)
        if positions:
            top, index = h.max(dim=1)
            winners.append(index)
        else:
            top = h.amax(dim=1)
        values.append(top)
    pooled = torch.cat(values) if values else projected.new_zeros(0, groups * filters)
    empty = (windows <= 0).repeat_interleave(filters, dim=1)
    pooled = pooled.masked_fill_(empty, 0.0).to(dtype)
    if not positions:
        return pooled, []
    index = torch.cat(winners) if winners else tokens.new_zeros(0, groups * filters)
    return pooled, list(index.split(filters, dim=1))


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x @ weight.T + bias. On CPU through oneDNN's matmul: torch's own fp32 GEMM is MKL's,
    which on AMD CPUs ran at about half of oneDNN's rate (bench/_kernels.py). The oneDNN entry
    point is the one torch.compile's CPU backend calls (`mkldnn._linear_pointwise`); where it
    is missing or refuses a dtype (bf16 with ONEDNN_MAX_CPU_ISA=AVX2), F.linear, and oneDNN is
    not tried again for that dtype in this process."""
    op = _onednn_linear() if x.device.type == "cpu" and x.dtype not in _REFUSED else None
    if op is not None:
        try:
            return op(x, weight, bias, "none", [None], "")
        except RuntimeError:
            _REFUSED.add(x.dtype)
    return F.linear(x, weight, bias)


_REFUSED: set[torch.dtype] = set()  # dtypes oneDNN's linear refused in this process


def _onednn_linear():  # noqa: ANN202 - a torch op, or None
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def _winning_tokens(tokens: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
    """Token ids of each filter's winning window: [B, F, w]."""
    steps = torch.arange(width, device=index.device)
    positions = (index[:, :, None] + steps).reshape(index.shape[0], -1)
    # a document with no valid window (its gradient is zero) may point past the batch's end
    positions = positions.clamp_(max=tokens.shape[1] - 1)
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
