"""What machine this is, without torch: the CPU's model name (member.json's `device`, the
precision cache's key). The baselines record it too and never import torch."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path


def cpu_model() -> str:
    """This machine's CPU model name (/proc/cpuinfo; the platform's answer elsewhere)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_description() -> str:
    """member.json's `device` for a process that uses the CPU only, torch or not."""
    return f"cpu: {cpu_model()}"
