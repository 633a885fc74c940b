"""The raw text of a prepared corpus' documents, read again from the stage-2 input.

The on-disk corpus keeps token ids only; a dictionary matcher with negation (NERC) needs the
note's words and its punctuation (clause boundaries). This reads the same input
`prepare_target` read, with the same readers, and joins a document's parts in the same order
(MIMIC: the report, then its addenda). The text stays in memory; it is never written.
"""

from __future__ import annotations

from pathlib import Path

from icdtransfer.config import TargetConfig
from icdtransfer.data.emr import NotePart, ReadStats, find_table, read_jsonl, read_notes
from icdtransfer.data.files import resolve_inputs


def document_texts(cfg: TargetConfig, doc_ids: list[str]) -> list[str]:
    """Text of each of `doc_ids` (in that order); an id not in the input is an error."""
    wanted = set(doc_ids)
    parts: dict[str, list[tuple[tuple, str]]] = {}
    stats = ReadStats()
    if cfg.format == "mimic":
        path = find_table(Path(cfg.input), ["NOTEEVENTS", "discharge"])
        rows: list = [read_notes(path, cfg.categories, cfg.encoding, cfg.encoding_errors, stats)]
    else:
        rows = [
            read_jsonl(p, cfg.encoding, cfg.encoding_errors, stats)
            for p in resolve_inputs(cfg.input)
        ]
    for reader in rows:
        part: NotePart
        for part in reader:
            if part.doc_id in wanted:
                parts.setdefault(part.doc_id, []).append((part.order, part.text))
    missing = [d for d in doc_ids if d not in parts]
    if missing:
        raise ValueError(
            f"{cfg.input}: {len(missing)} documents of the prepared corpus are not in the input "
            f"(first: id {missing[0]}); run prepare-target again"
        )
    return ["\n".join(text for _, text in sorted(parts[d])) for d in doc_ids]
