"""A GPU machine checked in one go (issue 19): `bash bench/gpu_check.sh` runs this file.

    PYTHONPATH=platform python bench/gpu_check.py [--batches 40] [--cpu-rehearsal]

Needs a CUDA build of torch and numpy, scipy, pandas, pyarrow, scikit-learn, pyyaml, tqdm; takes
the package from PYTHONPATH (nothing installed) and never imports Ray, DVC, Optuna, Plotly or
LightGBM. Exit 1, with one line saying why, where CUDA is absent or a check fails; 0 when every
check passed. In order:

1. environment: Python, torch, CUDA, the GPU, the precision and kernel `auto` picks;
2. backward: the encoder's sparse max-pool backward (model/conv_pool.py) against autograd
   through the textbook formulation (`reference_features`), on the GPU, fp32, each kernel;
3. kernels: forward + backward milliseconds of each kernel at the paper's dimensions;
4. one epoch of every stage-2 variant at the default dimensions (750 synthetic training notes,
   200 validation, 700 tokens; a random stage-1 encoder): finite loss, documents/s;
5. the paper's dimensions (presets/paper.yaml: E=300, 300 filters, adaptation 512, 1,231 codes,
   6,000 tokens, batch 50, AdaDelta): `--batches` (>= 40) timed training steps after 5 warm-up
   steps; ms per step, documents/s, model FLOP utilisation (the bench/_kernels.py FLOP count
   over the step time, against the dense matmul rate measured here in the same precision), GPU
   utilisation (nvidia-smi samples during the timed steps; where nvidia-smi is missing,
   torch.cuda.utilization() once at the end, which needs pynvml);
6. a CPU baseline: the same step on this machine's CPU, 2 steps after a warm-up;
7. the projected GPU-hours of the paper study (studies/table2_paper.yaml), as
   bench/paper_scale.py projects it, from the measured step and inference rates.

`--cpu-rehearsal` runs every step on the CPU at small sizes, so that the script's own code is
tested where there is no GPU (tests/gpu/test_gpu_check.py); it ends with exit 3, never 0: a
rehearsal is not a GPU check.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from _kernels import conv_forward_flops, sparse_backward_flops
from _synthetic import synthetic_notes
from icdtransfer.config import load_params
from icdtransfer.model.cnn import CNNEncoder, SourceModel, TargetModel
from icdtransfer.model.conv_pool import KERNELS, reference_features
from icdtransfer.model.transfer import VARIANTS, build_target_model
from icdtransfer.model_meta import EncoderShape
from icdtransfer.sweep.study import load_study
from icdtransfer.train.loop import LoopSettings, make_optimizer, predict, train_epoch
from icdtransfer.train.precision import choose, use_bf16

REPO = Path(__file__).resolve().parents[1]
REHEARSAL_EXIT = 3
EMRS, EMR_WORDS, CODES, CODES_PER_EMR = 71_463, 5_303, 1_231, 7.4  # the paper's Table 1
WARMUP = 5


class CheckFailed(Exception):
    """A check did not pass: the message is the one line printed."""


def say(text: str) -> None:
    print(text, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_backward(device: torch.device) -> None:
    """Sparse max-pool backward == autograd through the textbook encoder, fp32, each kernel;
    with TF32 off (cuDNN's convolutions use it by default), so that fp32 means fp32."""
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        _check_backward(device)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def _check_backward(device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([40, 23, 5, 3, 1, 30])
    tokens = torch.randint(1, 200, (6, 40), generator=g)
    tokens[torch.arange(40)[None, :] >= lengths[:, None]] = 0
    tokens, lengths = tokens.to(device), lengths.to(device)
    for kernel in KERNELS:
        torch.manual_seed(0)
        model = CNNEncoder(EncoderShape(200, 32, 16, (3, 4, 5))).to(device)
        model.kernel = kernel
        grads = []

        def textbook(t: torch.Tensor, n: torch.Tensor, m: CNNEncoder = model) -> torch.Tensor:
            return reference_features(t, n, m.embedding, m.convs, m.shape.widths)

        for fn in (model, textbook):
            model.zero_grad(set_to_none=True)
            out = fn(tokens, lengths)
            (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum().backward()
            grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        worst = max(
            float(
                (grads[0][n] - grads[1][n]).abs().max() / grads[1][n].abs().max().clamp(min=1e-12)
            )
            for n in grads[1]
        )
        if not worst < 1e-4:
            raise CheckFailed(
                f"backward: kernel {kernel} differs from autograd by {worst:.2e} (relative)"
            )
        say(
            f"backward: kernel {kernel} matches autograd on {device.type} "
            f"(worst relative difference {worst:.1e})"
        )


def time_kernels(
    device: torch.device, shape: EncoderShape, bf16: bool, tokens: int, batch: int
) -> None:
    torch.manual_seed(0)
    model = CNNEncoder(shape).to(device)
    x = torch.randint(1, shape.vocab_size, (batch, tokens), device=device)
    lengths = torch.full((batch,), tokens, device=device)
    best = {}
    for _ in range(4):
        for kernel in KERNELS:
            model.kernel = kernel
            sync(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(x, lengths)
            out.float().sum().backward()
            sync(device)
            best[kernel] = min(best.get(kernel, np.inf), time.perf_counter() - start)
    timed = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in best.items())
    say(
        f"kernels (forward + backward, {batch}x{tokens} tokens, {'bf16' if bf16 else 'fp32'}): "
        f"{timed}; fastest {min(best, key=best.get)}"
    )


def settings_for(
    batch: int, tokens: int, optimizer: str, lr: float, device: torch.device
) -> LoopSettings:
    return LoopSettings(optimizer, lr, batch, 1, 1, 1, "auto", str(device), True, tokens, 0.3, 5)


def variant_epochs(device: torch.device, rehearsal: bool) -> None:
    """One epoch (and a validation pass) of every variant at the default dimensions."""
    params = load_params(REPO / "params.yaml")
    enc, head, cfg = params.encoder, params.head, params.train_target
    train_n, val_n = (48, 16) if rehearsal else (750, 200)
    vocab = 2_000 if rehearsal else 27_026
    shape = EncoderShape(vocab, enc.embedding_dim, enc.filters, tuple(enc.widths))
    notes = synthetic_notes(train_n + val_n, 3, 1_268, 71, 4.7, vocab)
    tokens = ["<pad>", "<unk>", "<num>"] + [f"w{i}" for i in range(3, vocab)]
    torch.manual_seed(0)
    stage1 = (SourceModel(shape, 50, 0.1).encoder.state_dict(), tokens[: vocab * 3 // 4])
    settings = settings_for(
        cfg.batch_size, head.max_tokens, cfg.optimizer, cfg.learning_rate, device
    )
    for name, spec in VARIANTS.items():
        model = build_target_model(
            spec, shape, 71, head.adaptation_size, head.dropout, tokens, stage1, 1
        )
        model = model.to(device)
        bf16 = use_bf16("auto", device, model)
        optimizer = make_optimizer(model, settings.optimizer, settings.learning_rate)
        start = time.perf_counter()
        loss, rate = train_epoch(
            model, notes, np.arange(train_n), optimizer, settings, 0, device, bf16
        )
        probs = predict(
            model, notes, np.arange(train_n, train_n + val_n), 64, head.max_tokens, 5, device, bf16
        )
        seconds = time.perf_counter() - start
        if not (np.isfinite(loss) and np.isfinite(probs).all() and probs.shape == (val_n, 71)):
            raise CheckFailed(f"variant {name}: loss {loss} or its probabilities are not finite")
        say(
            f"variant {name}: one epoch of {train_n} notes {rate:.0f} docs/s, loss {loss:.3f}; "
            f"epoch + validation {seconds:.2f} s"
        )


class UtilisationSampler:
    """nvidia-smi's GPU utilisation, sampled every 0.2 s while running (where it exists)."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[float] = []
        self.command = shutil.which("nvidia-smi") if device.type == "cuda" else None
        self.index = (device.index or 0) if device.type == "cuda" else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                out = subprocess.run(
                    [
                        self.command,
                        "--query-gpu=utilization.gpu",
                        "--format=csv,noheader,nounits",
                        f"--id={self.index}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=True,
                )
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return

    def __enter__(self) -> UtilisationSampler:
        if self.command:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.command:
            self.thread.join(timeout=6)

    def describe(self) -> str:
        if self.samples:
            return f"{np.mean(self.samples):.0f}% (mean of {len(self.samples)} nvidia-smi samples)"
        if self.command is None and self.index is not None and torch.cuda.is_available():
            try:
                return f"{torch.cuda.utilization(self.index)}% (torch.cuda.utilization, once)"
            except Exception as exc:  # noqa: BLE001 - pynvml missing or the driver refuses
                return f"not measured ({type(exc).__name__}: no nvidia-smi, no pynvml)"
        return "not measured (CPU)" if self.command is None else "nvidia-smi gave no samples"


def matmul_rate(device: torch.device, bf16: bool, size: int) -> float:
    """Dense matmul TFLOP/s here, in the step's precision (best of 5)."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    a @ a
    best = np.inf
    for _ in range(5):
        sync(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ a
        sync(device)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * size**3 / best / 1e12


def paper_step(
    device: torch.device,
    shape: EncoderShape,
    notes,
    settings: LoopSettings,
    steps: int,
    warmup: int,
):
    """Seconds per step over `steps` timed steps, the lengths the encoder saw, bf16, the
    utilisation sampler, and seconds per inference note."""
    torch.manual_seed(0)
    model = TargetModel(shape, CODES, 512, 0.5).to(device)
    bf16 = use_bf16("auto", device, model)
    optimizer = make_optimizer(model, settings.optimizer, settings.learning_rate)
    size = settings.batch_size
    train_epoch(model, notes, np.arange(size * warmup), optimizer, settings, 0, device, bf16)
    seen: list[torch.Tensor] = []
    hook = model.encoder.register_forward_pre_hook(lambda _, a: seen.append(a[1]))
    docs = np.arange(size * warmup, size * (warmup + steps))
    sampler = UtilisationSampler(device)
    sync(device)
    start = time.perf_counter()
    with sampler:
        train_epoch(model, notes, docs, optimizer, settings, 1, device, bf16)
        sync(device)
    wall = (time.perf_counter() - start) / steps
    hook.remove()
    kept = torch.cat([s.cpu() for s in seen]).numpy()
    inference_start = time.perf_counter()
    predict(model, notes, docs[: size * 4], size, settings.max_tokens, 5, device, bf16)
    sync(device)
    inference = (time.perf_counter() - inference_start) / (size * 4)
    return wall, kept, bf16, sampler, inference


def projection(train_s: float, infer_s: float) -> str:
    """GPU-hours of studies/table2_paper.yaml at these rates (bench/paper_scale.py's rule)."""
    params = load_params(REPO / "presets" / "paper.yaml")
    study = load_study(REPO / "studies" / "table2_paper.yaml")
    val, test = params.target.validation_size, params.target.test_size
    epochs = params.train_target.epochs
    members = len(study.space["variant"]) * len(study.seeds)
    epoch = (EMRS - val - test) * train_s + val * infer_s
    total = members * (epochs * epoch + (val + test) * infer_s) / 3600
    return (
        f"projected paper-study GPU-hours (stage 2, {members} members x {epochs} epochs, no early "
        f"stop, validation each epoch; plain-encoder step for every variant): {total:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--batches", type=int, default=40, help="timed steps at the paper's size (>= 40)"
    )
    parser.add_argument(
        "--cpu-rehearsal", action="store_true", help="run on the CPU at small sizes; exits 3"
    )
    args = parser.parse_args(argv)
    rehearsal = args.cpu_rehearsal
    if not torch.cuda.is_available() and not rehearsal:
        say(
            f"gpu_check: FAIL: CUDA is not available (torch {torch.__version__}, built with "
            f"CUDA {torch.version.cuda or 'none'}): no GPU check was run, nothing is reported"
        )
        return 1
    if args.batches < 40 and not rehearsal:
        say("gpu_check: FAIL: --batches must be at least 40 (the projection needs them)")
        return 1
    device = torch.device("cpu" if rehearsal else "cuda")
    where = "CPU REHEARSAL" if rehearsal else torch.cuda.get_device_name(device)
    say(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"device: {where}"
    )
    start = time.perf_counter()
    try:
        run_checks(device, rehearsal, args.batches)
    except CheckFailed as exc:
        say(f"gpu_check: FAIL: {exc}")
        return 1
    say(f"gpu_check: {time.perf_counter() - start:.0f} s")
    if rehearsal:
        say("gpu_check: REHEARSAL on the CPU only: not a GPU check (exit 3)")
        return REHEARSAL_EXIT
    say("gpu_check: PASS")
    return 0


def run_checks(device: torch.device, rehearsal: bool, batches: int) -> None:
    paper = EncoderShape(
        2_000 if rehearsal else 100_000,
        16 if rehearsal else 300,
        16 if rehearsal else 300,
        (3, 4, 5),
    )
    choice = choose("auto", device, paper)
    say(
        f"precision auto: {choice.name} ({choice.reason}); "
        f"kernel {choice.kernel} ({choice.kernel_reason})"
    )
    check_backward(device)
    tokens, batch = (200, 4) if rehearsal else (6_000, 50)
    time_kernels(device, paper, choice.bf16, tokens, batch)
    variant_epochs(device, rehearsal)
    steps = 3 if rehearsal else batches
    warmup = 1 if rehearsal else WARMUP
    notes = synthetic_notes(
        batch * (steps + warmup), 4, tokens * 0.9, CODES, CODES_PER_EMR, paper.vocab_size
    )
    settings = settings_for(batch, tokens, "adadelta", 1.0, device)
    wall, kept, bf16, sampler, infer_s = paper_step(device, paper, notes, settings, steps, warmup)
    flops = conv_forward_flops(kept, paper.embedding_dim, paper.filters, paper.widths)
    flops += sparse_backward_flops(len(kept), paper.embedding_dim, paper.filters, paper.widths)
    flops_per_step = flops / steps
    rate = matmul_rate(device, bf16, 256 if rehearsal else 8192)
    say(
        f"paper dimensions, {steps} timed steps of {batch} ({kept.mean():.0f} tokens after "
        f"word dropout, {'bf16' if bf16 else 'fp32'}): {wall * 1e3:.1f} ms per step, "
        f"{batch / wall:.1f} documents/s, "
        f"inference {1 / infer_s:.1f} documents/s"
    )
    say(
        f"model FLOP utilisation: {flops_per_step / wall / 1e12:.3g} TFLOP/s of the model's FLOPs "
        f"= {flops_per_step / wall / 1e12 / rate:.2f} of the {rate:.3g} TFLOP/s dense matmul "
        f"measured here"
    )
    say(f"GPU utilisation during the timed steps: {sampler.describe()}")
    # the CPU baseline: the same step on the CPU, from the same run
    cpu = torch.device("cpu")
    cpu_steps = 2 if not rehearsal else 1
    cpu_wall, _, cpu_bf16, _, _ = paper_step(
        cpu, paper, notes, settings_for(batch, tokens, "adadelta", 1.0, cpu), cpu_steps, 1
    )
    say(
        f"CPU baseline ({torch.get_num_threads()} threads, {'bf16' if cpu_bf16 else 'fp32'}, "
        f"{cpu_steps} steps): "
        f"{cpu_wall * 1e3:.0f} ms per step, {batch / cpu_wall:.2f} documents/s; "
        f"{device.type} is {cpu_wall / wall:.1f}x the CPU"
    )
    say(projection(wall / batch, infer_s))


if __name__ == "__main__":
    sys.exit(main())
