"""Which device trains, and what its CPU can do in bf16 (train/precision.py decides)."""

from __future__ import annotations

import torch

from icdtransfer.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto`: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but no CUDA device is available")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU has AVX512-BF16 or AMX, native bf16 arithmetic (whether that makes
    bf16 faster than fp32 here is measured: train/precision.py).

    torch 2.13 answers this only through private functions (`torch.cpu._is_*_supported`;
    the public `torch.backends.cpu.get_cpu_capability()` names AVX512 but not BF16 or AMX).
    They are called here and nowhere else, so a torch upgrade that renames them breaks this
    one function, loudly (AttributeError), not the choice of precision somewhere else."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_has_amx() -> bool:
    """AMX tiles (bf16 matmuls several times faster than fp32); same private API as above."""
    return bool(torch.cpu._is_amx_tile_supported())
