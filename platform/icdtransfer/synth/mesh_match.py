"""Which ICD-9-CM code groups a MeSH descriptor names, by the words of their descriptions.

Used by the synthesizer (abstracts about a code) and the NERC dictionary (MeSH names as
synonyms of a code).
"""

from __future__ import annotations

import re

from icdtransfer.data.codes import icd9_descriptions

# MeSH check tags and other descriptors that describe the study, not a disease.
MESH_STOPLIST = {
    "humans",
    "male",
    "female",
    "animals",
    "adult",
    "aged",
    "aged, 80 and over",
    "middle aged",
    "child",
    "child, preschool",
    "infant",
    "infant, newborn",
    "adolescent",
    "young adult",
    "pregnancy",
    "mice",
    "rats",
    "risk factors",
    "prognosis",
    "retrospective studies",
    "prospective studies",
    "follow-up studies",
    "treatment outcome",
    "time factors",
}
_STOPWORDS = {
    "of",
    "and",
    "the",
    "in",
    "with",
    "without",
    "due",
    "to",
    "or",
    "other",
    "not",
    "unspecified",
    "nos",
    "elsewhere",
    "classified",
    "mention",
    "type",
    "a",
    "by",
    "as",
    "at",
    "on",
    "for",
    "specified",
    "site",
    "stated",
}
_WORD = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> frozenset[str]:
    """Lower-case words of `text` without stopwords; a long word loses its plural s."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOPWORDS:
            continue
        out.add(w[:-1] if len(w) > 4 and w.endswith("s") else w)
    return frozenset(out)


def match_mesh_to_groups(names: list[str], groups: dict[str, list[str]]) -> dict[str, list[str]]:
    """MeSH descriptor name -> code groups it names.

    A name matches a code when the code's description contains every content word of the
    name and those words make up at least half of the description's content words: "Heart
    Failure" matches 428.0 "Congestive heart failure, unspecified", "Tuberculosis" does not
    match "Tuberculosis of limb bones". Check tags ("Humans", "Female") never match.
    """
    table = icd9_descriptions()
    index: dict[str, set[tuple[str, str]]] = {}
    for group, children in groups.items():
        for child in children:
            for w in content_words(table[child]):
                index.setdefault(w, set()).add((group, child))
    out = {}
    for name in names:
        if name.lower() in MESH_STOPLIST:
            continue
        words = content_words(name)
        if not words or any(w not in index for w in words):
            continue
        hits = set.intersection(*(index[w] for w in words))
        matched = {g for g, child in hits if 2 * len(words) >= len(content_words(table[child]))}
        if matched:
            out[name] = sorted(matched)
    return out
