"""Prepared corpora from the package's own inputs (the synthesizer and the real MEDLINE file),
built by the same functions the DVC stages run. Shared by the test fixtures and the benches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from icdtransfer.config import Params


def build_corpora(
    params: Params,
    root: Path,
    synthesize: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
) -> Params:
    """synthesize -> prepare_source -> prepare_target under `root` (raw/, source/, target/),
    with `synthesize` and `target` overrides; skipped when root/target already holds a
    corpus. Returns `params` pointing at the three folders."""
    from icdtransfer.data.prepare import prepare_source, prepare_target
    from icdtransfer.synth.synthesize import synthesize as write_notes

    source_cfg = replace(params.source, out_dir=str(root / "source"))
    synth_cfg = replace(params.synthesize, out_dir=str(root / "raw"), **(synthesize or {}))
    target_cfg = replace(
        params.target, input=str(root / "raw"), out_dir=str(root / "target"), **(target or {})
    )
    if not (root / "target" / "tokens.npy").exists():
        write_notes(synth_cfg, source_cfg)
        prepare_source(source_cfg, params.tokenizer)
        prepare_target(target_cfg, params.tokenizer, source_cfg.out_dir)
    return replace(params, source=source_cfg, synthesize=synth_cfg, target=target_cfg)
