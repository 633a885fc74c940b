"""The Kim-style text CNN and its heads (docs/DESIGN.md section 4).

g(x) = [max_t ReLU(W_w * E[x])_t for w in widths]           (the encoder: EM and CV)
stage 1: sigmoid(W_S g(x) + b_S)                              (MeSH descriptors)
stage 2: sigmoid(W_o dropout(ReLU(W_a h + b_a)) + b_o)        (ICD codes)
         h = g(x), or g(x) || g'(x) with a frozen copy g'
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from icdtransfer.model.conv_pool import conv_max_pool
from icdtransfer.model_meta import EncoderShape, ModelMeta


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
        device = tokens.device.type
        dtype = self.embedding.weight.dtype
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)  # cast once for all widths
        pooled = conv_max_pool(tokens, lengths, self.embedding, self.convs, dtype, self.kernel)
        return torch.relu(pooled)


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
    """Stage 2: encoder (and optionally a frozen copy) -> adaptation layer -> codes (logits)."""

    def __init__(
        self,
        shape: EncoderShape,
        n_labels: int,
        adaptation_size: int,
        dropout: float,
        frozen_copy: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = CNNEncoder(shape)
        self.frozen_encoder: CNNEncoder | None = None
        if frozen_copy:
            self.frozen_encoder = copy.deepcopy(self.encoder)
        width = shape.features * (2 if frozen_copy else 1)
        self.adaptation = nn.Linear(width, adaptation_size)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(adaptation_size, n_labels)

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """h: g(x), or g(x) || g'(x) when there is a frozen copy."""
        g = self.encoder(tokens, lengths)
        if self.frozen_encoder is None:
            return g
        with torch.no_grad():
            g_frozen = self.frozen_encoder(tokens, lengths)
        return torch.cat([g, g_frozen], dim=1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.adaptation(self.features(tokens, lengths)))
        return self.output(self.dropout(h))

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
        meta.shape, meta.n_labels, meta.adaptation_size, meta.dropout, meta.frozen_copy
    )
