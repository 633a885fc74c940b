"""The Kim-style text CNN and its heads (docs/DESIGN.md section 4).

g(x) = [max_t ReLU(W_w * E[x])_t for w in widths]           (the encoder: EM and CV)
stage 1: sigmoid(W_S g(x) + b_S)                              (MeSH descriptors)
stage 2: sigmoid(W_o dropout(ReLU(W_a h + b_a)) + b_o)        (ICD codes)
         h = g(x), or g(x) || g'(x) with a frozen copy g'
stage 2 with head.pooling label_attention: the encoder's feature maps before the max,
         per-position adaptation, one attention and one output per code (model/attention.py)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from icdtransfer.model.attention import POOLINGS, attend, conv_feature_maps
from icdtransfer.model.compact import CompactEmbedding, Table
from icdtransfer.model.conv_pool import conv_max_pool
from icdtransfer.model_meta import EncoderShape, ModelMeta

# TargetModel._encode: features of a fixed encoder remembered for at most this many batches
# (validation's 13 and the test split's 16 on the default corpus); False: never
FIXED_FEATURE_CACHE = True
FIXED_FEATURE_BATCHES = 256


class CNNEncoder(nn.Module):
    """Embeddings (EM) -> Conv1d per width (CV) -> ReLU -> max over time.

    Windows that reach into padding are excluded from the max, so a document's features do not
    depend on how much its batch was padded; a document shorter than a filter width gives 0
    for that width. ReLU is monotonic, so max-then-ReLU equals ReLU-then-max: the ReLU runs
    on the pooled [B, F] values instead of the whole [B, F, T] feature map. The max-pool's
    backward touches only the winning windows (model/conv_pool.py).

    `kernel` names the convolution kernel (conv_pool.KERNELS); the training loop sets the one
    measured fastest on its machine (train/precision.py). Not saved with the weights: every
    kernel computes the same function.
    """

    kernel: str = "conv"

    def __init__(self, shape: EncoderShape) -> None:
        super().__init__()
        self.shape = shape
        self.embedding = nn.Embedding(shape.vocab_size, shape.embedding_dim, padding_idx=0)
        self.convs = nn.ModuleList(
            nn.Conv1d(shape.embedding_dim, shape.filters, w) for w in shape.widths
        )

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        tokens, table = self._table(tokens)
        dtype = self._dtype(tokens, table.weight)
        pooled = conv_max_pool(tokens, lengths, table, self.convs, dtype, self.kernel)
        return torch.relu(pooled)

    def feature_maps(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The features before the max: [B, P, F * widths] per window start, and which
        positions are valid [B, P] (model/attention.py)."""
        tokens, table = self._table(tokens)
        return conv_feature_maps(
            tokens, lengths, table, self.convs, self._dtype(tokens, table.weight)
        )

    def _table(self, tokens: torch.Tensor) -> tuple[torch.Tensor, nn.Embedding | Table]:
        """The tokens and the table the lookups read: while a model trains, a CompactEmbedding
        gives its trained rows and the tokens' ids among them (model/compact.py)."""
        if isinstance(self.embedding, CompactEmbedding):
            return self.embedding.lookup(tokens)
        return tokens, self.embedding

    @staticmethod
    def _dtype(tokens: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
        device = tokens.device.type
        if torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)  # cast once for all widths
        return weight.dtype


class SourceModel(nn.Module):
    """Stage 1: encoder -> dropout -> one sigmoid output per MeSH descriptor (logits here)."""

    def __init__(self, shape: EncoderShape, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = CNNEncoder(shape)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(shape.features, n_labels)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(self.encoder(tokens, lengths)))


class TargetModel(nn.Module):
    """Stage 2: encoder (and optionally a frozen copy) -> adaptation layer -> codes (logits).

    `pooling` max: the adaptation layer over the max-pooled features. label_attention: over
    every position's features, then one attention vector (`attention`, [L, A]) and one
    output vector (`output`) per code. The encoder and its parameter names are the same in
    both, so stage 1's EM and CV transfer alike (model/transfer.py)."""

    def __init__(
        self,
        shape: EncoderShape,
        n_labels: int,
        adaptation_size: int,
        dropout: float,
        frozen_copy: bool = False,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r} ({', '.join(POOLINGS)})")
        self.pooling = pooling
        self.encoder = CNNEncoder(shape)
        self.frozen_encoder: CNNEncoder | None = None
        if frozen_copy:
            self.frozen_encoder = copy.deepcopy(self.encoder)
        width = shape.features * (2 if frozen_copy else 1)
        self.adaptation = nn.Linear(width, adaptation_size)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(adaptation_size, n_labels)
        self.attention: nn.Linear | None = None
        if pooling == "label_attention":  # created last: max-pooling models draw the same init
            self.attention = nn.Linear(adaptation_size, n_labels, bias=False)

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """h: g(x), or g(x) || g'(x) when there is a frozen copy."""
        g = self._encode(self.encoder, tokens, lengths)
        if self.frozen_encoder is None:
            return g
        with torch.no_grad():
            g_frozen = self._encode(self.frozen_encoder, tokens, lengths)
        return torch.cat([g, g_frozen], dim=1)

    def _encode(
        self, encoder: CNNEncoder, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """encoder(tokens, lengths); for an encoder that does not train (`frozen`, the frozen
        copy), in evaluation on the CPU, remembered per batch: validation scores the same
        batches every epoch, and their features do not change (the same values, computed
        once: tests/model/test_compact.py)."""
        fixed = not self.training and tokens.device.type == "cpu" and FIXED_FEATURE_CACHE
        if (
            not fixed
            or torch.is_grad_enabled()
            or any(p.requires_grad for p in encoder.parameters())
        ):
            return encoder(tokens, lengths)
        autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")
        key = (
            autocast,
            encoder.kernel,
            tuple(tokens.shape),
            tokens.numpy().tobytes(),
            lengths.numpy().tobytes(),
            tuple(p._version for p in encoder.parameters()),
        )
        cache = encoder.__dict__.setdefault("_fixed_features", {})
        if key not in cache:
            if len(cache) >= FIXED_FEATURE_BATCHES:
                cache.pop(next(iter(cache)))
            cache[key] = encoder(tokens, lengths)
        return cache[key]

    def feature_maps(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """H [B, P, features] and valid [B, P]; the frozen copy's maps concatenated."""
        maps, valid = self.encoder.feature_maps(tokens, lengths)
        if self.frozen_encoder is None:
            return maps, valid
        with torch.no_grad():
            frozen, _ = self.frozen_encoder.feature_maps(tokens, lengths)
        return torch.cat([maps, frozen], dim=2), valid

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.attention is None:
            h = torch.relu(self.adaptation(self.features(tokens, lengths)))
            return self.output(self.dropout(h))
        maps, valid = self.feature_maps(tokens, lengths)
        h = self.dropout(torch.relu(self.adaptation(maps)))  # [B, P, A]
        return attend(h, valid, self.attention.weight, self.output.weight, self.output.bias)

    def train(self, mode: bool = True) -> TargetModel:
        super().train(mode)
        if self.frozen_encoder is not None:
            self.frozen_encoder.eval()  # the frozen copy is a fixed function of the input
        return self


def build_model(meta: ModelMeta) -> SourceModel | TargetModel:
    """A freshly initialised network of the architecture `meta` describes (model.pt)."""
    if meta.kind == "source":
        return SourceModel(meta.shape, meta.n_labels, meta.dropout)
    assert meta.adaptation_size is not None
    return TargetModel(
        meta.shape,
        meta.n_labels,
        meta.adaptation_size,
        meta.dropout,
        meta.frozen_copy,
        meta.pooling,
    )
