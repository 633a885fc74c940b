"""The synthetic corpus' code inventory: which ICD-9 code groups it uses, in which frequency
order, and the real language (held-out abstracts) about each of them."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from icdtransfer.config import SourceConfig, SynthesizeConfig
from icdtransfer.data.codes import format_icd9, icd9_descriptions, truncate
from icdtransfer.data.prepare import source_citations
from icdtransfer.data.splits import in_holdout
from icdtransfer.synth.mesh_match import content_words as _words
from icdtransfer.synth.mesh_match import match_mesh_to_groups
from icdtransfer.synth.phrases import Family, build_family, cms_wordings, quotes

log = logging.getLogger(__name__)

# Frequently coded diagnoses in US inpatient data (hypertension, CHF, AF, CAD, AKI, ...): the
# head of the frequency ranking, so the most frequent code is a plausible one.
COMMON_CODES = (
    "4019 4280 42731 41401 5849 25000 2724 51881 5990 53081 2720 2859 2449 486 2851 2762 496 "
    "99592 0389 5070 41071 2875 4240 V4581 311 40390 3051 V1582 V5861 2767 412 32723 2761 5119"
).split()
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _sentences_about(
    hits: list[tuple[int, str]], abstracts: list[list[str]], wordings: list[str]
) -> list[str]:
    """Sentences of the matched abstracts that use a word of the matching descriptor (all the
    abstract's sentences when none does), leaving out those that quote one of the group's CMS
    `wordings`: notes name a code in other words (phrases.py)."""
    pool: list[str] = []
    for i, name in hits:
        words = _words(name)
        on_topic = [s for s in abstracts[i] if words & _words(s)]
        pool.extend(on_topic or abstracts[i])
    return [s for s in dict.fromkeys(pool) if not quotes(s.lower(), wordings)]


def _mesh_names_for(child: str, names: list[str]) -> list[str]:
    """The descriptor names, among those matching the child's group, that name the child
    itself (the rule of match_mesh_to_groups applied to the child's own description)."""
    own = _words(icd9_descriptions()[child])
    return [n for n in names if _words(n) <= own and 2 * len(_words(n)) >= len(own)]


@dataclass
class Inventory:
    groups: list[str]  # by frequency rank
    children: list[list[str]]  # billable dotted codes of each group
    sentences: list[list[str]]  # abstract sentences about each group
    families: list[dict[str, Family]]  # each group's billable code -> its phrase family
    wordings: list[list[str]]  # each group's full CMS descriptions, lower case (see quotes())


def build_inventory(cfg: SynthesizeConfig, source: SourceConfig) -> tuple[Inventory, int]:
    """Choose `cfg.codes` code groups and collect their language; returns (inventory, abstracts
    used)."""
    table = icd9_descriptions()
    groups: dict[str, list[str]] = {}
    for code in sorted(table):
        head = code.split(".")[0]
        if len(head) == 2:  # procedure codes
            continue
        groups.setdefault(truncate(code, 1), []).append(code)
    abstracts: list[list[str]] = []
    mesh_of: list[list[str]] = []
    for citation in source_citations(source):
        if (
            citation.text
            and citation.mesh
            and in_holdout(citation.pmid, source.holdout, source.seed)
        ):
            sentences = [s for s in _SENTENCE.split(citation.text) if s.count(" ") >= 5]
            if sentences:
                abstracts.append(sentences)
                mesh_of.append([name for _, name in citation.mesh])
    matches = match_mesh_to_groups(sorted({n for names in mesh_of for n in names}), groups)
    by_group: dict[str, list[tuple[int, str]]] = {}  # group -> (abstract, matching descriptor)
    for i, names in enumerate(mesh_of):
        for name in names:
            for group in matches.get(name, []):
                by_group.setdefault(group, []).append((i, name))
    rng = np.random.default_rng([cfg.seed, 1])
    head = list(dict.fromkeys(truncate(format_icd9(c), 1) for c in COMMON_CODES))
    matched = [g for g in sorted(by_group) if g not in head]
    log.info(
        "%d held-out abstracts; %d code groups have abstract language",
        len(abstracts),
        len(by_group),
    )
    others = [g for g in sorted(groups) if g not in by_group and g not in head]
    chosen = (head + list(rng.permutation(matched)) + list(rng.permutation(others)))[: cfg.codes]
    if len(chosen) < cfg.codes:
        raise ValueError(f"synthesize.codes={cfg.codes} exceeds the {len(chosen)} ICD-9 groups")
    wordings = [cms_wordings(g, groups[g]) for g in chosen]
    sentences = [
        _sentences_about(by_group.get(g, [])[:40], abstracts, words)
        for g, words in zip(chosen, wordings, strict=True)
    ]
    families = []
    for g, words in zip(chosen, wordings, strict=True):
        mesh = sorted({name for _, name in by_group.get(g, [])})
        families.append({c: build_family(c, words, _mesh_names_for(c, mesh)) for c in groups[g]})
    inventory = Inventory(chosen, [groups[g] for g in chosen], sentences, families, wordings)
    return inventory, len(abstracts)
