"""Vocabulary: built from training documents only, stored as a TSV table (id, token, count)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icdtransfer.data.tokenizer import NUM_TOKEN, is_number

PAD, UNK, NUM = 0, 1, 2
SPECIALS = ("<pad>", "<unk>", NUM_TOKEN)
DROP = -1  # id for tokens the number policy removes from the sequence


@dataclass
class Vocabulary:
    tokens: list[str]
    counts: np.ndarray  # training-document occurrences in this corpus, int64
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, raw: Iterable[str], numbers: str) -> np.ndarray:
        """Map raw tokens to ids under the number policy (DROP marks removed tokens)."""
        out = []
        for token in raw:
            if numbers != "keep" and is_number(token):
                out.append(NUM if numbers == "placeholder" else DROP)
            else:
                out.append(self.index.get(token, UNK))
        return np.asarray(out, dtype=np.int64)

    def encode(self, raw: list[str], numbers: str) -> np.ndarray:
        """Token ids of one document, policy applied, removed tokens gone (int32)."""
        ids = self.ids(raw, numbers)
        return ids[ids != DROP].astype(np.int32)

    def save(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as out:
            out.write("id\ttoken\ttrain_count\n")
            for i, (token, count) in enumerate(zip(self.tokens, self.counts, strict=True)):
                out.write(f"{i}\t{token}\t{int(count)}\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        tokens, counts = [], []
        with open(path, encoding="utf-8") as handle:
            next(handle)
            for line in handle:
                _, token, count = line.rstrip("\n").split("\t")
                tokens.append(token)
                counts.append(int(count))
        return cls(tokens, np.asarray(counts, dtype=np.int64))


def build_vocabulary(
    raw: list[str],
    train_counts: np.ndarray,
    numbers: str,
    min_count: int,
    max_size: int,
    base: Vocabulary | None = None,
    patients: np.ndarray | None = None,
) -> Vocabulary:
    """Vocabulary from interned raw tokens and their training-split counts.

    Specials first (<pad>, <unk>, <num>); then, if `base` is given, every base token at its base
    id (so stage-1 ids stay valid in stage 2); then up to `max_size` further tokens with at
    least `min_count` training occurrences, or, when `patients` (distinct training patients
    per token) is given, with at least `min_count` training patients; most frequent first,
    ties by token. Tokens that occur only in validation or test have a training count of 0 and
    never enter.
    """
    if base is not None and tuple(base.tokens[: len(SPECIALS)]) != SPECIALS:
        raise ValueError("base vocabulary does not start with the special tokens")
    counts = np.asarray(train_counts, dtype=np.int64)
    numeric = np.fromiter((is_number(t) for t in raw), dtype=bool, count=len(raw))
    num_count = int(counts[numeric].sum()) if numbers == "placeholder" else 0
    support = counts if patients is None else np.asarray(patients, dtype=np.int64)
    eligible = support >= max(min_count, 1)
    if numbers != "keep":
        eligible &= ~numeric
    tokens = list(base.tokens) if base is not None else list(SPECIALS)
    known = set(tokens)
    order = sorted(np.flatnonzero(eligible).tolist(), key=lambda i: (-counts[i], raw[i]))
    added = [raw[i] for i in order if raw[i] not in known][:max_size]
    tokens += added
    by_token = dict(zip(raw, counts.tolist(), strict=True))
    final_counts = np.array([by_token.get(t, 0) for t in tokens], dtype=np.int64)
    final_counts[NUM] = num_count
    return Vocabulary(tokens, final_counts)
