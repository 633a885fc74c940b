"""Training only the embedding rows the training documents use (docs/DESIGN.md section 4).

A stage-2 embedding has a row for every word of the stage-1 and EMR vocabularies (27,026 on
the default corpus), but the training notes, truncated at `head.max_tokens`, use 5,543 of them.
A row no training batch contains never gets a gradient: Adam's moments stay 0 and its update
is exactly 0, and the weight average's lerp towards an unchanged row leaves it unchanged. Yet
fused Adam, the weight average and the zero-filled gradient pass over the whole table every
step, a fifth of a default epoch on one core (README, "Speed for the science").

`CompactEmbedding` stands in for such an `nn.Embedding` while a model trains: its parameter
is the used rows only (`compact`, [rows, E]), the full table a buffer the rows are copied
into when it is read. With gradients enabled the encoder looks up `remap[tokens]` in
`compact`; without (validation, a frozen copy) the full table. Row for row the arithmetic is
the same as on the full table (the same gathers, the same index_add order, the same
element-wise Adam and lerp), so the trained weights are bit-identical
(tests/model/test_compact.py). Its state dict is the embedding's (`weight`, the whole table):
checkpoints, best weights and saved models are unchanged. A token outside the rows in a
training batch fails loudly (index out of range).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# compact only where the used rows are at most this share of the table: the remap's gather
# and the lazy copy cost more than they save when nearly every row is used (stage 1)
MAX_SHARE = 0.5


class Table(NamedTuple):
    """What the encoder's lookups read of an embedding: a table and its padding row."""

    weight: torch.Tensor
    padding_idx: int | None

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.weight, self.padding_idx)


class CompactEmbedding(nn.Module):
    """An `nn.Embedding`'s table of which only `rows` (sorted ids, the padding row among
    them) train."""

    def __init__(self, embedding: nn.Embedding, rows: torch.Tensor) -> None:
        super().__init__()
        full = embedding.weight.detach()
        remap = torch.full((full.shape[0],), -1, dtype=torch.long, device=full.device)
        remap[rows] = torch.arange(len(rows), device=full.device)
        self.full_padding_idx = embedding.padding_idx
        pad = embedding.padding_idx
        self.compact_padding_idx = None if pad is None else int(remap[pad])
        self.register_buffer("table", full.clone(), persistent=False)
        self.register_buffer("rows", rows.to(full.device), persistent=False)
        self.register_buffer("remap", remap, persistent=False)
        self.compact = nn.Parameter(full[rows].clone())

    @property
    def weight(self) -> torch.Tensor:
        """The whole table, the trained rows copied in (on every read: fused Adam updates the
        rows in place without bumping their version counter; a copy of the used rows costs
        less than a thousandth of an epoch, and only validation and saving read it)."""
        with torch.no_grad():
            self.table.index_copy_(0, self.rows, self.compact.detach())
        return self.table

    def lookup(self, tokens: torch.Tensor) -> tuple[torch.Tensor, Table]:
        """(tokens, table) for the encoder: the compact rows where gradients are taken."""
        if torch.is_grad_enabled() and self.compact.requires_grad:
            return self.remap[tokens], Table(self.compact, self.compact_padding_idx)
        return tokens, Table(self.weight, self.full_padding_idx)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens, table = self.lookup(tokens)
        return table(tokens)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:  # noqa: ANN001
        weight = self.weight
        destination[prefix + "weight"] = weight if keep_vars else weight.detach()

    def _load_from_state_dict(  # noqa: ANN001, PLR0913 - nn.Module's signature
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        key = prefix + "weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        with torch.no_grad():
            self.table.copy_(state_dict[key])
            self.compact.copy_(self.table[self.rows])


class Compaction:
    """The embeddings `compact_embeddings` swapped, and how to swap them back."""

    def __init__(self) -> None:
        self.swapped: list[tuple[nn.Module, nn.Embedding]] = []

    @property
    def rows_used(self) -> tuple[int, int] | None:
        """(rows trained, rows in the table), or None where nothing was compacted."""
        if not self.swapped:
            return None
        module, embedding = self.swapped[0]
        return len(module.embedding.rows), embedding.num_embeddings

    def adopt(self, optimizer: torch.optim.Optimizer) -> None:
        """Moments of a whole table (a checkpoint written before the compaction) become the
        trained rows' moments: an exact conversion, the other rows' being 0."""
        for module, _ in self.swapped:
            compact: CompactEmbedding = module.embedding
            state = optimizer.state.get(compact.compact, {})
            for name, value in state.items():
                stale = torch.is_tensor(value) and value.shape[:1] == compact.table.shape[:1]
                if stale and value.dim() == 2:
                    state[name] = value.index_select(0, compact.rows.to(value.device))

    def restore(self) -> None:
        """The original embeddings back in place, holding the trained weights."""
        for module, embedding in self.swapped:
            with torch.no_grad():
                embedding.weight.copy_(module.embedding.weight)
            module.embedding = embedding
        self.swapped = []


def compact_embeddings(model: nn.Module, rows: torch.Tensor) -> Compaction:
    """Swap every trainable encoder embedding of `model` for a CompactEmbedding of `rows`
    (where they are at most MAX_SHARE of its table). Parameter order is kept, so an optimizer
    built after the swap lists its parameters as one built before would."""
    done = Compaction()
    for module in list(model.modules()):
        embedding = getattr(module, "embedding", None)
        if not isinstance(embedding, nn.Embedding) or not embedding.weight.requires_grad:
            continue
        if len(rows) > MAX_SHARE * embedding.num_embeddings:
            continue
        module.embedding = CompactEmbedding(embedding, rows)
        done.swapped.append((module, embedding))
    return done
