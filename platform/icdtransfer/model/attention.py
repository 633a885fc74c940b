"""Per-code attention pooling (CAML's), the stage-2 head's `label_attention` option
(docs/DESIGN.md section 4, "Pooling").

Max-over-time keeps one number per filter; label attention keeps every window's features and
lets each code choose where to look:

    H_t      = ReLU(W_w * E[x])_t  for w in widths, concatenated     (the feature maps)
    h_t      = dropout(ReLU(W_a H_t + b_a))                           (adaptation, per position)
    alpha_l  = softmax_t(u_l . h_t)                                   (one attention per code)
    logit_l  = sum_t alpha_lt (w_l . h_t) + b_l  = w_l . v_l + b_l,  v_l = sum_t alpha_lt h_t

The widths have different window counts; their maps are aligned by window start t (the
narrowest width's count of positions), and a wider width's windows that reach into padding
hold 0 (ReLU's "nothing") at the positions the narrow width still covers. Positions whose
narrowest window reaches into padding get no attention, so a document's logits do not depend
on how much its batch was padded. A document shorter than every width has no position: its
attention is 0 everywhere (not a 0/0 softmax) and its logits are the biases b_l.

The logits are computed as sum_t alpha_lt p_lt with p = h W^T, [B, T, L] like the scores:
two GEMMs and an elementwise product, never the [B, L, A] per-code vectors v_l. The
backward is autograd's: attention needs every window's gradient, so the convolutions'
backward is dense, unlike max pooling's (model/conv_pool.py); bench/pooling.py measures the
cost. Memory is a few [B, T, L] tensors: 16 x 400 x 71 floats at the default shapes, but
16 x 4,000 x 8,929 (2.3 GB each) at MIMIC-III full's. Above ATTENTION_BYTES per tensor the
codes are taken in chunks, each checkpointed in training (its [B, T, chunk] tensors are
recomputed in the backward, not kept): memory a few [B, T, chunk], for one more forward of
the attention's two GEMMs. The result is the same up to summation order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

POOLINGS = ("max", "label_attention")
ATTENTION_BYTES = 256 << 20  # one [B, T, codes] fp32 tensor at most this large, else chunks


def conv_feature_maps(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    embedding: nn.Embedding,
    convs: Sequence[nn.Conv1d],
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """H [B, P, F * len(convs)] (after ReLU, channels last) and valid [B, P] (bool), P the
    narrowest width's window count; windows reaching into padding hold 0 (module docstring).
    Computed in `dtype`; gradients by autograd in the parameters' dtype."""
    batch, steps = tokens.shape
    widths = [conv.kernel_size[0] for conv in convs]
    positions = max(steps - min(widths) + 1, 0)
    x = embedding(tokens).to(dtype).transpose(1, 2)  # [B, E, T]
    at = torch.arange(positions, device=tokens.device)
    maps = []
    for conv, width in zip(convs, widths, strict=True):
        if steps < width:  # no document in the batch is that long
            maps.append(x.new_zeros(batch, conv.out_channels, positions))
            continue
        h = torch.relu(F.conv1d(x, conv.weight.to(dtype), conv.bias.to(dtype)))
        h = F.pad(h, (0, positions - h.shape[2]))  # [B, F, P]
        invalid = at[None, :] > (lengths[:, None] - width)
        maps.append(h.masked_fill(invalid[:, None, :], 0.0))
    valid = at[None, :] <= (lengths[:, None] - min(widths))
    return torch.cat(maps, dim=1).transpose(1, 2), valid


def attend(
    h: torch.Tensor,
    valid: torch.Tensor,
    attention: torch.Tensor,
    output: torch.Tensor,
    bias: torch.Tensor,
    chunk: int | None = None,
) -> torch.Tensor:
    """Per-code logits [B, L] from adapted positions h [B, P, A] (valid [B, P]), attention
    vectors u [L, A], output vectors w [L, A] and biases b [L] (module docstring). The softmax
    runs in fp32 under bf16 autocast. Codes in chunks of at most `chunk` (default: what keeps
    one [B, P, chunk] fp32 tensor within ATTENTION_BYTES), checkpointed where gradients flow."""
    labels = attention.shape[0]
    if chunk is None:
        chunk = max(1, ATTENTION_BYTES // max(1, 4 * h.shape[0] * h.shape[1]))
    if labels <= chunk:
        return _attend(h, valid, attention, output, bias)
    grads = torch.is_grad_enabled() and any(t.requires_grad for t in (h, attention, output, bias))
    parts = []
    for start in range(0, labels, chunk):
        part = slice(start, start + chunk)
        args = (h, valid, attention[part], output[part], bias[part])
        parts.append(checkpoint(_attend, *args, use_reentrant=False) if grads else _attend(*args))
    return torch.cat(parts, dim=1)


def _attend(
    h: torch.Tensor,
    valid: torch.Tensor,
    attention: torch.Tensor,
    output: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    wide = torch.promote_types(h.dtype, torch.float32)  # bf16 -> fp32; fp64 stays
    scores = F.linear(h, attention).to(wide)  # [B, P, L]
    values = F.linear(h, output).to(wide)  # [B, P, L]: w_l . h_t
    empty = ~valid.any(dim=1)  # [B]: no position at all
    hidden = ~valid & ~empty[:, None]  # an empty document's row stays finite, then is zeroed
    alpha = torch.softmax(scores.masked_fill(hidden[:, :, None], float("-inf")), dim=1)
    alpha = alpha.masked_fill(empty[:, None, None], 0.0)
    return (alpha * values).sum(dim=1) + bias.to(wide)


def reference_attend(
    h: torch.Tensor,
    valid: torch.Tensor,
    attention: torch.Tensor,
    output: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """attend() written as the formula reads, one document and one code at a time (v_l, then
    w_l . v_l): the oracle of the tests."""
    rows = []
    for b in range(h.shape[0]):
        kept = h[b][valid[b]]  # [P_b, A]
        logits = []
        for label in range(attention.shape[0]):
            if kept.shape[0] == 0:
                logits.append(bias[label])
                continue
            alpha = torch.softmax(kept @ attention[label], dim=0)
            v = (alpha[:, None] * kept).sum(dim=0)
            logits.append(output[label] @ v + bias[label])
        rows.append(torch.stack(logits))
    return torch.stack(rows)


def reference_feature_maps(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    embedding: nn.Embedding,
    convs: Sequence[nn.Conv1d],
) -> list[torch.Tensor]:
    """Each document's valid window features [P_b, F * widths], one window at a time (the
    oracle of the tests): window t of width w is ReLU(sum_k W[:, :, k] E[x_{t+k}] + b), and 0
    where it reaches past the document's end."""
    widths = [conv.kernel_size[0] for conv in convs]
    out = []
    for b in range(tokens.shape[0]):
        n = int(lengths[b])
        rows = []
        for t in range(max(n - min(widths) + 1, 0)):
            feats = []
            for conv, width in zip(convs, widths, strict=True):
                if t + width > n:
                    feats.append(conv.bias.new_zeros(conv.out_channels))
                    continue
                window = embedding(tokens[b, t : t + width])  # [w, E]
                value = torch.einsum("fek,ke->f", conv.weight, window) + conv.bias
                feats.append(torch.relu(value))
            rows.append(torch.cat(feats))
        width_all = sum(c.out_channels for c in convs)
        out.append(torch.stack(rows) if rows else embedding.weight.new_zeros(0, width_all))
    return out
