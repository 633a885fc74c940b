"""The pretrain (stage 1) and train-target (stage 2) stages: build the model, run the training
loop (train/loop.py; stage 1 optionally on Ray Train workers, train/distributed.py), evaluate
the best weights and write the member directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import torch

from icdtransfer.artifacts import (
    MODEL_FILE,
    VOCAB_FILE,
    Compute,
    MemberInfo,
    Metrics,
    member_name,
)
from icdtransfer.config import (
    ConfigError,
    EncoderConfig,
    HeadConfig,
    MemberConfig,
    PretrainConfig,
    RayConfig,
    TrainConfig,
    TrainTargetConfig,
)
from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.splits import patient_subsample
from icdtransfer.data.vocab import Vocabulary
from icdtransfer.evaluate.metrics import describe
from icdtransfer.model.cnn import build_model
from icdtransfer.model.transfer import build_target_model, variant
from icdtransfer.model_meta import EncoderShape, ModelMeta
from icdtransfer.train.hardware import describe_device, resolve_device
from icdtransfer.train.loop import FitResult, LoopSettings, fit, predict
from icdtransfer.train.member import load_model_file, write_member
from icdtransfer.train.precision import use_bf16
from icdtransfer.train.state import Checkpointer, FileCheckpointer

log = logging.getLogger(__name__)


def loop_settings(
    cfg: TrainConfig, encoder: EncoderConfig, max_tokens: int, word_dropout: float, seed: int
) -> LoopSettings:
    return LoopSettings(
        optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        patience=cfg.patience,
        min_delta=cfg.min_delta,
        min_epochs=cfg.min_epochs,
        lr_patience=cfg.lr_patience,
        lr_factor=cfg.lr_factor,
        lr_reductions=cfg.lr_reductions,
        weight_average=cfg.weight_average,
        criterion=cfg.criterion,
        smoothing=cfg.smoothing,
        audit_patience=cfg.audit_patience,
        seed=seed,
        precision=cfg.precision,
        device=cfg.device,
        bucket=cfg.bucket,
        max_tokens=max_tokens,
        word_dropout=word_dropout,
        min_length=max(encoder.widths),
    )


def encoder_shape(cfg: EncoderConfig, vocab_size: int) -> EncoderShape:
    """The encoder the `encoder` section asks for, over a corpus' vocabulary."""
    return EncoderShape(vocab_size, cfg.embedding_dim, cfg.filters, tuple(cfg.widths))


# modules that print what a study would do or did: they train nothing
READ_ONLY = ("sweep/plan.py", "sweep/epoch_times.py", "sweep/status.py")


def code_digest() -> str:
    """Digest of the modelling and training code: a checkpoint written by other code is never
    resumed, and a stored member is reused only by the code that trained it (READ_ONLY
    modules left out: editing them changes no member)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in [root / "artifacts.py"] + [
        p
        for folder in ("model", "train", "evaluate", "sweep")
        for p in sorted((root / folder).glob("*.py"))
        if f"{folder}/{p.name}" not in READ_ONLY
    ]:
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


def pretrain(
    encoder: EncoderConfig, cfg: PretrainConfig, source_dir: str, ray_cfg: RayConfig | None = None
) -> Metrics:
    """Stage 1: train the CNN on PubMed abstracts to predict MeSH descriptors; with
    `cfg.num_workers` > 0 on that many Ray Train workers (DDP)."""
    corpus = Corpus.open(source_dir)
    meta = model_meta(corpus, encoder, cfg.dropout, cfg.max_tokens)
    # Word dropout is the paper's device for long EMRs; abstracts are used whole.
    settings = loop_settings(cfg, encoder, cfg.max_tokens, 0.0, cfg.seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    run: dict = {}
    if cfg.num_workers > 0:
        from icdtransfer.train.distributed import fit_on_ray

        name = f"pretrain-{run_key(meta, settings, corpus.stats, cfg.num_workers)}"
        result, worker_cpu = fit_on_ray(
            meta, source_dir, settings, name, cfg.num_workers, cfg.use_gpu, ray_cfg or RayConfig()
        )
        run = {
            "workers": cfg.num_workers,
            "ray_run": name,
            "details": {"worker_cpu_seconds": round(worker_cpu, 2)},
        }
        # evaluated in this process: on its GPU where the workers had GPUs
        settings = dataclasses.replace(settings, device="auto" if cfg.use_gpu else "cpu")
    else:
        torch.manual_seed(cfg.seed)
        checkpoint = FileCheckpointer(
            Path(cfg.checkpoint_dir) / f"{run_key(encoder, cfg, corpus.stats)}.pt"
        )
        result = fit(build_model(meta), corpus, settings, checkpoint)
        checkpoint.remove()  # finished: checkpoints exist only for unfinished runs
    info = member_info("pretrain", corpus, settings, result, start, **run)
    gpus = cfg.num_workers if cfg.num_workers > 0 and cfg.use_gpu else 1
    return evaluate_and_write(cfg.out_dir, meta, result, corpus, settings, info, cpu_start, gpus)


def train_target(
    encoder: EncoderConfig,
    head: HeadConfig,
    cfg: TrainTargetConfig,
    target_dir: str,
    member: MemberConfig,
    out_dir: str | None = None,
    checkpointer: Checkpointer | None = None,
) -> Metrics:
    """Stage 2: one member, i.e. one transfer variant trained with one seed, written to
    `out_dir` (default: <member.out_dir>/<variant>-seed<seed>).

    Each epoch is checkpointed to a file under member.checkpoint_dir, or to `checkpointer`
    (a sweep trial's Tune checkpoints, which also report each epoch to Tune)."""
    spec = variant(member.variant)
    corpus = Corpus.open(target_dir)
    meta = model_meta(
        corpus,
        encoder,
        head.dropout,
        head.max_tokens,
        variant=spec.name,
        paper=spec.paper,
        adaptation_size=head.adaptation_size,
        frozen_copy=spec.frozen_copy,
        pooling=head.pooling,
    )
    stage1 = _stage1_encoder(Path(cfg.pretrained), meta.shape) if spec.transfer else None
    model = build_target_model(
        spec,
        meta.shape,
        meta.n_labels,
        head.adaptation_size,
        head.dropout,
        corpus.vocab.tokens,
        stage1,
        member.seed,
        head.pooling,
    )
    settings = loop_settings(cfg, encoder, head.max_tokens, head.word_dropout, member.seed)
    pretrained_key = _digest(Path(cfg.pretrained) / MODEL_FILE) if spec.transfer else None
    train_docs, subsample = None, ()
    if cfg.train_fraction < 1:  # nested patient subsamples, drawn with the member's seed
        train = corpus.split("train")
        patients = corpus.docs["patient_id"].to_numpy()[train]
        train_docs = train[patient_subsample(patients, cfg.train_fraction, member.seed)]
        subsample = (cfg.train_fraction,)
        log.info(
            "train_fraction %g: %d of %d training documents",
            cfg.train_fraction,
            len(train_docs),
            len(train),
        )
    key = run_key(encoder, head, settings, spec.name, corpus.stats, pretrained_key, *subsample)
    start, cpu_start = time.perf_counter(), time.process_time()
    checkpoint = checkpointer or FileCheckpointer(Path(member.checkpoint_dir) / f"{key}.pt")
    result = fit(model, corpus, settings, checkpoint, train_docs=train_docs)
    info = member_info(
        "train_target",
        corpus,
        settings,
        result,
        start,
        variant=spec.name,
        paper=spec.paper,
        seed=member.seed,
        encoder=dataclasses.asdict(encoder),
        head=dataclasses.asdict(head),
        pretrained=cfg.pretrained if spec.transfer else None,
        details={
            "train_fraction": cfg.train_fraction,
            "train_documents": len(corpus.split("train") if train_docs is None else train_docs),
        },
    )
    out = out_dir or str(Path(member.out_dir) / member_name(spec.name, member.seed))
    metrics = evaluate_and_write(out, meta, result, corpus, settings, info, cpu_start)
    if isinstance(checkpoint, FileCheckpointer):  # finished: nothing left to resume
        checkpoint.remove()
    log.info(
        "%s (%s), seed %d: %s", spec.name, spec.paper, member.seed, describe(metrics.tuned, "tuned")
    )
    return metrics


def model_meta(
    corpus: Corpus, encoder: EncoderConfig, dropout: float, max_tokens: int, **target: Any
) -> ModelMeta:
    """model.pt's metadata: a stage-1 model, or with the `target` fields a stage-2 one."""
    return ModelMeta(
        kind="target" if target else "source",
        shape=encoder_shape(encoder, len(corpus.vocab)),
        n_labels=len(corpus.label_table),
        dropout=dropout,
        max_tokens=max_tokens,
        **target,
    )


def member_info(
    stage: Literal["pretrain", "train_target"],
    corpus: Corpus,
    settings: LoopSettings,
    result: FitResult,
    start: float,
    **details: Any,
) -> MemberInfo:
    """member.json of a CNN member trained since `start` (perf_counter)."""
    return MemberInfo(
        stage=stage,
        tokenizer_numbers=corpus.stats.get("tokenizer_numbers", "placeholder"),
        train_seconds=round(time.perf_counter() - start, 1),
        settings=dataclasses.asdict(settings),
        corpus=str(corpus.path),
        training=result.state.training(
            settings.epochs,
            settings.patience,
            settings.min_delta,
            settings.min_epochs,
            settings.lr_reductions,
            settings.criterion,
        ),
        **details,
    )


def evaluate_and_write(
    out_dir: str,
    meta: ModelMeta,
    result: FitResult,
    corpus: Corpus,
    settings: LoopSettings,
    info: MemberInfo,
    cpu_start: float | None = None,
    gpus: int = 1,
) -> Metrics:
    """Score the best weights on validation and test and write the member directory; with
    `cpu_start` (process_time when training began) member.json records its compute."""
    model = build_model(meta)
    model.load_state_dict(result.best_state)
    device = resolve_device(settings.device)
    model.to(device)
    bf16 = use_bf16(settings.precision, device, model)
    probs = {
        split: predict(
            model,
            corpus,
            corpus.split(split),
            settings.batch_size,
            settings.max_tokens,
            settings.min_length,
            device,
            bf16,
        )
        for split in ("validation", "test")
    }
    metrics = corpus.evaluate(probs["validation"], probs["test"])
    if cpu_start is not None:
        info = dataclasses.replace(
            info, compute=member_compute(info, device, bf16, cpu_start, gpus)
        )
    with atomic_dir(out_dir) as tmp:
        write_member(
            tmp,
            state=result.best_state,
            meta=meta,
            corpus_dir=corpus.path,
            probs_validation=probs["validation"],
            probs_test=probs["test"],
            metrics=metrics,
            history=result.state.history,
            info=info,
        )
    return metrics


def member_compute(
    info: MemberInfo, device: torch.device, bf16: bool, cpu_start: float, gpus: int
) -> Compute:
    """What training and evaluating the member cost this process (docs/DESIGN.md, "Cost
    accounting"). CPU seconds are this process's (all its threads) and, for a stage-1 run on
    Ray Train workers, the workers' summed (member.json `worker_cpu_seconds`, also apart). GPU
    seconds are wall seconds since training began x the GPUs used."""
    wall = info.train_seconds
    epochs = info.training.epochs_run if info.training is not None else 0
    return Compute(
        cpu_seconds=round(
            time.process_time() - cpu_start + info.details.get("worker_cpu_seconds", 0.0), 2
        ),
        gpu_seconds=round(wall * gpus, 2) if device.type == "cuda" else 0.0,
        device=describe_device(device, gpus),
        precision="bf16" if bf16 else "fp32",
        epochs=epochs,
        seconds_per_epoch=round(wall / epochs, 3) if epochs else None,
        threads=torch.get_num_threads(),
    )


def _stage1_encoder(
    pretrained: Path, shape: EncoderShape
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The stage-1 encoder's weights and vocabulary, checked against the wanted shape."""
    state, meta = load_model_file(pretrained / MODEL_FILE)
    pre = meta.shape
    if (pre.embedding_dim, pre.filters, pre.widths) != (
        shape.embedding_dim,
        shape.filters,
        shape.widths,
    ):
        raise ConfigError(
            f"the stage-1 model in {pretrained} has embedding_dim={pre.embedding_dim}, "
            f"filters={pre.filters}, widths={list(pre.widths)}; the encoder section asks for "
            f"{shape.embedding_dim}, {shape.filters}, {list(shape.widths)}"
        )
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    return encoder, Vocabulary.load(pretrained / VOCAB_FILE).tokens


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "missing"
