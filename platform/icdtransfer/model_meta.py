"""What model.pt says about the network it holds (docs/DESIGN.md section 6): the encoder's
shape and the model's kind, labels and transfer settings, enough to rebuild it without any
config. No torch here, like artifacts.py."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class EncoderShape:
    """The encoder's size: vocabulary, embedding dimension E, filters per width, widths."""

    vocab_size: int
    embedding_dim: int
    filters: int
    widths: tuple[int, ...]

    @property
    def features(self) -> int:
        return self.filters * len(self.widths)


@dataclass(frozen=True)
class ModelMeta:
    """What model.pt says about its network, enough to rebuild it without any config: a
    stage-1 model (`source`: encoder + sigmoid over MeSH) or a stage-2 model (`target`)."""

    kind: Literal["source", "target"]
    shape: EncoderShape
    n_labels: int
    dropout: float
    max_tokens: int  # documents are truncated here, in training and in prediction
    variant: str | None = None  # target: the transfer variant and its paper notation
    paper: str | None = None
    adaptation_size: int | None = None
    frozen_copy: bool = False
    # target: the head's pooling (model/attention.py); a model.pt written before the field
    # existed has none and is a max-pooling model
    pooling: Literal["max", "label_attention"] = "max"

    @property
    def min_length(self) -> int:
        """Batches are padded at least to the widest filter."""
        return max(self.shape.widths)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["shape"]["widths"] = list(self.shape.widths)
        if self.kind == "source":
            for key in ("variant", "paper", "adaptation_size", "frozen_copy", "pooling"):
                del out[key]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelMeta:
        shape = data["shape"]
        return cls(
            **{k: v for k, v in data.items() if k != "shape"},
            shape=EncoderShape(
                shape["vocab_size"],
                shape["embedding_dim"],
                shape["filters"],
                tuple(shape["widths"]),
            ),
        )


