"""What the hardware can do fast, where that changes the advice we give: which units run bf16 natively, and the
precision ``auto`` resolves to on a device."""

from __future__ import annotations

import functools
import operator
import platform
import warnings
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
# CPU flags of native bf16 arithmetic: x86 (AVX512-BF16, AMX) and Arm (FEAT_BF16, "bf16" in /proc/cpuinfo).
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
# The CPU's bf16 units, fastest first: (name in messages, torch's private check, /proc/cpuinfo flag, architectures).
# torch's checks also see what /proc/cpuinfo cannot (AMX enabled by the OS; other systems); being private, they may
# vanish, so each falls back to its flag. The oneDNN check is asked on Arm only: on x86 it also says yes for
# AVX-512 without bf16, where oneDNN emulates bf16 (2-3x slower than fp32).
_CPU_UNITS = (
    ("AMX", "cpu._is_amx_tile_supported", "amx_bf16", ("x86_64", "amd64")),
    ("avx512_bf16", "cpu._is_avx512_bf16_supported", "avx512_bf16", ("x86_64", "amd64")),
    ("Arm bf16", "ops.mkldnn._is_mkldnn_bf16_supported", "bf16", ("aarch64", "arm64")),
)


@functools.cache
def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); None where it cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    return frozenset(word for line in text.splitlines() if line.lower().startswith(("flags", "features"))
                     for word in line.split(":", 1)[-1].split())


def cpu_has_bf16(cpuinfo: Path = CPUINFO) -> bool | None:
    """True/False where /proc/cpuinfo tells (Linux), None where it cannot be known."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else bool(flags & _BF16_FLAGS)


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's name ("model name" in /proc/cpuinfo), else what the platform module says."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _ask_torch(check: str) -> bool | None:
    """One of torch's private hardware checks by its path under ``torch``; None where it is missing or fails."""
    try:
        return bool(operator.attrgetter(check)(torch)())
    except Exception:  # private API: gone, renamed or broken in this torch build
        return None


def cpu_bf16_unit(cpuinfo: Path = CPUINFO) -> str | None:
    """The CPU's fastest native bf16 unit ("AMX", "avx512_bf16", "Arm bf16"), None where it has none (or where
    neither torch nor /proc/cpuinfo can tell)."""
    flags = cpu_flags(cpuinfo) or frozenset()
    machine = platform.machine().lower()
    for name, check, flag, machines in _CPU_UNITS:
        if machine not in machines:
            continue
        native = _ask_torch(check)
        if native if native is not None else flag in flags:
            return name
    return None


def _device(device: torch.device | str) -> torch.device:
    """``"auto"``: the device Accelerate and the Translator pick (CUDA, else Apple MPS, else the CPU)."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if torch.backends.mps.is_available() else "cpu")


def resolve_mixed_precision(requested: str, device: torch.device | str = "auto") -> tuple[str, str]:
    """``train.mixed_precision`` → (Accelerate's "no" | "bf16" | "fp16", a one-line reason). ``"auto"`` is bf16
    where ``device`` runs it natively (CPUs with AMX, AVX512-BF16 or Arm bf16; CUDA GPUs that support it), fp32
    elsewhere: emulated bf16 is slower than fp32."""
    if requested != "auto":
        return requested, f"{'fp32' if requested == 'no' else requested}: as set"
    device = _device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return "bf16", f"bf16: {name} supports it"
        return "no", f"fp32: {name} has no bf16"
    if device.type != "cpu":
        return "no", f"fp32: bf16 speed on {device.type} is not known"
    unit = cpu_bf16_unit()
    if unit:
        return "bf16", f"bf16: this CPU has {unit}"
    return "no", "fp32: this CPU has no bf16 instructions"


def warn_if_slow_bf16(device: torch.device | str, dtype: torch.dtype | str, what: str) -> None:
    """bf16 on a CPU without bf16 instructions runs emulated kernels: 2-3.5x slower than fp32 (docs/benchmarks.md)."""
    bf16 = dtype in (torch.bfloat16, "bf16", "bfloat16")
    if bf16 and torch.device(device).type == "cpu" and cpu_has_bf16() is False and cpu_bf16_unit() is None:
        warnings.warn(
            f"{what}: bf16 was asked for, but this CPU ({platform.processor() or platform.machine()}) has no bf16 "
            "instructions (avx512_bf16/amx_bf16): bf16 runs 2-3x slower than fp32 here. Use fp32 "
            "(train.mixed_precision=no, --dtype fp32) unless you want to save memory.", stacklevel=3)
