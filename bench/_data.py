"""Shared by the sweep benches: a small prepared target corpus built from the package's own
inputs (synthesizer + the real MEDLINE file), in a temporary folder."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from icdtransfer.config import Params, load_params
from icdtransfer.data.prepare import prepare_source, prepare_target
from icdtransfer.data.synthesize import synthesize

REPO = Path(__file__).resolve().parents[1]


def small_study_params(root: Path, notes: int = 600) -> Params:
    """Params whose source/target corpora (600 notes) live under `root`, built if missing."""
    params = load_params(REPO / "params.yaml")
    source = replace(params.source, out_dir=str(root / "source"))
    synth = replace(params.synthesize, notes=notes, out_dir=str(root / "raw"))
    target = replace(
        params.target,
        input=str(root / "raw"),
        out_dir=str(root / "target"),
        min_count=10,
        validation_size=80,
        test_size=120,
    )
    if not (root / "target" / "tokens.npy").exists():
        synthesize(synth, source)
        prepare_source(source, params.tokenizer)
        prepare_target(target, params.tokenizer, source.out_dir)
    return replace(
        params,
        source=source,
        synthesize=synth,
        target=target,
        ray=replace(params.ray, storage_path=str(root / "ray")),
        sweep=replace(params.sweep, results_dir=str(root / "results")),
    )
