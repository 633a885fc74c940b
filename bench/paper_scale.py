"""Stage-1 and stage-2 epoch times at the paper's dimensions on this device, and the projected
device-hours of the whole paper study.

    .venv/bin/python bench/paper_scale.py [--batches 2] [--device auto] [--threads N]

Dimensions from presets/paper.yaml (E=300, 300 filters of widths 3/4/5, adaptation 512, dropout
0.5, AdaDelta, batch 50, word dropout 0.3, 6,000 EMR tokens, 400 abstract tokens, epochs) and
the paper's Table 1 (stage 1: 1.6M PubMed abstracts of 147 words, 27,150 MeSH descriptors,
12.62 per abstract; stage 2: 71,463 EMRs of 5,303 words, 1,231 codes, 7.4 per EMR, 2,000
validation and 3,000 test EMRs), on synthetic token arrays of those shapes (bench/_synthetic.py).

Measured with the project's own functions (train_epoch, predict, `precision: auto`): after one
warm-up batch, `--batches` training batches of each stage, the stage-2 step for a plain encoder
(scratch, tune_all; also used for frozen and tune_conv, whose backward does less, so an upper
bound) and for tune_all_frozen_copy (a second, frozen encoder), and inference batches. On a
CPU this is a few batches extrapolated to whole epochs: the output says so.

Projection (assumptions printed): stage 1 once, for pretrain.epochs; the Table 2 grid of
studies/table2_paper.yaml: 5 variants x 3 seeds = 15 members (single-model rows are seed 1 of
the ensembles, and an ensemble retrains nothing), each for train_target.epochs epochs (an upper
bound: early stopping with patience 5 may end it sooner), each epoch followed by validation,
plus one validation and test pass at the end. The LR baseline and the reports (CPU minutes)
are not counted. The last line is `projected device-hours: <total>`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from _kernels import conv_forward_flops, fp32_matmul_rates, peak, sparse_backward_flops
from _synthetic import synthetic_notes
from icdtransfer.config import load_params
from icdtransfer.model.cnn import SourceModel, TargetModel
from icdtransfer.model_meta import EncoderShape
from icdtransfer.sweep.study import load_study
from icdtransfer.train.hardware import resolve_device
from icdtransfer.train.loop import make_optimizer, predict, train_epoch
from icdtransfer.train.precision import choose
from icdtransfer.train.stages import loop_settings

REPO = Path(__file__).resolve().parents[1]
ABSTRACTS, ABSTRACT_WORDS, MESH, MESH_PER_ABSTRACT = 1_600_000, 147, 27_150, 12.62
EMRS, EMR_WORDS, CODES, CODES_PER_EMR = 71_463, 5_303, 1_231, 7.4
STAGE1_VOCAB, STAGE2_VOCAB = 50_000, 100_000  # vocab_max_size, and the EMR words added to it


def step_seconds(model, notes, settings, device, batches: int) -> tuple[float, float]:
    """Seconds per training note (after a warm-up batch), and the mean length seen."""
    optimizer = make_optimizer(model, settings.optimizer, settings.learning_rate)
    bf16 = choose(settings.precision, device, model.encoder.shape).bf16
    size = settings.batch_size
    train_epoch(model, notes, np.arange(size), optimizer, settings, 0, device, bf16)
    docs = np.arange(size, size * (batches + 1))
    _, rate = train_epoch(model, notes, docs, optimizer, settings, 1, device, bf16)
    return 1.0 / rate, float(np.minimum(np.diff(notes.offsets), settings.max_tokens).mean())


def inference_seconds(model, notes, settings, device, batches: int) -> float:
    """Seconds per note of validation/test inference (after a warm-up batch)."""
    bf16 = choose(settings.precision, device, model.encoder.shape).bf16
    size = settings.batch_size
    args = (settings.batch_size, settings.max_tokens, settings.min_length, device, bf16)
    predict(model, notes, np.arange(size), *args)
    docs = np.arange(size, size * (batches + 1))
    start = time.perf_counter()
    predict(model, notes, docs, *args)
    return (time.perf_counter() - start) / len(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=2, help="timed batches per measurement")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(REPO / "presets" / "paper.yaml")
    study = load_study(REPO / "studies" / "table2_paper.yaml")
    enc, head = params.encoder, params.head
    pre_cfg, target_cfg = params.pretrain, params.train_target
    device = resolve_device(args.device)
    load = os.getloadavg()[0]
    torch.manual_seed(0)
    n = target_cfg.batch_size * (args.batches + 1)
    widths = tuple(enc.widths)

    # stage 1
    pre = loop_settings(pre_cfg, enc, pre_cfg.max_tokens, 0.0, pre_cfg.seed)
    pre.device = str(device)
    abstracts = synthetic_notes(
        pre.batch_size * (args.batches + 1),
        1,
        ABSTRACT_WORDS,
        MESH,
        MESH_PER_ABSTRACT,
        STAGE1_VOCAB,
    )
    shape1 = EncoderShape(STAGE1_VOCAB, enc.embedding_dim, enc.filters, widths)
    source = SourceModel(shape1, MESH, pre_cfg.dropout).to(device)
    s1_train, _ = step_seconds(source, abstracts, pre, device, args.batches)
    s1_infer = inference_seconds(source, abstracts, pre, device, args.batches)

    # stage 2
    tgt = loop_settings(target_cfg, enc, head.max_tokens, head.word_dropout, params.member.seed)
    tgt.device = str(device)
    emrs = synthetic_notes(n, 2, EMR_WORDS, CODES, CODES_PER_EMR, STAGE2_VOCAB)
    shape2 = EncoderShape(STAGE2_VOCAB, enc.embedding_dim, enc.filters, widths)
    per_variant = {}
    for frozen_copy in (False, True):
        model = TargetModel(shape2, CODES, head.adaptation_size, head.dropout, frozen_copy).to(
            device
        )
        per_variant[frozen_copy] = (
            step_seconds(model, emrs, tgt, device, args.batches)[0],
            inference_seconds(model, emrs, tgt, device, args.batches),
        )
    truncated = np.minimum(np.diff(emrs.offsets), tgt.max_tokens)
    kept = truncated * (1 - head.word_dropout)
    flops = conv_forward_flops(kept, enc.embedding_dim, enc.filters, widths)
    flops += sparse_backward_flops(len(kept), enc.embedding_dim, enc.filters, widths)
    achieved = flops / len(kept) / per_variant[False][0] / 1e9

    # projection
    val, test = params.target.validation_size, params.target.test_size
    train_emrs = EMRS - val - test
    s1_val, s1_test = params.source.validation_size, params.source.test_size
    s1_epoch = (ABSTRACTS - s1_val - s1_test) * s1_train + s1_val * s1_infer
    s1_total = pre_cfg.epochs * s1_epoch + (s1_val + s1_test) * s1_infer
    variants = study.space["variant"]
    members = len(variants) * len(study.seeds)
    s2_total = 0.0
    lines = []
    for variant in variants:
        train_s, infer_s = per_variant[variant == "tune_all_frozen_copy"]
        epoch = train_emrs * train_s + val * infer_s
        member = target_cfg.epochs * epoch + (val + test) * infer_s
        s2_total += member * len(study.seeds)
        lines.append(f"  {variant}: epoch {epoch / 3600:.2f} h, member {member / 3600:.1f} h")
    total_h = (s1_total + s2_total) / 3600
    where = (
        f"cuda ({torch.cuda.get_device_name(device)})"
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    )
    precision = choose(tgt.precision, device, shape2)
    print(
        f"device: {where}; precision {precision.name} ({precision.reason}); "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    if device.type == "cpu":
        peak_rate, _ = peak(fp32_matmul_rates())
        print(
            f"CPU: EXTRAPOLATED from {args.batches} batches of {tgt.batch_size} per stage "
            f"(after one warm-up batch); stage-2 step {achieved:.0f} GFLOP/s executed, "
            f"{achieved / peak_rate:.2f} of the {peak_rate:.0f} GFLOP/s fp32 matmul peak"
        )
    print(
        f"stage 1 ({ABSTRACTS:,} abstracts, {MESH:,} labels): {s1_train * 1e3:.2f} ms per "
        f"training abstract, epoch {s1_epoch / 3600:.2f} h, {pre_cfg.epochs} epochs + test: "
        f"{s1_total / 3600:.1f} h"
    )
    print(
        f"stage 2 ({train_emrs:,} training EMRs, {truncated.mean():.0f} tokens after "
        f"truncation, {kept.mean():.0f} after word dropout): "
        f"{per_variant[False][0]:.3f} s per training EMR "
        f"({per_variant[True][0]:.3f} with the frozen copy), "
        f"{per_variant[False][1]:.3f} s per inference EMR"
    )
    print("\n".join(lines))
    print(
        f"assumptions: stage 1 once ({pre_cfg.epochs} epochs); Table 2 grid "
        f"({len(variants)} variants x {len(study.seeds)} seeds = {members} members, "
        f"{target_cfg.epochs} epochs each, no early stop, validation every epoch, "
        f"validation + test at the end); one device at a time, no overlap"
    )
    print(f"stage 1: {s1_total / 3600:.1f} h; stage 2: {s2_total / 3600:.1f} h ({members} members)")
    print(f"projected device-hours: {total_h:.1f}")


if __name__ == "__main__":
    main()
