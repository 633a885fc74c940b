"""`precision: auto`: bf16 autocast where it is faster on the machine at hand, fp32 elsewhere.

GPUs: bf16 where the GPU supports it (bf16 tensor cores, Ampere and later).

CPUs: whether bf16 pays off depends on the chip, not on its flags. With AMX tiles bf16 runs
several times faster than fp32. With AVX512-BF16 alone it can be slower (a Xeon in issue 11:
129-138 against 184-223 GFLOP/s for the paper's convolutions) or faster (an AMD EPYC Zen 5,
whose bf16 dot products run at twice its fp32 FMA rate, and where MKL's fp32 GEMM is slow). So
`auto` times the model's own convolutions in both precisions, about 0.2 s, and takes bf16
only when it is clearly faster (BF16_MARGIN). A CPU without native bf16 instructions would only
emulate it: fp32 without a measurement. The measurement is cached per machine, CPU model, torch
version and encoder shape in the user's cache folder, so a machine pays for it once.

The same probe picks the convolution kernel (model/conv_pool.py, KERNELS): each kernel is
timed in each precision, the precision is decided on the fastest kernel of each, and the
encoders run the fastest kernel of the chosen precision (with an explicit `precision` too). On
an AVX-512 EPYC `gemm` won in bf16, with the same chip limited to AVX2 `conv` did (README,
"Speed for the science"), so neither is right everywhere; `unique` (every distinct token
projected once) depends on the distinct tokens per batch, which the probe draws as text has
them. The cache key includes
ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA: a machine told to use AVX2 only measures again. On
CUDA the kernel is `conv` (cuDNN) without a measurement; bench/gpu_check.py times both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from icdtransfer.data.atomic import atomic_file
from icdtransfer.machine import cpu_model
from icdtransfer.model.cnn import CNNEncoder
from icdtransfer.model.conv_pool import KERNELS
from icdtransfer.model_meta import EncoderShape
from icdtransfer.train.hardware import cpu_has_amx, cpu_has_bf16

log = logging.getLogger(__name__)

BF16_MARGIN = 1.1  # bf16 must be this much faster: it also costs precision
PROBE_BATCH, PROBE_REPEATS = 4, 5
PROBE_FLOP = 1e9  # per timed forward pass: ~5-10 ms on one core, long enough to time
PROBE_VOCAB = 30_000  # the probe's token ids: Zipf-distributed over this many (probe_token_ids)
_CHOSEN: dict[tuple, PrecisionChoice] = {}  # one decision (and one log line) per process


@dataclass(frozen=True)
class PrecisionChoice:
    bf16: bool
    reason: str
    kernel: str = "conv"  # model/conv_pool.py KERNELS
    kernel_reason: str = "the default"

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"


def use_bf16(precision: str, device: torch.device, model: nn.Module) -> bool:
    """Whether to run `model` under bf16 autocast on `device` for `precision` (auto|bf16|fp32);
    also sets its encoders' convolution kernel to the one chosen with it."""
    choice = choose(precision, device, encoder_shape(model))
    for module in model.modules():
        if isinstance(module, CNNEncoder):
            module.kernel = choice.kernel
    return choice.bf16


def encoder_shape(model: nn.Module) -> EncoderShape:
    for module in model.modules():
        if isinstance(module, CNNEncoder):
            return module.shape
    raise ValueError(f"{type(model).__name__} has no CNNEncoder: cannot time its convolutions")


def choose(precision: str, device: torch.device, shape: EncoderShape) -> PrecisionChoice:
    """The precision for this model on this device, decided (and logged) once per process."""
    key = (precision, str(device), shape.embedding_dim, shape.filters, shape.widths)
    if key not in _CHOSEN:
        choice = _with_kernel(_decide(precision, device, shape), device, shape)
        log.info(
            "precision %s: %s on %s (%s); kernel %s (%s)",
            precision,
            choice.name,
            device,
            choice.reason,
            choice.kernel,
            choice.kernel_reason,
        )
        _CHOSEN[key] = choice
    return _CHOSEN[key]


def _decide(precision: str, device: torch.device, shape: EncoderShape) -> PrecisionChoice:
    if precision in ("bf16", "fp32"):
        return PrecisionChoice(precision == "bf16", f"precision: {precision} in the params")
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r} (auto, bf16 or fp32)")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice(True, f"{name} has bf16 support")
        return PrecisionChoice(False, f"{name} has no bf16 support")
    if device.type != "cpu":
        return PrecisionChoice(False, f"no bf16 rule for {device.type} devices")
    if not cpu_has_bf16():
        return PrecisionChoice(False, "the CPU has neither AVX512-BF16 nor AMX: bf16 is emulated")
    times = cached_cpu_timing(shape)
    speedup = times["fp32_ms"] / times["bf16_ms"]
    measured = (
        f"{'AMX' if cpu_has_amx() else 'AVX512-BF16 without AMX'}; "
        f"encoder forward {PROBE_BATCH}x{probe_tokens(shape)} tokens: "
        f"fp32 {times['fp32_ms']:.1f} ms, bf16 {times['bf16_ms']:.1f} ms, bf16 {speedup:.2f}x"
    )
    if speedup >= BF16_MARGIN:
        return PrecisionChoice(True, f"{measured} >= {BF16_MARGIN}x")
    return PrecisionChoice(False, f"{measured} < {BF16_MARGIN}x")


def _with_kernel(choice: PrecisionChoice, device: torch.device, shape: EncoderShape):  # noqa: ANN202
    """`choice` with the convolution kernel measured fastest in its precision on this CPU."""
    if device.type != "cpu":
        return dataclasses.replace(choice, kernel_reason=f"cuDNN's conv1d on {device.type}")
    times = cached_cpu_timing(shape)
    per_kernel = {k: times.get(f"{choice.name}_{k}_ms") for k in KERNELS}
    per_kernel = {k: v for k, v in per_kernel.items() if v is not None}
    if not per_kernel:
        return choice
    kernel = min(per_kernel, key=per_kernel.get)
    timed = ", ".join(f"{k} {v:.1f} ms" for k, v in per_kernel.items())
    reason = f"{choice.name} encoder forward, one thread: {timed}; the fastest"
    return dataclasses.replace(choice, kernel=kernel, kernel_reason=reason)


def cached_cpu_timing(shape: EncoderShape) -> dict[str, float]:
    """measure_cpu(shape), from the cache when this machine has measured it before."""
    key = " | ".join(
        [
            platform.node(),
            cpu_model(),
            f"torch {torch.__version__}",
            f"E={shape.embedding_dim} F={shape.filters} widths={list(shape.widths)}",
            f"probe {PROBE_BATCH}x{probe_tokens(shape)} zipf {PROBE_VOCAB}",
            f"kernels {'/'.join(KERNELS)}",
            f"capability {torch.backends.cpu.get_cpu_capability()}",
            f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}",
        ]
    )
    path = cache_path()
    cache: dict = {}
    with contextlib.suppress(OSError, ValueError):
        cache = json.loads(path.read_text(encoding="utf-8"))
    if key in cache:
        return cache[key]
    cache[key] = measure_cpu(shape)
    with contextlib.suppress(OSError):  # a read-only home only costs the next run a measurement
        with atomic_file(path) as handle:
            json.dump(cache, handle, indent=1, sort_keys=True)
    return cache[key]


def cache_path() -> Path:
    """$XDG_CACHE_HOME/icdtransfer/precision.json (~/.cache by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "icdtransfer" / "precision.json"


def probe_tokens(shape: EncoderShape) -> int:
    """Tokens per probe document: PROBE_FLOP of convolution per pass, 256-8,192 tokens."""
    per_token = 2 * shape.embedding_dim * shape.filters * sum(shape.widths)
    return int(min(max(PROBE_FLOP / (PROBE_BATCH * per_token), 256), 8_192))


def probe_token_ids(count: int, vocab: int) -> torch.Tensor:
    """`count` token ids drawn as words are, by Zipf's law (rank r with weight 1/r): the
    `unique` kernel's cost follows a batch's distinct tokens, which uniform ids misstate
    (uniform over 1,000 ids: 10% distinct; over 30,000: 85%). 10,172 draws of 30,000 ids hold
    36% distinct, as a stage-1 batch of abstracts does (37%), more than a stage-2 one (19%)."""
    weights = 1.0 / torch.arange(1, vocab, dtype=torch.float64)
    return torch.multinomial(weights, count, replacement=True) + 1  # 0 is padding


def measure_cpu(shape: EncoderShape) -> dict[str, float]:
    """Best-of-PROBE_REPEATS milliseconds of the encoder's forward pass (all widths) with each
    kernel in fp32 and under bf16 autocast (`<precision>_<kernel>_ms`; `fp32_ms` and `bf16_ms`:
    the fastest kernel's) on one thread, all interleaved so that load from other processes
    hits each alike. One thread: the ratio of the kernels' per-core speeds is what decides, and a
    multi-threaded pass on a shared machine times the other processes as much as the kernel
    (measured here: 2 threads under load swung the ratio from 2.2x to 0.6x)."""
    length = probe_tokens(shape)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream untouched
        torch.manual_seed(0)
        probe = EncoderShape(PROBE_VOCAB, shape.embedding_dim, shape.filters, shape.widths)
        encoder = CNNEncoder(probe).eval()
        tokens = probe_token_ids(PROBE_BATCH * length, PROBE_VOCAB).view(PROBE_BATCH, length)
    lengths = torch.full((PROBE_BATCH,), length)
    names = ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)  # emulated bf16: not timed
    best = {f"{p}_{k}_ms": float("inf") for p in names for k in KERNELS}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _time_passes(encoder, tokens, lengths, names, best)
    finally:
        torch.set_num_threads(threads)
    for name in names:
        best[f"{name}_ms"] = min(best[f"{name}_{k}_ms"] for k in KERNELS)
    return best


def _time_passes(
    encoder: CNNEncoder,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    names: tuple[str, ...],
    best: dict[str, float],
) -> None:
    with torch.inference_mode():
        for repeat in range(PROBE_REPEATS + 1):  # the first round warms up oneDNN's kernels
            for name in names:
                bf16 = name == "bf16"
                for kernel in KERNELS:
                    encoder.kernel = kernel
                    start = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        encoder(tokens, lengths)
                    if repeat:
                        key = f"{name}_{kernel}_ms"
                        best[key] = min(best[key], 1e3 * (time.perf_counter() - start))
