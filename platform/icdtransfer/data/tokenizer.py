"""Tokenizer: lowercase, then words are maximal runs of letters and digits.

Everything that is not a letter or a digit separates words (so "non-small" is two words and
"120/80" is two numbers); letters and digits are Unicode-aware. Number policy: a token made only
of decimal digits (dates, vitals, doses, de-identified ids) is mapped to <num> ("placeholder",
the default: how many numbers, not which), kept as is ("keep"), or removed ("drop"). Tokens
that mix letters and digits ("b12", "t4", "3rd") are ordinary words.
"""

from __future__ import annotations

import re

WORD = re.compile(r"[^\W_]+")
NUM_TOKEN = "<num>"


def raw_tokens(text: str) -> list[str]:
    """Words of `text` before the number policy (what the corpus builder interns)."""
    return WORD.findall(text.lower())


def is_number(token: str) -> bool:
    return token.isdecimal()


def tokenize(text: str, numbers: str = "placeholder") -> list[str]:
    """Words of `text` after the number policy."""
    tokens = raw_tokens(text)
    if numbers == "keep":
        return tokens
    if numbers == "drop":
        return [t for t in tokens if not t.isdecimal()]
    return [NUM_TOKEN if t.isdecimal() else t for t in tokens]
