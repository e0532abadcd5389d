"""Memory of a training run: the budget ``train.max_memory`` (parsed, measured against, planned for), peak meters
(peak RSS on the CPU, ``max_memory_allocated`` on a GPU), and the out-of-memory stop.

The plan: candidates from the cheapest in time to the most frugal (as configured; gradient checkpointing; halved
micro-batches with gradient accumulation at the same effective batch; bf16 where the hardware runs it natively), each
measured by one real training step (the trainer's probe, whose effects on weights, optimizers and random state are
undone), the first that fits kept.
"""

from __future__ import annotations

import copy
import ctypes
import json
import math
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from translate.config import Config, ConfigError
from translate.devices import resolve_mixed_precision
from translate.engine.checkpoint import latest_checkpoint
from translate.engine.jobs import Job
from translate.fileio import write_text

GiB = 2**30
UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
         "g": GiB, "gb": 10**9, "gib": GiB, "t": 2**40, "tb": 10**12, "tib": 2**40}
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


class OutOfMemoryStop(RuntimeError):
    """Raised after a step ran out of memory (GPU or CPU), naming the settings that lower it; a checkpoint of the
    last finished step is saved where one can be."""


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


# -- the trainer's side: the plan from probe steps, the peak log, the out-of-memory stop ------------------------
def plan_memory(trainer) -> Config | None:
    """train.max_memory: measure candidate settings with probe steps and keep the first that fits. Returns the config
    to build the run again with when the batch, the accumulation or the precision change; None when the settings
    stay (checkpointing is switched in place); a ConfigError when nothing fits. ``trainer.memory`` keeps the plan."""
    acc, config = trainer.accelerator, trainer.config
    t, d = config.train, config.data
    budget = budget_bytes(t.max_memory, acc.device)
    precision = acc.mixed_precision
    configured = Setting(t.gradient_checkpointing, d.batch_size, t.gradient_accumulation_steps, precision)
    native_bf16 = resolve_mixed_precision("auto", acc.device)[0] == "bf16"
    batch = default_collate([trainer.dataset[i] for i in range(min(d.batch_size, len(trainer.dataset)))])
    batch = {k: v.to(acc.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def measure(setting: Setting) -> tuple[int, bool]:
        value, complete = probe(trainer, setting, batch, budget)
        if acc.num_processes > 1:  # every process must choose the same: the largest peak decides
            both = torch.tensor([float(value), float(not complete)])
            torch.distributed.all_reduce(both, torch.distributed.ReduceOp.MAX, group=trainer.cpu_group)
            value, complete = int(both[0].item()), not both[1].item()
        shown = gib(value) if complete else f"over {gib(value)} (stopped)"
        acc.print(f"train.max_memory: probe step with {setting.describe(d.batch_size)}: peak {shown}")
        return value, complete

    chosen, measured = plan(candidates(configured, d.batch_size, native_bf16), measure, budget)
    trainer.set_checkpointing(configured.checkpointing)
    release_free_memory(acc.device)
    if chosen is None:
        setting, (value, complete) = min(measured.items(), key=lambda kv: kv[1][0])
        need = math.ceil(value / GiB * 10) / 10
        what = (f"the smallest peak measured was {gib(value)}, with {setting.describe(d.batch_size)}; "
                f"train.max_memory={need:g}GiB would fit" if complete else
                f"every setting went over it (the most frugal, {setting.describe(d.batch_size)}, was stopped at "
                f"{gib(value)}); it needs more than train.max_memory={need:g}GiB")
        raise ConfigError(f"train.max_memory={t.max_memory} ({gib(budget)}): nothing fits: {what}, or lower "
                          f"data.crop_size (now {d.crop_size})")
    trainer.memory = {"budget": budget, "setting": asdict(chosen), "expected_peak": measured[chosen][0],
                      "device": str(acc.device),
                      "measured": [{**asdict(s), "peak": v, "complete": c} for s, (v, c) in measured.items()]}
    acc.print(f"train.max_memory={t.max_memory} ({gib(budget)}): training with {chosen.describe(d.batch_size)}; "
              f"expected peak {gib(measured[chosen][0])}")
    if replace(chosen, checkpointing=configured.checkpointing) == configured:
        t.gradient_checkpointing = chosen.checkpointing
        trainer.set_checkpointing(chosen.checkpointing)
        return None
    planned = copy.deepcopy(config)
    planned.train.gradient_checkpointing = chosen.checkpointing
    planned.data.batch_size = chosen.micro_batch
    planned.train.gradient_accumulation_steps = chosen.accumulation
    if chosen.precision != precision:
        planned.train.mixed_precision = chosen.precision
    return planned


def probe(trainer, setting: Setting, batch: dict, budget: int) -> tuple[int, bool]:
    """(peak memory in bytes, completed) of one real training step (every phase, the optimizer steps included) in
    ``setting``; not completed when it ran out of memory or went over ``budget`` (interrupted there on the CPU), the
    peak then being the one reached. Everything the step changes is put back: weights and buffers, optimizers,
    random states, the recipe's state (image pools), the loop state and the accelerator's accumulation counter."""
    acc = trainer.accelerator
    saved = _snapshot(trainer)
    trainer.set_checkpointing(setting.checkpointing)
    micro = {k: v[: setting.micro_batch] if isinstance(v, torch.Tensor | list) else v for k, v in batch.items()}
    if setting.precision == "bf16" and acc.mixed_precision != "bf16":
        trainer.autocast = torch.autocast(acc.device.type, dtype=torch.bfloat16)
    step = acc.step
    acc.gradient_state._set_sync_gradients(True)
    meter = PeakMeter(acc.device, budget if acc.num_processes == 1 else None)
    failed = False
    try:
        try:
            with meter:
                try:
                    trainer.train_step(micro)
                finally:
                    meter.disarm()  # no interruption can come after this, outside the except below
        except BaseException as e:  # the meter's interruption may land anywhere in the step
            if not (meter.exceeded or is_out_of_memory(e)):
                raise
            failed = True
    finally:
        trainer.autocast = None
        acc.step = step
        acc.gradient_state._set_sync_gradients(step % acc.gradient_accumulation_steps == 0)
        _restore(trainer, saved)
    return meter.value, not (failed or meter.exceeded)


def _snapshot(trainer) -> dict:
    return {
        "nets": {n: {k: v.clone() for k, v in net.state_dict().items()} for n, net in trainer.nets.items()},
        "requires_grad": [p.requires_grad for net in trainer.nets.values() for p in net.parameters()],
        "optimizers": {g: copy.deepcopy(o.state_dict()) for g, o in trainer.optimizers.items()},
        "scalers": {g: s.state_dict() for g, s in trainer.scalers.items()},
        "recipe": copy.deepcopy(trainer.recipe.state_dict()),
        "state": copy.deepcopy(trainer.state.state_dict()),
        "rng": (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                random.getstate(), np.random.get_state()),
        "diffaugment": trainer.diffaugment.generator.get_state() if trainer.diffaugment is not None else None,
    }


def _restore(trainer, saved: dict) -> None:
    for name, net in trainer.nets.items():
        net.load_state_dict(saved["nets"][name])
        for p in net.parameters():
            p.grad = None
    for p, flag in zip((p for net in trainer.nets.values() for p in net.parameters()), saved["requires_grad"]):
        p.requires_grad_(flag)
    for group, optimizer in trainer.optimizers.items():
        optimizer.optimizer.__dict__.pop("found_inf", None)  # left by a step interrupted inside the phase
        optimizer.load_state_dict(saved["optimizers"][group])
    for group, scaler in trainer.scalers.items():
        scaler.load_state_dict(saved["scalers"][group])
    trainer.recipe.load_state_dict(saved["recipe"])
    trainer.state.load_state_dict(saved["state"])
    cpu, cuda, python, numpy_state = saved["rng"]
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(python)
    np.random.set_state(numpy_state)
    if saved["diffaugment"] is not None:
        trainer.diffaugment.generator.set_state(saved["diffaugment"])


class MemoryLog(Job):
    """The peak memory so far, every ``train.log_every`` steps and at the end, to TensorBoard (memory/peak_gib) and
    logs/memory.json (with the plan of train.max_memory); kept out of logs/losses.jsonl, whose values a resumed run
    reproduces exactly."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step(self, batch: dict, ctx: dict) -> None:
        if self.trainer.state.step % self.trainer.config.train.log_every == 0:
            self.log()

    def on_end(self, batch: dict | None, ctx: dict | None) -> None:
        self.log()
        trainer = self.trainer
        if trainer.memory:
            trainer.accelerator.print(
                f"peak memory reached: {gib(trainer.state.peak_memory)} (train.max_memory="
                f"{trainer.config.train.max_memory} expected {gib(trainer.memory['expected_peak'])}; logs/memory.json)")

    def log(self) -> None:
        trainer = self.trainer
        self.write()
        trainer.accelerator.log({"memory/peak_gib": trainer.state.peak_memory / GiB}, step=trainer.state.step)

    def write(self) -> None:
        """logs/memory.json: the budget, the setting chosen, the peak expected and the peak reached so far."""
        trainer = self.trainer
        device = trainer.accelerator.device
        trainer.state.peak_memory = max(trainer.state.peak_memory, peak(device))
        if not trainer.accelerator.is_main_process:
            return
        t, budgeted = trainer.config.train, trainer.memory
        record = {"step": trainer.state.step, "device": str(device),
                  "measure": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS (VmHWM)",
                  "peak_gib": round(trainer.state.peak_memory / GiB, 3),
                  "gradient_checkpointing": t.gradient_checkpointing, "batch_size": trainer.config.data.batch_size,
                  "gradient_accumulation_steps": t.gradient_accumulation_steps, "max_memory": t.max_memory}
        if budgeted:
            record.update(budget_gib=round(budgeted["budget"] / GiB, 3),
                          expected_peak_gib=round(budgeted["expected_peak"] / GiB, 3),
                          probes=[{**m, "peak_gib": round(m["peak"] / GiB, 3)} for m in budgeted["measured"]])
        write_text(trainer.run_dir / "logs" / "memory.json", json.dumps(record, indent=1) + "\n")


def out_of_memory_stop(trainer, error: str, batch: dict, can_save: bool) -> None:
    """Raise OutOfMemoryStop: one line naming what to change, after saving a checkpoint of the last finished step
    where the failed batch had changed nothing yet (no optimizer step in it, no accumulated gradients pending)."""
    acc, state, t, d = trainer.accelerator, trainer.state, trainer.config.train, trainer.config.data
    for net in trainer.nets.values():  # free the failed step's gradients and unfreeze what its phase froze
        net.requires_grad_(True)
        for p in net.parameters():
            p.grad = None
    release_free_memory(acc.device)
    size = "×".join(str(n) for n in batch["A"].shape[-2:]) if isinstance(batch.get("A"), torch.Tensor) else \
        str(d.crop_size)
    where = "GPU" if acc.device.type == "cuda" else "CPU"
    if can_save and state.step > 0 and acc.num_processes == 1:
        saved = f"checkpoint of step {state.step} saved to {trainer.checkpoint()}; continue with --resume"
    else:
        saved = f"the last checkpoint is {latest_checkpoint(trainer.run_dir) or 'none'}"
    hints = [f"a smaller data.crop_size (now {d.crop_size})"]
    if not t.gradient_checkpointing:
        hints.append("train.gradient_checkpointing=true")
    if not t.max_memory:
        hints.append("train.max_memory=<GiB you have> to let the run choose")
    elif d.batch_size > 1:
        hints.append(f"a lower train.max_memory (now {t.max_memory}) or data.batch_size (now {d.batch_size})")
    acc.end_training()
    raise OutOfMemoryStop(f"out of {where} memory at step {state.step + 1} ({size} px, batch {d.batch_size}): "
                          f"{error}; try {', or '.join(hints)}; {saved}")
