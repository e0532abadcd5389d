"""Memory of a training run: the budget ``train.max_memory`` (parsed, measured against, planned for), peak meters
(peak RSS on the CPU, ``max_memory_allocated`` on a GPU), and the out-of-memory stop.

The plan: candidates from the cheapest in time to the most frugal (as configured; gradient checkpointing; halved
micro-batches with gradient accumulation at the same effective batch; bf16 where the hardware runs it natively), each
measured by one real training step (the trainer's probe, whose effects on weights, optimizers and random state are
undone), the first that fits kept.
"""

from __future__ import annotations

import ctypes
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

GiB = 2**30
UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
         "g": GiB, "gb": 10**9, "gib": GiB, "t": 2**40, "tb": 10**12, "tib": 2**40}
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def parse_memory(text: str | float) -> tuple[int | None, float | None]:
    """``train.max_memory`` → (bytes, None) for "6GiB" / "512MB" / "6g", or (None, fraction) for a number in (0, 1]."""
    value = str(text).strip().lower().replace(" ", "")
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([a-z]*)", value)
    if not match or match.group(2) not in UNITS:
        raise ValueError(f"train.max_memory={text!r}: give a size (6GiB, 512MiB, 8GB) or a fraction of the device's "
                         "memory (0.5)")
    number, unit = float(match.group(1)), match.group(2)
    if not unit and number <= 1:
        if number <= 0:
            raise ValueError(f"train.max_memory={text!r}: a fraction must be above 0")
        return None, number
    if not unit:
        raise ValueError(f"train.max_memory={text!r}: a number above 1 needs a unit (e.g. {number:g}GiB)")
    return int(number * UNITS[unit]), None


def device_memory(device: torch.device) -> int:
    """All the memory of ``device``: the GPU's, or on the CPU the machine's RAM (or the cgroup's limit, if lower)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    total = next(int(ln.split()[1]) * 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
                 if ln.startswith("MemTotal:"))
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.is_file() and limit.read_text().strip().isdigit():
        total = min(total, int(limit.read_text()))
    return total


def budget_bytes(spec: str, device: torch.device) -> int:
    size, fraction = parse_memory(spec)
    return size if size is not None else int(fraction * device_memory(device))


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation: CUDA's OutOfMemoryError, Python's MemoryError, the CPU allocator's RuntimeError."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OOM_MESSAGES)


# -- peaks -----------------------------------------------------------------------------------------------------
def _status(key: str) -> int:
    """A /proc/self/status value in bytes (VmRSS, VmHWM); 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def release_free_memory(device: torch.device) -> None:
    """Give memory freed by torch back to the system (glibc keeps freed heap pages), so RSS measures what is used."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def reset_peak(device: torch.device) -> bool:
    """Start a new peak: ``max_memory_allocated`` on a GPU; VmHWM on the CPU (writing 5 to /proc/self/clear_refs).
    False where the CPU's peak cannot be reset (then only ``PeakMeter``'s sampling measures a new one)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak(device: torch.device) -> int:
    """The peak since the last ``reset_peak`` (or since the process started), in bytes."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _status("VmHWM")


class _OverBudget(Exception):
    """Raised into the main thread by ``PeakMeter`` when the probed step has gone over the limit (CPU)."""


class PeakMeter:
    """The peak memory of what runs inside: VmHWM after a reset, and RSS sampled every millisecond by a thread (the
    fallback where VmHWM cannot be reset). With ``limit`` (bytes, CPU only), a step whose RSS passes it is
    interrupted with ``_OverBudget`` between two operations, so a probe of a setting that cannot fit never reaches
    the machine's out-of-memory killer; ``exceeded`` then says so."""

    def __init__(self, device: torch.device, limit: int | None = None):
        self.device, self.limit = device, limit if device.type == "cpu" else None
        self.exceeded, self._sampled, self._reset, self._armed = False, 0, False, False
        self._stop, self._lock = threading.Event(), threading.Lock()

    def __enter__(self):
        release_free_memory(self.device)
        self._reset = reset_peak(self.device)
        if self.device.type == "cpu":
            self._main, self._armed = threading.get_ident(), True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            rss = _status("VmRSS")
            self._sampled = max(self._sampled, rss)
            with self._lock:
                if self._armed and self.limit and rss > self.limit and not self.exceeded:
                    self.exceeded = True
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._main),
                                                               ctypes.py_object(_OverBudget))
            time.sleep(0.001)

    def disarm(self) -> None:
        """No interruption from now on; one not delivered yet is withdrawn (call it where an _OverBudget is still
        caught: one sent just before may arrive during this call)."""
        with self._lock:
            self._armed = False
            if self.exceeded:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._main), None)

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self) -> None:
        """End the sampling. Safe to call more than once."""
        self.disarm()
        self._stop.set()
        if self.device.type == "cpu":
            self._thread.join()
        else:
            torch.cuda.synchronize(self.device)

    @property
    def value(self) -> int:
        """The peak in bytes."""
        return max(peak(self.device) if self._reset else 0, self._sampled)


# -- the plan ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One way to run the configured step: checkpointing, micro-batch (× accumulation) and precision."""

    checkpointing: bool
    micro_batch: int
    accumulation: int  # gradient accumulation steps, the configured ones times batch / micro_batch
    precision: str  # Accelerate's "no" | "bf16" | "fp16"

    def describe(self, batch: int) -> str:
        parts = ["gradient checkpointing" if self.checkpointing else "no checkpointing"]
        if self.micro_batch != batch:
            parts.append(f"micro-batches of {self.micro_batch} × {self.accumulation} accumulated (effective batch "
                         f"unchanged)")
        parts.append("bf16" if self.precision == "bf16" else "fp32" if self.precision == "no" else self.precision)
        return ", ".join(parts)


def candidates(configured: Setting, batch: int, bf16_native: bool) -> list[Setting]:
    """Settings from the cheapest in time to the most frugal in memory (see the module docstring)."""
    out = [configured]
    last = replace(configured, checkpointing=True)
    out.append(last)
    micro = configured.micro_batch
    while micro % 2 == 0:
        micro //= 2
        last = replace(last, micro_batch=micro, accumulation=configured.accumulation * batch // micro)
        out.append(last)
    if configured.precision == "no" and bf16_native:
        out.append(replace(last, precision="bf16"))
    return list(dict.fromkeys(out))  # without repeats (checkpointing already on)


def plan(settings: list[Setting], measure, budget: int) -> tuple[Setting | None, dict[Setting, tuple[int, bool]]]:
    """The first of ``settings`` whose measured peak fits ``budget``. ``measure(setting)`` gives (peak bytes, whether
    the step completed): one that ran out of memory or was stopped over the budget gives the peak it had reached, a
    lower bound. Returns (the setting or None, every measurement)."""
    measured = {}
    for setting in settings:
        measured[setting] = value, complete = measure(setting)
        if complete and value <= budget:
            return setting, measured
    return None, measured
