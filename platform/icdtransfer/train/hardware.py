"""Which device trains, and what its CPU can do in bf16 (train/precision.py decides)."""

from __future__ import annotations

import os

import torch

from icdtransfer.config import ConfigError
from icdtransfer.machine import cpu_description


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
    one function, loudly (AttributeError), not the choice of precision somewhere else.

    A process limited below AVX-512 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2: how an
    AVX2-only machine is emulated) has no native bf16 kernels either, whatever the chip has."""
    if not limited_to_avx2() and torch.cpu._is_amx_tile_supported():
        return True
    return not limited_to_avx2() and bool(torch.cpu._is_avx512_bf16_supported())


def limited_to_avx2() -> bool:
    """Whether torch's or oneDNN's kernels are capped below AVX-512 in this process."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    capped = isa not in ("ALL", "DEFAULT") and not isa.startswith(("AVX512", "AVX10"))
    capped = capped and not isa.startswith("AMX")
    return capped or not torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def cpu_has_amx() -> bool:
    """AMX tiles (bf16 matmuls several times faster than fp32); same private API as above."""
    return bool(torch.cpu._is_amx_tile_supported())


def describe_device(device: torch.device, gpus: int = 1) -> str:
    """member.json's `device`: the GPU's name and count, or the CPU's model and bf16 units."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)} x{gpus}"
    units = [name for name, has in (("avx512_bf16", cpu_has_bf16()), ("amx", cpu_has_amx())) if has]
    return cpu_description() + (f" ({', '.join(units)})" if units else "")
