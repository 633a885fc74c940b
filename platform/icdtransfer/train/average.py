"""An exponential moving average of the weights (Polyak averaging), the model that is
validated, kept and checkpointed when `weight_average` > 0 (docs/DESIGN.md section 4).

Validation macro-F over a few hundred notes and dozens of rare codes jumps from epoch to
epoch with the weights themselves (dropout, word dropout and Adam's steps move the
predictions of rare codes across the threshold). The average of the weights over the last
~1 / (1 - decay) steps moves slowly, so its validation curve is smooth: a plateau of that
curve is a plateau of learning, not a lull of the noise, and early stopping on it is a
statement about the model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """An averaged copy of `model`'s trainable parameters, updated after every step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)
        pairs = [
            (mine, theirs)
            for mine, theirs in zip(self.model.parameters(), model.parameters(), strict=True)
            if theirs.requires_grad
        ]
        self._mine = [a for a, _ in pairs]
        self._theirs = [b for _, b in pairs]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._mine, self._theirs, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
