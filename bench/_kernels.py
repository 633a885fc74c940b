"""Shared by the throughput benches: FLOP counts, this machine's fp32 matmul peak, and the
textbook encoder the baselines run.

FLOP convention (multiply and add counted as 2):

* convolution forward: 2 * E * F * w for every valid window of every width, i.e.
  sum over documents and widths of 2 * E * F * w * max(0, length - w + 1), at the lengths the
  model actually sees (after truncation, and after word dropout in training);
* training backward, as the project executes it (model/conv_pool.py): only each filter's
  winning window gets a gradient, 2 * 2 * E * F * w per document, filter and width (weights
  and embedding rows). The dense backward of autograd would be 2x the forward; that
  "dense-equivalent" count is printed for comparison, not used for the efficiency;
* the heads (adaptation and output layers) are not counted.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch

from icdtransfer.model.cnn import CNNEncoder
from icdtransfer.model.conv_pool import reference_features
from icdtransfer.model_meta import EncoderShape

# The benches' two sizes (`--dims`): params.yaml's defaults (the study `make repro` runs) and
# presets/paper.yaml's. mean_length: the synthetic notes' mean words (default corpus: 1,268).
DIMS = {
    "default": dict(
        shape=EncoderShape(27_026, 64, 64, (3, 4, 5)),
        labels=71,
        adaptation=256,
        dropout=0.1,
        max_tokens=700,  # issue 19's measured size; params.yaml truncates at 400 since issue 18
        mean_length=1_268,
        codes_per_note=4.7,
        batch=16,
    ),
    "paper": dict(
        shape=EncoderShape(30_000, 300, 300, (3, 4, 5)),
        labels=1_231,
        adaptation=512,
        dropout=0.5,
        max_tokens=6_000,
        mean_length=5_303,
        codes_per_note=7.4,
        batch=16,
    ),
}


def conv_forward_flops(lengths: np.ndarray, embedding_dim: int, filters: int, widths) -> float:
    lengths = np.asarray(lengths, dtype=np.float64)
    return float(
        sum(
            2.0 * embedding_dim * filters * w * np.maximum(lengths - w + 1, 0).sum() for w in widths
        )
    )


def sparse_backward_flops(documents: int, embedding_dim: int, filters: int, widths) -> float:
    return float(sum(4.0 * embedding_dim * filters * w * documents for w in widths))


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: oneDNN builds its kernels on the first call
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def fp32_matmul_rates(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of torch's fp32 GEMMs here: MKL's (torch.mm) and oneDNN's (an mkldnn linear
    layer). On AMD CPUs MKL's fp32 GEMM runs at about half of oneDNN's, so taking only torch.mm
    would flatter every efficiency figure."""
    torch.manual_seed(0)
    a, b = torch.randn(size, size), torch.randn(size, size)
    flops = 2.0 * size**3
    rates = {"MKL torch.mm": flops / best_seconds(lambda: a @ b, repeats) / 1e9}
    if torch.backends.mkldnn.is_available():
        from torch.utils import mkldnn

        layer = mkldnn.to_mkldnn(torch.nn.Linear(size, size, bias=False))
        x = a.to_mkldnn()
        with torch.no_grad():
            rates["oneDNN linear"] = flops / best_seconds(lambda: layer(x), repeats) / 1e9
    return rates


def kernel_line(choice) -> str:  # noqa: ANN001 - a train.precision.PrecisionChoice
    """What the benches print about the kernel and precision the project chose, and why."""
    return (
        f"precision auto: {choice.name} ({choice.reason}); convolution kernel {choice.kernel} "
        f"({choice.kernel_reason})"
    )


def peak(*measurements: dict[str, float]) -> tuple[float, str]:
    """The machine's fp32 matmul peak: the fastest GEMM in any of `measurements` (taken before
    and after the timed runs, so a burst of load on this shared machine lowers it less), and a
    description of what was measured."""
    best = {k: max(m[k] for m in measurements) for k in measurements[0]}
    rate = max(best.values())
    parts = ", ".join(f"{k} {v:.0f}" for k, v in best.items())
    return rate, f"{rate:.0f} GFLOP/s (2048^3, best of 5, before and after: {parts})"


class TextbookEncoder(CNNEncoder):
    """The encoder as it was before issue 11: full feature maps, masked_fill, amax, autograd's
    dense backward (icdtransfer.model.conv_pool.reference_features)."""

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return reference_features(tokens, lengths, self.embedding, self.convs, self.shape.widths)


def textbook(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` (same weights) whose encoders compute the textbook way."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if type(module) is CNNEncoder:
            module.__class__ = TextbookEncoder
    return model
