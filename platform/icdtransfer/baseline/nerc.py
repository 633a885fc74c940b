"""Named-entity recognition of codes (NERC) without MetaMap: a dictionary matcher with negation.

The paper's LR + L2R + NERC fed codes that MetaMap found in the EMR to the ranker. MetaMap and
the UMLS need licences, so here a dictionary of code names (nerc_dictionary.py) is matched with
an Aho-Corasick automaton (pyahocorasick) over the note's words, and each mention gets a
NegEx-style assertion:

* text is cut into clauses at sentence and list punctuation (. ; : ! ? and line breaks); a
  trigger only reaches mentions in its own clause;
* `negated`: a negation trigger ("no", "denies", "without", "negative for", "ruled out", ...)
  up to `WINDOW` words before the mention, or a post-trigger ("was ruled out", "unlikely") up
  to three words after it;
* `family`: a family trigger ("family history of", "mother", "father", ...) before it;
* otherwise `affirmed`. A scope ends early at "but", "however", "although", "which".

Where several dictionary terms overlap, only the longest survives ("congestive heart failure",
not also "heart failure"). Words are the project tokenizer's (lower case, letters and digits),
so "s/p CABG" in a term matches "S/P cabg" in a note. No text is ever logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import ahocorasick

from icdtransfer.data.tokenizer import raw_tokens

MatchType = Literal["abbreviation", "synonym", "description"]
Assertion = Literal["affirmed", "negated", "family"]
# Ordinal strength of a match type (a ranker feature): a full description beats a synonym,
# which beats an (often ambiguous) abbreviation.
TYPE_RANK: dict[str, int] = {"abbreviation": 1, "synonym": 2, "description": 3}
WINDOW = 6  # words before a mention that a trigger reaches (NegEx uses five to six)

_CLAUSE = re.compile(r"[.;:!?\n]+")
_PRE_NEGATION = [
    "no",
    "not",
    "denies",
    "denied",
    "deny",
    "without",
    "negative for",
    "no evidence of",
    "no signs of",
    "free of",
    "absence of",
    "ruled out",
    "rules out",
    "never had",
    "resolved",
]
_POST_NEGATION = ["ruled out", "was ruled out", "is ruled out", "unlikely", "was excluded"]
_FAMILY = [
    "family history of",
    "family history",
    "fh",
    "mother",
    "father",
    "sister",
    "brother",
    "maternal",
    "paternal",
    "grandmother",
    "grandfather",
]
_TERMINATION = {"but", "however", "although", "which", "except"}


@dataclass(frozen=True)
class Mention:
    code: str
    match_type: MatchType
    assertion: Assertion
    term: str  # the dictionary term (a code name, never note text)


def _phrases(triggers: Iterable[str]) -> list[tuple[str, ...]]:
    return sorted({tuple(raw_tokens(t)) for t in triggers}, key=len, reverse=True)


_PRE = _phrases(_PRE_NEGATION)
_POST = _phrases(_POST_NEGATION)
_FAM = _phrases(_FAMILY)


def _has_trigger(words: list[str], triggers: list[tuple[str, ...]]) -> bool:
    n = len(words)
    for trigger in triggers:
        k = len(trigger)
        for i in range(n - k + 1):
            if tuple(words[i : i + k]) == trigger:
                return True
    return False


def _scope_before(words: list[str], start: int) -> list[str]:
    """The words a pre-trigger must lie in: up to WINDOW before `start`, cut at a terminator."""
    scope = words[max(0, start - WINDOW) : start]
    for i in range(len(scope) - 1, -1, -1):
        if scope[i] in _TERMINATION:
            return scope[i + 1 :]
    return scope


def assertion_of(words: list[str], start: int, end: int) -> Assertion:
    """NegEx-style assertion of the mention words[start:end] within one clause."""
    before = _scope_before(words, start)
    if _has_trigger(before, _FAM):
        return "family"
    after = words[end : end + 3]
    if _has_trigger(before, _PRE) or _has_trigger(after, _POST):
        return "negated"
    return "affirmed"


class NercMatcher:
    """Finds dictionary terms in text. `terms` maps a term to its (code, match type) pairs."""

    def __init__(self, terms: dict[str, list[tuple[str, MatchType]]]) -> None:
        self.automaton = ahocorasick.Automaton()
        for term, entries in terms.items():
            key = " ".join(raw_tokens(term))
            if key:
                words = key.count(" ") + 1
                # padded with spaces: a term matches whole words only
                self.automaton.add_word(f" {key} ", (term, words, len(key), tuple(entries)))
        self.empty = len(self.automaton) == 0
        if not self.empty:
            self.automaton.make_automaton()

    def mentions(self, text: str) -> list[Mention]:
        """Every code mention in `text`, with its assertion, in order of appearance."""
        if self.empty:
            return []
        out: list[Mention] = []
        for clause in _CLAUSE.split(text):
            words = raw_tokens(clause)
            if words:
                out.extend(self._clause_mentions(words))
        return out

    def _clause_mentions(self, words: list[str]) -> list[Mention]:
        padded = " " + " ".join(words) + " "
        hits = list(self.automaton.iter(padded))
        if not hits:  # most clauses name no code
            return []
        token_at = {}  # char offset of a word's leading space -> word index
        offset = 0
        for i, w in enumerate(words):
            token_at[offset] = i
            offset += len(w) + 1
        spans = []
        for end_char, (term, n_words, key_length, entries) in hits:
            start = token_at[end_char - key_length - 1]
            spans.append((start, start + n_words, term, entries))
        # longest match wins: drop a span that lies inside a longer one
        kept = [
            s
            for s in spans
            if not any(
                o is not s and o[0] <= s[0] and s[1] <= o[1] and (o[1] - o[0]) > (s[1] - s[0])
                for o in spans
            )
        ]
        out = []
        for start, end, term, entries in kept:
            assertion = assertion_of(words, start, end)
            out.extend(Mention(code, kind, assertion, term) for code, kind in entries)
        return out


@dataclass
class CodeEvidence:
    """What NERC found for one code in one document: the ranker's NERC features."""

    hits: int = 0  # affirmed mentions
    best_type: int = 0  # TYPE_RANK of the strongest affirmed mention; 0: none
    negated: int = 0
    family: int = 0


def evidence(mentions: list[Mention]) -> dict[str, CodeEvidence]:
    """Per-code NERC features from a document's mentions."""
    out: dict[str, CodeEvidence] = {}
    for m in mentions:
        ev = out.setdefault(m.code, CodeEvidence())
        if m.assertion == "affirmed":
            ev.hits += 1
            ev.best_type = max(ev.best_type, TYPE_RANK[m.match_type])
        elif m.assertion == "negated":
            ev.negated += 1
        else:
            ev.family += 1
    return out
