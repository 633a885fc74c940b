"""The pretrain (stage 1) and train-target (stage 2) stages, single process."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from icdtransfer.config import (
    ModelConfig,
    PretrainConfig,
    RayConfig,
    TrainConfig,
    TrainTargetConfig,
)
from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.vocab import Vocabulary
from icdtransfer.model.cnn import EncoderShape, SourceModel
from icdtransfer.model.transfer import build_target_model, variant
from icdtransfer.train.loop import LoopSettings, fit, predict, resolve_device, use_bf16
from icdtransfer.train.member import load_model_file, shape_from, shape_meta, write_member

log = logging.getLogger(__name__)


def loop_settings(
    cfg: TrainConfig,
    model: ModelConfig,
    max_tokens: int,
    word_dropout: float,
    seed: int | None = None,
) -> LoopSettings:
    return LoopSettings(
        optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        patience=cfg.patience,
        seed=cfg.seed if seed is None else seed,
        precision=cfg.precision,
        device=cfg.device,
        bucket=cfg.bucket,
        max_tokens=max_tokens,
        word_dropout=word_dropout,
        min_length=max(model.widths),
    )


def code_digest() -> str:
    """Digest of the modelling and training code: a checkpoint written by other code is never
    resumed."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for folder in ("model", "train", "evaluate", "sweep"):
        for path in sorted((root / folder).glob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_key(*parts: object) -> str:
    """A short digest of everything that defines a run (for its resume checkpoint)."""
    parts = (*parts, code_digest())
    text = json.dumps(
        [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluate_and_write(
    out_dir: str,
    model: torch.nn.Module,
    best_state: dict,
    corpus: Corpus,
    settings: LoopSettings,
    meta: dict,
    history: list[dict],
    info: dict,
) -> dict:
    model.load_state_dict(best_state)
    device = resolve_device(settings.device)
    bf16 = use_bf16(settings.precision, device)
    probs = {}
    for split in ("validation", "test"):
        probs[split] = predict(
            model,
            corpus,
            corpus.split(split),
            settings.batch_size,
            settings.max_tokens,
            settings.min_length,
            device,
            bf16,
        )
    metrics = corpus.evaluate(probs["validation"], probs["test"])
    with atomic_dir(out_dir) as tmp:
        write_member(
            tmp,
            state=best_state,
            meta=meta,
            corpus_dir=corpus.path,
            probs_validation=probs["validation"],
            probs_test=probs["test"],
            metrics=metrics,
            history=history,
            info=info,
        )
    return metrics


def pretrain(
    model_cfg: ModelConfig, cfg: PretrainConfig, source_dir: str, ray_cfg: RayConfig | None = None
) -> dict:
    """Stage 1: train the CNN on PubMed abstracts to predict MeSH descriptors; with
    `cfg.num_workers` > 0 on that many Ray Train workers (DDP)."""
    if cfg.num_workers > 0:
        from icdtransfer.train.distributed import pretrain_distributed

        return pretrain_distributed(model_cfg, cfg, ray_cfg or RayConfig(), source_dir)
    corpus = Corpus.open(source_dir)
    shape = EncoderShape(
        len(corpus.vocab), model_cfg.embedding_dim, model_cfg.filters, tuple(model_cfg.widths)
    )
    n_labels = len(corpus.label_table)
    torch.manual_seed(cfg.seed)
    model = SourceModel(shape, n_labels, model_cfg.dropout)
    # Word dropout is the paper's device for long EMRs; abstracts are used whole.
    settings = loop_settings(cfg, model_cfg, cfg.max_tokens, 0.0)
    checkpoint = Path(cfg.checkpoint_dir) / f"{run_key(model_cfg, cfg, corpus.stats)}.pt"
    start = time.perf_counter()
    result = fit(model, corpus, settings, checkpoint)
    metrics = write_pretrained(
        model_cfg,
        cfg,
        corpus,
        model,
        settings,
        result.best_state,
        result.history,
        {"best_epoch": result.best_epoch, "train_seconds": round(time.perf_counter() - start, 1)},
    )
    checkpoint.unlink(missing_ok=True)  # finished: checkpoints exist only for unfinished runs
    return metrics


def write_pretrained(
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    corpus: Corpus,
    model: torch.nn.Module,
    settings: LoopSettings,
    best: dict,
    history: list[dict],
    run: dict,
) -> dict:
    """Evaluate the best stage-1 weights and write models/pretrain (single process or Ray)."""
    meta = {
        "kind": "source",
        "shape": shape_meta(model.encoder.shape),
        "n_labels": len(corpus.label_table),
        "dropout": model_cfg.dropout,
        "max_tokens": cfg.max_tokens,
    }
    info = {
        "stage": "pretrain",
        **run,
        "settings": dataclasses.asdict(settings),
        "corpus": str(corpus.path),
        "tokenizer_numbers": corpus.stats.get("tokenizer_numbers", "placeholder"),
    }
    return evaluate_and_write(cfg.out_dir, model, best, corpus, settings, meta, history, info)


def member_dir(cfg: TrainTargetConfig, variant_name: str, seed: int) -> Path:
    return Path(cfg.out_dir) / f"{variant_name}-seed{seed}"


def train_target(
    model_cfg: ModelConfig,
    cfg: TrainTargetConfig,
    target_dir: str,
    variant_name: str | None = None,
    seed: int | None = None,
    out_dir: str | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Stage 2: one member, i.e. one transfer variant trained with one seed."""
    spec = variant(variant_name or cfg.variant)
    seed = cfg.seed if seed is None else seed
    corpus = Corpus.open(target_dir)
    n_labels = len(corpus.label_table)
    stage1 = None
    shape = EncoderShape(
        len(corpus.vocab), model_cfg.embedding_dim, model_cfg.filters, tuple(model_cfg.widths)
    )
    if spec.transfer:
        state, meta = load_model_file(Path(cfg.pretrained) / "model.pt")
        pre = shape_from(meta)
        if (pre.embedding_dim, pre.filters, pre.widths) != (
            shape.embedding_dim,
            shape.filters,
            shape.widths,
        ):
            raise ValueError(
                f"the stage-1 model in {cfg.pretrained} has embedding_dim={pre.embedding_dim}, "
                f"filters={pre.filters}, widths={list(pre.widths)}; the model section asks for "
                f"{shape.embedding_dim}, {shape.filters}, {list(shape.widths)}"
            )
        encoder = {
            k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")
        }
        stage1 = (encoder, Vocabulary.load(Path(cfg.pretrained) / "vocab.tsv").tokens)
    model = build_target_model(
        spec,
        shape,
        n_labels,
        model_cfg.adaptation_size,
        model_cfg.dropout,
        corpus.vocab.tokens,
        stage1,
        seed,
    )
    settings = loop_settings(cfg, model_cfg, model_cfg.max_tokens, model_cfg.word_dropout, seed)
    pretrained_key = _digest(Path(cfg.pretrained) / "model.pt") if spec.transfer else None
    key = run_key(model_cfg, settings, spec.name, corpus.stats, pretrained_key)
    start = time.perf_counter()
    checkpoint = Path(cfg.checkpoint_dir) / f"{key}.pt"
    result = fit(model, corpus, settings, checkpoint, on_epoch=on_epoch)
    meta = {
        "kind": "target",
        "variant": spec.name,
        "paper": spec.paper,
        "shape": shape_meta(shape),
        "n_labels": n_labels,
        "adaptation_size": model_cfg.adaptation_size,
        "dropout": model_cfg.dropout,
        "frozen_copy": spec.frozen_copy,
        "max_tokens": model_cfg.max_tokens,
    }
    info = {
        "stage": "train_target",
        "variant": spec.name,
        "paper": spec.paper,
        "seed": seed,
        "best_epoch": result.best_epoch,
        "train_seconds": round(time.perf_counter() - start, 1),
        "settings": dataclasses.asdict(settings),
        "model": dataclasses.asdict(model_cfg),
        "corpus": str(corpus.path),
        "pretrained": cfg.pretrained if spec.transfer else None,
        "tokenizer_numbers": corpus.stats.get("tokenizer_numbers", "placeholder"),
    }
    out = out_dir or str(member_dir(cfg, spec.name, seed))
    metrics = evaluate_and_write(
        out, model, result.best_state, corpus, settings, meta, result.history, info
    )
    checkpoint.unlink(missing_ok=True)
    log.info(
        "%s (%s), seed %d: test micro-F %.4f, macro-F %.4f (threshold 0.5)",
        spec.name,
        spec.paper,
        seed,
        metrics["fixed_0.5"]["micro_f"],
        metrics["fixed_0.5"]["macro_f"],
    )
    return metrics


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "missing"
