"""What the hardware can do fast, where that changes the advice we give."""

from __future__ import annotations

import functools
import platform
import warnings
from pathlib import Path

import torch

# CPU flags of native bf16 arithmetic: x86 (AVX512-BF16, AMX) and Arm (FEAT_BF16, "bf16" in /proc/cpuinfo).
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


@functools.cache
def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """True/False where /proc/cpuinfo tells (Linux), None where it cannot be known."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = {word for line in text.splitlines() if line.lower().startswith(("flags", "features"))
             for word in line.split(":", 1)[-1].split()}
    return bool(flags & _BF16_FLAGS)


def warn_if_slow_bf16(device: torch.device | str, dtype: torch.dtype | str, what: str) -> None:
    """bf16 on a CPU without bf16 instructions runs emulated kernels: 2-3.5x slower than fp32 (docs/benchmarks.md)."""
    bf16 = dtype in (torch.bfloat16, "bf16", "bfloat16")
    if bf16 and torch.device(device).type == "cpu" and cpu_has_bf16() is False:
        warnings.warn(
            f"{what}: bf16 was asked for, but this CPU ({platform.processor() or platform.machine()}) has no bf16 "
            "instructions (avx512_bf16/amx_bf16): bf16 runs 2-3x slower than fp32 here. Use fp32 "
            "(train.mixed_precision=no, --dtype fp32) unless you want to save memory.", stacklevel=3)
