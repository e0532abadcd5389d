"""The one adversarial training loop, on Hugging Face Accelerate, shared by every recipe.

Per batch, inside ONE ``accelerator.accumulate`` block, the recipe's phases run in order (e.g. G, then D, then a
lazy R1 every 16 steps): each freezes every network outside its optimizer group (so G's loss cannot leak into D's
accumulated gradient), backprops, and steps its group. Networks are plain modules on every process; gradients are
averaged across processes by hand before each step (as in stylegan3), so recipes call them freely
(``G(x, layers=...)``, hooks). Everything a resume needs is checkpointed, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from translate.config import Config, ConfigError, load_config, recipe_class, to_yaml
from translate.devices import resolve_mixed_precision, warn_if_slow_bf16
from translate.engine.checkpoint import latest_checkpoint, list_checkpoints, load_process_state, save_checkpoint
from translate.engine.ema import EMA
from translate.engine.memory import (
    GiB,
    PeakMeter,
    Setting,
    budget_bytes,
    candidates,
    gib,
    is_out_of_memory,
    peak,
    plan,
    release_free_memory,
    reset_peak,
)
from translate.engine.samples import save_samples
from translate.engine.signals import INTERRUPTED_EXIT_CODE, StopSignal
from translate.engine.watch import WATCH_IMAGES, collapse_warning, real_diversity, watched_diversity
from translate.fileio import write_text
from translate.losses import penalty_scale
from translate.methods import Phase, Role
from translate.networks.checkpointing import disable_checkpointing, enable_checkpointing
from translate.networks.pretrained import load_pretrained, save_pretrained

__all__ = ["INTERRUPTED_EXIT_CODE", "BadFileStop", "OutOfMemoryStop", "Trainer", "TrainingDiverged",
           "TrainingInterrupted", "run_directory", "train"]

COLLAPSE_D_LOSS = 0.01  # total D loss below this (per log window) is a sign of a collapsed game...
COLLAPSE_WINDOWS = 5  # ...when it lasts this many log windows
QUALITY_EVALS = 3  # evaluations in a row worse than doing nothing before a warning
LOWER_IS_BETTER = ("fid", "kid", "lpips", "l1")


class TrainingInterrupted(RuntimeError):
    """Raised after a signal asked training to stop and a checkpoint was saved."""


class TrainingDiverged(RuntimeError):
    """Raised after too many consecutive steps with non-finite losses or gradients."""


class BadFileStop(RuntimeError):
    """Raised after a file that passed the scan failed to load (data.on_bad_file=error) and a checkpoint was saved."""


class OutOfMemoryStop(RuntimeError):
    """Raised after a step ran out of memory (GPU or CPU), naming the settings that lower it; a checkpoint of the
    last finished step is saved where one can be."""


@dataclass
class TrainState:
    """Loop position, saved with every checkpoint (Accelerate does not save step or epoch itself)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    skipped_steps: int = 0  # steps skipped for non-finite gradients, in all
    best: float | None = None  # best value of train.best_metric so far
    scaler_skipped_steps: int = 0  # fp16 optimizer steps the grad scalers skipped (overflow while they calibrate)
    weak_d_windows: int = 0  # consecutive log windows in which D's loss was near zero
    global_batch: int = 0  # images per batch over all processes when saved: batch_in_epoch counts such batches
    worse_evals: int = 0  # consecutive evaluations worse than doing nothing
    diversity_real: float | None = None  # the real images' diversity (noise recipes), measured once
    collapse_warned: bool = False  # "samples have collapsed" was printed (once per run)
    seconds: float = 0.0  # wall-clock time of training up to this checkpoint, over every run that resumed it
    stale_evals: int = 0  # evaluations in a row without an improvement of train.best_metric (train.early_stop)
    stale_reference: float | None = None  # the value an improvement must beat by train.early_stop_min_delta
    stopped_early: str = ""  # why the run stopped early ("" while it has not)
    peak_memory: int = 0  # the largest peak memory (bytes) of the runs so far (peak RSS, or GPU memory allocated)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class _Networks:
    """Every network's weights as one checkpointed object (the networks are not wrapped by ``prepare``)."""

    def __init__(self, nets: dict[str, nn.Module]):
        self.nets = nets

    def state_dict(self):
        return {name: net.state_dict() for name, net in self.nets.items()}

    def load_state_dict(self, state):
        for name, net in self.nets.items():
            net.load_state_dict(state[name])


def as_config(config: Config | str | Path | tuple) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, tuple):
        return load_config(*config)
    return load_config(config)


def run_directory(config: Config) -> Path:
    return Path(config.train.output_dir or Path("runs") / config.name)


def _check_writable(run_dir: Path) -> None:
    """Fail before any work when the run directory cannot be created or written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"train.output_dir={run_dir} is a file, not a directory")
    parent = run_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"train.output_dir={run_dir} cannot be created: {parent} is not a writable directory")


def _resume_path(run_dir: Path, resume: bool | str | Path) -> Path | None:
    if not resume:
        if list_checkpoints(run_dir):
            raise ConfigError(f"{run_dir} already holds checkpoints of an earlier run: continue it with --resume, "
                              "or choose another directory with train.output_dir=...")
        return None
    if resume is True:
        found = latest_checkpoint(run_dir)
        if found is None:  # handy for preemptible jobs: the same command starts and continues
            print(f"--resume: no checkpoint in {run_dir / 'checkpoints'} yet: starting from scratch", flush=True)
        return found
    path = Path(resume)
    if not (path / "custom_checkpoint_0.pkl").is_file():
        raise ConfigError(f"{path} is not a complete training checkpoint (checkpoints/step_NNNNNN of a run)")
    return path


def lr_lambda(config: Config):
    """The learning-rate factor per epoch of ``train.lr_policy`` (the reference's schedules)."""
    t = config.train
    total = t.n_epochs + t.n_epochs_decay
    if t.lr_policy == "linear":  # the reference: constant for n_epochs, then linearly to zero
        return lambda epoch: 1.0 - max(0, epoch + 1 - t.n_epochs) / float(t.n_epochs_decay + 1)
    if t.lr_policy == "step":
        return lambda epoch: 0.1 ** (epoch // t.lr_decay_iters)
    if t.lr_policy == "cosine":  # over the whole run (the reference's T_max=n_epochs restarts halfway)
        return lambda epoch: 0.5 * (1 + math.cos(math.pi * min(epoch, total) / total))
    return lambda epoch: 1.0


def _hparams(config: Config) -> dict:
    flat = {}
    for group in ("model", "data", "train"):
        for key, value in OmegaConf.to_container(OmegaConf.structured(getattr(config, group))).items():
            if isinstance(value, int | float | str | bool):
                flat[f"{group}.{key}"] = value
    return flat


def _found_inf(params: list[nn.Parameter], device: torch.device) -> torch.Tensor:
    """1.0 when any gradient holds inf or NaN, else 0.0, as a tensor (no host sync). One pass over the gradients:
    NaN and inf propagate into the norms (so do gradients above ~1e19, whose square overflows: divergence anyway)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    return torch.stack(torch._foreach_norm(grads)).sum().isfinite().logical_not().float()


def _average_gradients(params: list[nn.Parameter], world: int) -> None:
    """Mean of the gradients over all processes, in one all-reduce (what DDP would do, for plain modules)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch._utils._flatten_dense_tensors(grads)
    torch.distributed.all_reduce(flat)
    flat /= world
    for p, g in zip(params, torch._utils._unflatten_dense_tensors(flat, grads)):
        p.grad = g


def _compile_works() -> str:
    """'' when torch.compile runs here, else why not (no C++ compiler, an unsupported Python...)."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2))
        return ""
    except Exception as e:  # the toolchain fails in many ways
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


class Trainer:
    """Builds everything for one run and runs the loop; ``train()`` below is the public entry point."""

    def __init__(self, config: Config, resume: bool | str | Path = False, _memory_plan: dict | None = None):
        from translate.data import build_dataset
        from translate.data.loader import build_loader

        self.config = config
        t, d = config.train, config.data
        self.run_dir = run_directory(config)
        _check_writable(self.run_dir)
        self.resume_from = _resume_path(self.run_dir, resume)
        # Accelerate keeps process-wide singletons; a library user may train several configs in one process
        # (e.g. fp32 then bf16), so start each run from a fresh state. The distributed setup itself is kept.
        AcceleratorState._reset_state()
        GradientState._reset_state()
        # Several processes without a GPU (torchrun, accelerate launch) need cpu=True, or Accelerate silently runs
        # each process on its own.
        multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        precision, reason = resolve_mixed_precision(t.mixed_precision, "cpu" if multi_cpu else "auto")
        self.accelerator = acc = Accelerator(
            cpu=multi_cpu,
            mixed_precision=precision,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            log_with="tensorboard",
            project_config=ProjectConfiguration(project_dir=str(self.run_dir), logging_dir=str(self.run_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=t.seed),
            step_scheduler_with_optimizer=False,
        )
        if t.mixed_precision == "auto":
            acc.print(f"train.mixed_precision=auto: {reason}")
        if precision == "fp16" and acc.device.type != "cuda":
            raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU (its grad scaler); use bf16 on the CPU")
        if config.model.sync_bn and acc.num_processes > 1 and acc.device.type not in ("cuda", "xpu"):
            # Else every process fails at its first batch norm, inside torch, after the dataset scan.
            raise ConfigError(f"model.sync_bn=true needs GPUs: torch's SyncBatchNorm does not run on "
                              f"{acc.device.type} processes; set model.sync_bn=false")
        warn_if_slow_bf16(acc.device, precision, "train.mixed_precision")
        if acc.device.type == "cpu" and (acc.num_processes > 1 or "OMP_NUM_THREADS" not in os.environ):
            # Launchers set OMP_NUM_THREADS=1 per process; use this machine's cores, shared between the processes.
            # A single process keeps the user's own OMP_NUM_THREADS.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // acc.num_processes))
        elif acc.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        set_seed(t.seed)

        # Data first: a broken dataset fails before anything is written. The main process scans (and fills the
        # verification cache) first; the others then read the cache.
        with acc.main_process_first():
            self.dataset = build_dataset(config, "train")
        loader = build_loader(self.dataset, config, acc.device.type)

        self.recipe = recipe = recipe_class(config.model.recipe)(config)
        self.phases: list[Phase] = recipe.phases()
        self._check_recipe()
        nets = recipe.build()
        first = default_collate([self.dataset[i] for i in range(min(d.batch_size, len(self.dataset)))])
        nets.update(recipe.build_after_first_batch(nets, first))
        if t.init_from:
            self._init_from(nets, t.init_from)
        if config.model.sync_bn and acc.num_processes > 1:
            nets = {name: nn.SyncBatchNorm.convert_sync_batchnorm(net) for name, net in nets.items()}
        memory_format = torch.channels_last if t.channels_last else torch.preserve_format
        self.nets = {name: net.to(acc.device, memory_format=memory_format) for name, net in nets.items()}
        self._set_checkpointing(t.gradient_checkpointing)
        set_seed(t.seed, device_specific=True)  # same initial weights everywhere, then per-process dropout noise
        if t.compile:
            self._compile()

        # Fused Adam (one kernel; on the CPU since torch 2.4) is 3-6x faster than foreach and skips a step with
        # non-finite gradients itself (see _phase); foreach elsewhere.
        fused = {"fused": True} if acc.device.type in ("cpu", "cuda") else {"foreach": True}
        optimizers = {}
        for group, members in recipe.groups.items():
            o = t.optimizers.get(group)
            lr = o.lr if o and o.lr is not None else t.lr
            betas = (o.beta1 if o and o.beta1 is not None else t.beta1,
                     o.beta2 if o and o.beta2 is not None else t.beta2)
            params = [p for name in members for p in self.nets[name].parameters()]
            optimizers[group] = torch.optim.Adam(params, lr=lr, betas=betas, **fused)
        self.schedulers = {g: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(config)) for g, o in optimizers.items()}
        *prepared, self.loader = acc.prepare(*optimizers.values(), loader)
        self.optimizers = dict(zip(optimizers, prepared))
        # fp16: one grad scaler per group, so that G's step cannot rescale D's gradients mid-accumulation.
        self.scalers = {g: torch.amp.GradScaler(acc.device.type) for g in optimizers} if precision == "fp16" else {}
        for group, scaler in self.scalers.items():
            self.optimizers[group].scaler = scaler

        self.state = TrainState()
        self._cpu_group = torch.distributed.new_group(backend="gloo") if acc.num_processes > 1 else None
        self._skips = torch.zeros(3, device=acc.device)  # skipped steps: current run, longest run, count (unread)
        self.ema = {n: EMA(self.nets[n], t.ema_decay, t.ema_warmup)
                    for n in recipe.names(Role.exported)} if t.ema else {}
        self._diffaugment = None
        self._baseline: dict | None = None  # held-out metrics of doing nothing, computed at the first evaluation
        self._autocast = None  # the memory probe's bf16 autocast, in place of the accelerator's
        self._stepped = False  # an optimizer stepped during the current batch (see _stop_out_of_memory)
        self.memory = _memory_plan or {}
        if t.diffaugment:
            from translate.diffaugment import attach, parse_policy

            self._diffaugment = attach([self.nets[n] for n in recipe.names(Role.discriminator)],
                                       parse_policy(t.diffaugment), t.seed)
        for obj in (self.state, _Networks(self.nets), *self.schedulers.values(), *self.ema.values(),
                    *self.scalers.values()):
            acc.register_for_checkpointing(obj)
        if t.max_memory and _memory_plan is None:
            chosen = self._plan_memory()
            if chosen is not None:  # another batch, accumulation or precision: build the run again with them
                self.__init__(chosen, resume, self.memory)
                return
        global_batch = d.batch_size * acc.num_processes
        if self.resume_from:
            self._load_checkpoint(global_batch)
        self.state.global_batch = global_batch

        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for sub in ("samples", "logs"):
                (self.run_dir / sub).mkdir(exist_ok=True)
            write_text(self.run_dir / "config.yaml", to_yaml(config))
            self._trim_log()
        # config.yaml keeps the request (auto decides again on another machine); the run's logs keep the choice.
        acc.init_trackers("tensorboard", config={**_hparams(config), "train.mixed_precision_resolved": precision})

    def _check_recipe(self) -> None:
        """A recipe's declarations must agree with each other: one clear line, not a KeyError mid-step."""
        r = self.recipe
        for phase in self.phases:
            if phase.group not in r.groups:
                raise ConfigError(f"recipe {r.name}: phase '{phase.loss}' steps optimizer group '{phase.group}', "
                                  f"which is not among its groups ({', '.join(r.groups)})")
            if not callable(getattr(r, phase.loss, None)):
                raise ConfigError(f"recipe {r.name}: phase loss '{phase.loss}' is not a method of the recipe")
        unknown = {n for members in r.groups.values() for n in members} - set(r.networks)
        if unknown:
            raise ConfigError(f"recipe {r.name}: optimizer groups name networks it does not declare: {sorted(unknown)}")

    def _load_checkpoint(self, global_batch: int) -> None:
        acc = self.accelerator
        try:
            acc.load_state(str(self.resume_from))
        except (RuntimeError, KeyError) as e:  # e.g. size mismatches: the config's model.* changed since then
            raise ConfigError(f"cannot resume from {self.resume_from}: it does not fit this config's networks "
                              f"(was model.* changed?): {str(e).strip().splitlines()[-1].strip()}") from None
        process_state = load_process_state(self.resume_from, acc.process_index)
        if process_state:
            self.recipe.load_state_dict(process_state)
        if self.state.global_batch != global_batch:  # another process count or batch size: same image position
            self.state.batch_in_epoch = self.state.batch_in_epoch * self.state.global_batch // global_batch
            acc.print(f"the checkpoint was written with a global batch of {self.state.global_batch}, this run "
                      f"has {global_batch} (data.batch_size × processes): continuing at the same image")
        acc.print(f"resumed from {self.resume_from} (step {self.state.step})")

    def _init_from(self, nets: dict[str, nn.Module], model_dir: str) -> None:
        meta, loaded = load_pretrained(model_dir)
        for name in self.recipe.names(Role.exported):
            if name not in loaded:
                raise ConfigError(f"train.init_from={model_dir} has no generator {name} (it has {sorted(loaded)})")
            # Same keys either way, but a plain generator's last layer feeds a tanh, a residual one's the input's
            # change: loading one into the other would run, and mean nothing.
            residual = meta["generators"][name].get("residual", False)
            if residual != self.config.model.residual:
                raise ConfigError(f"train.init_from={model_dir}: its {name} is {'' if residual else 'not '}a residual "
                                  f"generator; set model.residual={str(residual).lower()} to start from it")
            try:
                nets[name].load_state_dict(loaded[name].state_dict())
            except RuntimeError as e:
                raise ConfigError(f"train.init_from={model_dir}: {name} does not match model.* of this config: "
                                  f"{str(e).splitlines()[0]}") from None

    def _compile(self) -> None:
        # In place (Module.compile), so state_dict keys and checkpoints stay the same with or without it. Where
        # torch.compile cannot work (no C++ compiler...), say so, record it in the run's config and train eager.
        why = _compile_works()
        if why:
            self.accelerator.print(f"train.compile: torch.compile does not work here ({why}): training eager")
            self.config.train.compile = False
            return
        for net in self.nets.values():
            net.compile()

    # -- memory --------------------------------------------------------------------------------------------------
    def _set_checkpointing(self, on: bool) -> None:
        """train.gradient_checkpointing on every network (translate.networks.checkpointing), or off."""
        for name, net in self.nets.items():
            disable_checkpointing(net)
            if on and not enable_checkpointing(net):
                self.accelerator.print(f"train.gradient_checkpointing: {name} ({type(net).__name__}) has no block or "
                                       "layer list to checkpoint; it keeps its activations")

    def _plan_memory(self) -> Config | None:
        """train.max_memory: measure candidate settings with probe steps (see translate.engine.memory) and keep the
        first that fits. Returns the config to build the run again with when the batch, the accumulation or the
        precision change; None when the settings stay (checkpointing is switched here); a ConfigError when nothing
        fits."""
        acc, config = self.accelerator, self.config
        t, d = config.train, config.data
        budget = budget_bytes(t.max_memory, acc.device)
        precision = acc.mixed_precision
        configured = Setting(t.gradient_checkpointing, d.batch_size, t.gradient_accumulation_steps, precision)
        native_bf16 = resolve_mixed_precision("auto", acc.device)[0] == "bf16"
        batch = default_collate([self.dataset[i] for i in range(min(d.batch_size, len(self.dataset)))])
        batch = {k: v.to(acc.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

        def measure(setting: Setting) -> tuple[int, bool]:
            value, complete = self._probe(setting, batch, budget)
            if acc.num_processes > 1:  # every process must choose the same: the largest peak decides
                both = torch.tensor([float(value), float(not complete)])
                torch.distributed.all_reduce(both, torch.distributed.ReduceOp.MAX, group=self._cpu_group)
                value, complete = int(both[0].item()), not both[1].item()
            shown = gib(value) if complete else f"over {gib(value)} (stopped)"
            acc.print(f"train.max_memory: probe step with {setting.describe(d.batch_size)}: peak {shown}")
            return value, complete

        chosen, measured = plan(candidates(configured, d.batch_size, native_bf16), measure, budget)
        self._set_checkpointing(configured.checkpointing)
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
        self.memory = {"budget": budget, "setting": asdict(chosen), "expected_peak": measured[chosen][0],
                       "device": str(acc.device),
                       "measured": [{**asdict(s), "peak": v, "complete": c} for s, (v, c) in measured.items()]}
        acc.print(f"train.max_memory={t.max_memory} ({gib(budget)}): training with {chosen.describe(d.batch_size)}; "
                  f"expected peak {gib(measured[chosen][0])}")
        if replace(chosen, checkpointing=configured.checkpointing) == configured:
            t.gradient_checkpointing = chosen.checkpointing
            self._set_checkpointing(chosen.checkpointing)
            return None
        planned = copy.deepcopy(config)
        planned.train.gradient_checkpointing = chosen.checkpointing
        planned.data.batch_size = chosen.micro_batch
        planned.train.gradient_accumulation_steps = chosen.accumulation
        if chosen.precision != precision:
            planned.train.mixed_precision = chosen.precision
        return planned

    def _probe(self, setting: Setting, batch: dict, budget: int) -> tuple[int, bool]:
        """(peak memory in bytes, completed) of one real training step (every phase, the optimizer steps included)
        in ``setting``; not completed when it ran out of memory or went over ``budget`` (interrupted there on the
        CPU), the peak then being the one reached. Everything the
        step changes is put back: weights and buffers, optimizers, random states, the recipe's state (image pools),
        the loop state and the accelerator's accumulation counter."""
        acc = self.accelerator
        saved = self._snapshot()
        self._set_checkpointing(setting.checkpointing)
        micro = {k: v[: setting.micro_batch] if isinstance(v, torch.Tensor | list) else v for k, v in batch.items()}
        if setting.precision == "bf16" and acc.mixed_precision != "bf16":
            self._autocast = torch.autocast(acc.device.type, dtype=torch.bfloat16)
        step = acc.step
        acc.gradient_state._set_sync_gradients(True)
        meter = PeakMeter(acc.device, budget if acc.num_processes == 1 else None)
        failed = False
        try:
            try:
                with meter:
                    try:
                        self.train_step(micro)
                    finally:
                        meter.disarm()  # no interruption can come after this, outside the except below
            except BaseException as e:  # the meter's interruption may land anywhere in the step
                if not (meter.exceeded or is_out_of_memory(e)):
                    raise
                failed = True
        finally:
            self._autocast = None
            acc.step = step
            acc.gradient_state._set_sync_gradients(step % acc.gradient_accumulation_steps == 0)
            self._restore(saved)
        return meter.value, not (failed or meter.exceeded)

    def _snapshot(self) -> dict:
        return {
            "nets": {n: {k: v.clone() for k, v in net.state_dict().items()} for n, net in self.nets.items()},
            "requires_grad": [p.requires_grad for net in self.nets.values() for p in net.parameters()],
            "optimizers": {g: copy.deepcopy(o.state_dict()) for g, o in self.optimizers.items()},
            "scalers": {g: s.state_dict() for g, s in self.scalers.items()},
            "recipe": copy.deepcopy(self.recipe.state_dict()),
            "state": copy.deepcopy(self.state.state_dict()),
            "rng": (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    random.getstate(), np.random.get_state()),
            "diffaugment": self._diffaugment.generator.get_state() if self._diffaugment is not None else None,
        }

    def _restore(self, saved: dict) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(saved["nets"][name])
            for p in net.parameters():
                p.grad = None
        for p, flag in zip((p for net in self.nets.values() for p in net.parameters()), saved["requires_grad"]):
            p.requires_grad_(flag)
        for group, optimizer in self.optimizers.items():
            optimizer.optimizer.__dict__.pop("found_inf", None)  # left by a step interrupted inside _phase
            optimizer.load_state_dict(saved["optimizers"][group])
        for group, scaler in self.scalers.items():
            scaler.load_state_dict(saved["scalers"][group])
        self.recipe.load_state_dict(saved["recipe"])
        self.state.load_state_dict(saved["state"])
        cpu, cuda, python, numpy_state = saved["rng"]
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        random.setstate(python)
        np.random.set_state(numpy_state)
        if saved["diffaugment"] is not None:
            self._diffaugment.generator.set_state(saved["diffaugment"])

    def _write_memory(self) -> None:
        """logs/memory.json: the budget, the setting chosen, the peak expected and the peak reached so far."""
        device = self.accelerator.device
        self.state.peak_memory = max(self.state.peak_memory, peak(device))
        if not self.accelerator.is_main_process:
            return
        t = self.config.train
        record = {"step": self.state.step, "device": str(device),
                  "measure": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS (VmHWM)",
                  "peak_gib": round(self.state.peak_memory / GiB, 3),
                  "gradient_checkpointing": t.gradient_checkpointing, "batch_size": self.config.data.batch_size,
                  "gradient_accumulation_steps": t.gradient_accumulation_steps, "max_memory": t.max_memory}
        if self.memory:
            record.update(budget_gib=round(self.memory["budget"] / GiB, 3),
                          expected_peak_gib=round(self.memory["expected_peak"] / GiB, 3),
                          probes=[{**m, "peak_gib": round(m["peak"] / GiB, 3)} for m in self.memory["measured"]])
        write_text(self.run_dir / "logs" / "memory.json", json.dumps(record, indent=1) + "\n")

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / "losses.jsonl"

    def _trim_log(self) -> None:
        """Drop log lines past the resumed step (written by the interrupted run after its last checkpoint)."""
        for path in (self.log_path, self.log_path.with_name("metrics.jsonl")):
            if path.is_file():
                lines = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= self.state.step]
                write_text(path, "".join(ln + "\n" for ln in lines))

    # -- one batch -------------------------------------------------------------------------------------------
    def _phase(self, phase: Phase, batch: dict, ctx: dict) -> tuple[dict, torch.Tensor]:
        """One backward and optimizer step of the phase's group; returns (loss terms, 1.0-if-skipped tensor)."""
        acc, group = self.accelerator, phase.group
        members = self.recipe.groups[group]
        frozen = [net for name, net in self.nets.items() if name not in members]
        for net in frozen:
            net.requires_grad_(False)
        scale = self.scalers[group].get_scale() if group in self.scalers else 1.0
        with self._autocast or acc.autocast(), penalty_scale(scale):
            terms = getattr(self.recipe, phase.loss)(self.nets, batch, ctx)
        loss = sum(terms.values())
        if group in self.scalers:
            self.scalers[group].scale(loss / acc.gradient_accumulation_steps).backward()
        else:
            acc.backward(loss)
        optimizer = self.optimizers[group]
        skipped = torch.zeros((), device=acc.device)
        if acc.sync_gradients:
            self._stepped = True
            params = [p for name in members for p in self.nets[name].parameters()]
            if acc.num_processes > 1:
                _average_gradients(params, acc.num_processes)
            if group in self.scalers:  # fp16: the grad scaler checks and skips
                optimizer.step()
                self.state.scaler_skipped_steps += int(optimizer.step_was_skipped)
            else:
                skipped = _found_inf(params, acc.device)
                inner = optimizer.optimizer
                if inner.defaults.get("fused"):
                    # The fused kernel reads `found_inf` (the attribute torch's GradScaler sets) and leaves
                    # parameters, moments and step counts untouched when it is 1: skipping needs no host sync.
                    inner.found_inf = skipped
                    optimizer.step()
                    del inner.found_inf
                elif not skipped:
                    optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for net in frozen:
            net.requires_grad_(True)
        return terms, skipped

    def train_step(self, batch: dict) -> tuple[dict, dict, torch.Tensor]:
        """One batch through every due phase; returns (loss terms, the phases' shared ctx (e.g. fakes), 1.0 if a
        phase skipped its step for non-finite gradients)."""
        if self._diffaugment is not None:
            self._diffaugment.set_step(self.state.step)
        terms, ctx = {}, {}
        skipped = torch.zeros((), device=self.accelerator.device)
        for phase in self.phases:
            if self.state.step % phase.every:
                continue
            for _ in range(phase.repeat):
                phase_terms, phase_skipped = self._phase(phase, batch, ctx)
                terms.update(phase_terms)
                skipped = torch.maximum(skipped, phase_skipped)
        return terms, ctx, skipped

    # -- the loop --------------------------------------------------------------------------------------------
    def _warm_up(self) -> None:
        """``train.warmup_steps``: the coming step's lr is the schedule's times (step + 1) / warmup_steps. Per step,
        on top of the per-epoch schedule, which sets each lr from its base (factors never compound)."""
        w = self.config.train.warmup_steps
        if self.state.step >= w:
            return
        for group, scheduler in self.schedulers.items():
            for param_group, lr in zip(self.optimizers[group].param_groups, scheduler.get_last_lr()):
                param_group["lr"] = lr * (self.state.step + 1) / w

    def fit(self) -> Path:
        acc, t, state = self.accelerator, self.config.train, self.state
        epochs = t.n_epochs + t.n_epochs_decay
        steps_per_epoch = math.ceil(len(self.loader) / t.gradient_accumulation_steps)
        max_steps = min(t.max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
        # To a terminal: a progress bar. To a file or pipe: a plain line per log window instead (see _log).
        self._plain_progress = t.progress and not sys.stderr.isatty()
        bar = tqdm(total=max_steps, initial=state.step, desc=self.config.name, unit="step", dynamic_ncols=True,
                   disable=not (acc.is_main_process and t.progress) or self._plain_progress)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        batch = ctx = None
        self._clock = (time.perf_counter(), state.seconds)
        release_free_memory(acc.device)  # the peak logged is the run's own, not the memory probe's
        reset_peak(acc.device)
        pending = 0  # batches whose gradients wait for the optimizer step (gradient accumulation)
        if state.stopped_early:
            acc.print(f"this run stopped early at step {state.step}: {state.stopped_early}")
        with StopSignal() as stop, self._stop_on_bad_file(bar):
            while state.step < max_steps and state.epoch < epochs and not state.stopped_early:
                self.dataset.set_epoch(state.epoch)
                self.loader.set_epoch(state.epoch)
                loader = acc.skip_first_batches(self.loader, state.batch_in_epoch) if state.batch_in_epoch else \
                    self.loader
                for batch in loader:
                    self._warm_up()
                    self._stepped, failed = False, None
                    try:
                        with acc.accumulate():
                            terms, ctx, skipped = self.train_step(batch)
                    except (RuntimeError, MemoryError) as e:
                        if not is_out_of_memory(e):
                            raise
                        failed = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                    if failed is not None:  # outside the except: its traceback no longer holds the step's tensors
                        self._stop_out_of_memory(failed, bar, batch, can_save=not (self._stepped or pending))
                    pending = 0 if acc.sync_gradients else pending + 1
                    state.batch_in_epoch += 1
                    for key, value in terms.items():
                        sums[key] = sums.get(key, 0) + value.detach().float()
                    count += 1
                    if not acc.sync_gradients:
                        continue
                    state.step += 1
                    bar.update(1)
                    self._tally_skip(skipped)
                    for name, ema in self.ema.items():
                        ema.update(self.nets[name], state.step - 1)
                    # Read at checkpoints too, so that the saved state counts every skipped step.
                    if any(state.step % n == 0 for n in (t.log_every, t.max_nonfinite_steps, t.checkpoint_every)):
                        self._read_skips()
                    if state.step % t.log_every == 0 or state.step == max_steps:
                        self._log(sums, count, bar, max_steps)
                        sums, count = {}, 0
                    if acc.is_main_process and state.step % t.sample_every == 0:
                        self._save_samples(batch, ctx)
                    if state.step % t.log_every == 0:
                        self._log_memory()
                    if t.eval_every and state.step % t.eval_every == 0:
                        self._evaluate()
                    elif not t.eval_every and acc.is_main_process and state.step % t.sample_every == 0:
                        self._log_metrics(self._watch_samples())  # no evaluation asked: with each sample grid
                    if state.step % t.checkpoint_every == 0 and state.step < max_steps:
                        self._checkpoint()
                    if self._stop_requested(stop):
                        self._read_skips()
                        path = self._checkpoint()
                        bar.close()
                        acc.end_training()
                        raise TrainingInterrupted(f"training stopped at step {state.step}; checkpoint saved to "
                                                  f"{path}; continue with --resume")
                    if state.stopped_early and sums:  # the last, partial log window
                        self._log(sums, count, bar, max_steps)
                        sums, count = {}, 0
                    if state.step >= max_steps or state.stopped_early:
                        break
                else:
                    state.epoch += 1
                    state.batch_in_epoch = 0
                    for scheduler in self.schedulers.values():
                        scheduler.step()
        bar.close()
        self._read_skips()
        self._checkpoint()
        self._log_memory()
        if self.memory:
            acc.print(f"peak memory reached: {gib(self.state.peak_memory)} (train.max_memory={t.max_memory} expected "
                      f"{gib(self.memory['expected_peak'])}; logs/memory.json)")
        if acc.is_main_process:
            if batch is not None:
                self._save_samples(batch, ctx)
            self.export(self.run_dir / "model")
            if t.report:
                from translate.evaluation import write_report

                write_report(self.run_dir)
        acc.wait_for_everyone()
        acc.end_training()
        return self.run_dir

    # -- side jobs at step boundaries ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _stop_on_bad_file(self, bar):
        """A file that changed on disk after the scan: save what was trained (at the last complete step) and stop
        with one line naming the file. With several processes only the failing one knows, so it stops alone and
        the launcher ends the others; the periodic checkpoints are what is kept then."""
        from translate.data.base import BadFileDuringTraining

        try:
            yield
        except BadFileDuringTraining as e:
            bar.close()
            if self.accelerator.num_processes > 1:
                raise BadFileStop(f"{e}; training stopped at step {self.state.step}; the last checkpoint is "
                                  f"{latest_checkpoint(self.run_dir) or 'none'}") from None
            self._read_skips()
            path = self._checkpoint()
            self.accelerator.end_training()
            raise BadFileStop(f"{e}; training stopped at step {self.state.step}; checkpoint saved to {path}; fix or "
                              "remove the file (or set data.on_bad_file=skip), then --resume") from None

    def _stop_out_of_memory(self, error: str, bar, batch: dict, can_save: bool) -> None:
        """One line naming what to change, after saving a checkpoint of the last finished step where the failed
        batch had changed nothing yet (no optimizer step in it, no accumulated gradients pending)."""
        acc, state, t, d = self.accelerator, self.state, self.config.train, self.config.data
        bar.close()
        for net in self.nets.values():  # free the failed step's gradients and unfreeze what its phase froze
            net.requires_grad_(True)
            for p in net.parameters():
                p.grad = None
        release_free_memory(acc.device)
        size = "×".join(str(n) for n in batch["A"].shape[-2:]) if isinstance(batch.get("A"), torch.Tensor) else \
            str(d.crop_size)
        where = "GPU" if acc.device.type == "cuda" else "CPU"
        if can_save and state.step > 0 and acc.num_processes == 1:
            self._read_skips()
            saved = f"checkpoint of step {state.step} saved to {self._checkpoint()}; continue with --resume"
        else:
            saved = f"the last checkpoint is {latest_checkpoint(self.run_dir) or 'none'}"
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

    def _log_memory(self) -> None:
        """The peak memory so far, to TensorBoard (memory/peak_gib) and logs/memory.json; kept out of
        logs/losses.jsonl, whose values a resumed run reproduces exactly."""
        self._write_memory()
        self.accelerator.log({"memory/peak_gib": self.state.peak_memory / GiB}, step=self.state.step)

    def _checkpoint(self) -> Path:
        started, before = self._clock
        self.state.seconds = before + time.perf_counter() - started
        self.state.peak_memory = max(self.state.peak_memory, peak(self.accelerator.device))
        return save_checkpoint(self.accelerator, self.run_dir, self.state.step, self.config.train.keep_checkpoints,
                               self.recipe.state_dict())

    def _save_samples(self, batch: dict, ctx: dict) -> None:
        save_samples(self.run_dir / "samples" / f"step_{self.state.step:06d}.png", self.recipe.visuals(batch, ctx))

    def _tally_skip(self, skipped: torch.Tensor) -> None:
        # Skipped steps are tallied on the device and read every few steps: no host sync per step.
        run = (self._skips[0] + 1) * skipped
        self._skips = torch.stack([run, torch.maximum(self._skips[1], run), self._skips[2] + skipped])

    def exported_networks(self) -> dict[str, nn.Module]:
        """The networks a model directory holds: the EMA copies where train.ema is on."""
        return {n: (self.ema[n].module if n in self.ema else self.nets[n]) for n in self.recipe.names(Role.exported)}

    def _evaluate(self) -> None:
        """Metrics on the held-out split, logged next to doing nothing (output = input); ``model_best/`` follows
        train.best_metric. A recipe with nothing to translate (no directions: noise → image) has the diversity of
        its samples watched instead. Main process only."""
        acc, t = self.accelerator, self.config.train
        if acc.is_main_process and not self.recipe.directions:  # a noise recipe: nothing to translate
            self._log_metrics(self._watch_samples())
        elif acc.is_main_process:
            metrics = self._held_out_metrics(self.exported_networks())
            if self._baseline is None:
                self._baseline = self._do_nothing_metrics()
            metrics.update({f"{k}_do_nothing": v for k, v in self._baseline.items()})
            self._log_metrics(metrics)
            self._watch_quality(metrics)
            value = metrics.get(t.best_metric)
            if value is not None and self._is_better(value):
                self.state.best = value
                self.export(self.run_dir / "model_best")
            if t.early_stop and value is not None:
                self._watch_early_stop(value)
        if t.early_stop and acc.num_processes > 1:  # the main process decides; every process stops with it
            flag = torch.tensor([float(bool(self.state.stopped_early))])
            torch.distributed.broadcast(flag, 0, group=self._cpu_group)
            if flag.item() and not self.state.stopped_early:
                self.state.stopped_early = "stopped early by the main process"
        acc.wait_for_everyone()

    def _watch_early_stop(self, value: float) -> None:
        """train.early_stop: count evaluations without an improvement of more than train.early_stop_min_delta over
        the value of the last one that improved (Keras' EarlyStopping); at train.early_stop of them, stop."""
        t, state = self.config.train, self.state
        ref, delta = state.stale_reference, t.early_stop_min_delta
        lower = t.best_metric in LOWER_IS_BETTER
        if ref is None or (value < ref - delta if lower else value > ref + delta):
            state.stale_reference, state.stale_evals = value, 0
            return
        state.stale_evals += 1
        if state.stale_evals >= t.early_stop:
            best_step = json.loads((self.run_dir / "model_best" / "config.json").read_text())["step"]
            state.stopped_early = (
                f"{t.best_metric} did not improve by more than {delta:g} for {state.stale_evals} evaluations "
                f"(train.early_stop={t.early_stop}, every {t.eval_every} steps); the best, {state.best:.4g} at step "
                f"{best_step}, is in model_best/")
            self.accelerator.print(f"\nstep {state.step}: early stop: {state.stopped_early}")

    def _log_metrics(self, metrics: dict) -> None:
        """To TensorBoard (eval/...) and logs/metrics.jsonl, which the report charts."""
        if metrics:
            self.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=self.state.step)
            with open(self.run_dir / "logs" / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.state.step, **metrics}) + "\n")

    def _watch_samples(self) -> dict:
        """Recipes that generate from noise: the diversity of G's fixed-latent samples (the trained G, as in the
        sample grids) against the real images', and one warning when they have collapsed (translate.engine.watch).
        {} for translation recipes."""
        samples = self.recipe.fixed_samples(self.nets, WATCH_IMAGES)
        if samples is None:
            return {}
        state = self.state
        if state.diversity_real is None:  # once; checkpointed, so a resumed run logs the same value
            state.diversity_real = real_diversity(self.recipe, self.dataset, self.config.train.seed)
        metrics = watched_diversity(samples, state.diversity_real)
        message = collapse_warning(metrics, state.step)
        if message and not state.collapse_warned:
            state.collapse_warned = True
            self.accelerator.print(message)
        return metrics

    def _do_nothing_metrics(self) -> dict:
        """The held-out metrics of returning the input unchanged: the baseline a translation must beat."""
        from translate.evaluation import do_nothing

        m = self.config.model
        return self._held_out_metrics({"G": do_nothing(m.input_nc)}) if m.input_nc == m.output_nc else {}

    def _held_out_metrics(self, nets: dict[str, nn.Module]) -> dict:
        """train.eval_metrics of ``nets`` on train.eval_split, the numbers only."""
        from translate.evaluation import evaluate

        t = self.config.train
        metrics = evaluate(nets, self.config, split=t.eval_split, metrics=t.eval_metrics, max_images=t.eval_max_images)
        return {k: v for k, v in metrics.items() if isinstance(v, int | float)}

    def _watch_quality(self, metrics: dict) -> None:
        """Warn once when the model has been worse than doing nothing for QUALITY_EVALS evaluations in a row."""
        worse = [k for k in metrics if f"{k}_do_nothing" in metrics
                 and (metrics[k] > metrics[f"{k}_do_nothing"] if k in LOWER_IS_BETTER
                      else metrics[k] < metrics[f"{k}_do_nothing"])]
        self.state.worse_evals = self.state.worse_evals + 1 if worse else 0
        if self.state.worse_evals == QUALITY_EVALS:
            self.accelerator.print(
                f"\nwarning: for {QUALITY_EVALS} evaluations in a row (step {self.state.step}) the model's "
                f"{', '.join(worse)} on the {self.config.train.eval_split} split were worse than returning the input "
                "unchanged. Short runs on small data do better with the recommended settings: see "
                "configs/*_recommended.yaml and docs/quality.md.")

    def _is_better(self, value: float) -> bool:
        if self.state.best is None:
            return True
        lower_is_better = self.config.train.best_metric in LOWER_IS_BETTER
        return value < self.state.best if lower_is_better else value > self.state.best

    def _stop_requested(self, stop: StopSignal) -> bool:
        if self.accelerator.num_processes == 1:
            return stop.requested
        # Every rank must agree to save together (saving is collective). The flag goes over a CPU (gloo) group: a
        # collective on the GPUs' group would wait for their queued work every step.
        flag = torch.tensor([float(stop.requested)])
        torch.distributed.all_reduce(flag, torch.distributed.ReduceOp.MAX, group=self._cpu_group)
        return bool(flag)

    def _read_skips(self) -> None:
        """Count the steps skipped since the last read (one host sync); stop when too many came in a row."""
        run, worst, count = (int(v) for v in self._skips.tolist())
        self._skips = torch.tensor([run, run, 0.0], device=self.accelerator.device)
        state, limit = self.state, self.config.train.max_nonfinite_steps
        if count:
            state.skipped_steps += count
            self.accelerator.print(f"step {state.step}: {count} of the last steps had non-finite gradients and were "
                                   f"skipped ({run} in a row now, {state.skipped_steps} in all)")
        if worst >= limit:
            last = latest_checkpoint(self.run_dir)
            self.accelerator.end_training()
            raise TrainingDiverged(
                f"{worst} consecutive steps had non-finite losses or gradients (train.max_nonfinite_steps={limit}); "
                f"the last good checkpoint is {last or 'none'}. Try a lower train.lr, mixed_precision=no, "
                "or gan_mode=lsgan.")

    def _log(self, sums: dict, count: int, bar, max_steps: int) -> None:
        if not sums:
            return
        acc, state = self.accelerator, self.state
        keys = sorted(sums)
        means = acc.reduce(torch.stack([sums[k] for k in keys]) / count, "mean").tolist()
        values = dict(zip(keys, means))
        values["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]  # the last step's, warm-up included
        if self.scalers:
            values["scaler_skipped_steps"] = state.scaler_skipped_steps
        self._watch_collapse(values)
        acc.log(values, step=state.step)
        if acc.is_main_process:
            shown = {k.removeprefix("loss_"): f"{v:.3f}" for k, v in values.items() if k != "lr"}
            bar.set_postfix(shown, refresh=False)
            if self._plain_progress:
                print(f"{self.config.name} step {state.step}/{max_steps} epoch {state.epoch}: "
                      + " ".join(f"{k} {v}" for k, v in shown.items()), flush=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"step": state.step, "epoch": state.epoch, **values}) + "\n")

    def _watch_collapse(self, values: dict) -> None:
        """Warn when D's loss stays near zero: D wins outright and G gets no useful gradient."""
        d_loss = sum(v for k, v in values.items()
                     if k.startswith("loss_D") and not k.endswith(("_gp", "_r1")))
        self.state.weak_d_windows = self.state.weak_d_windows + 1 if d_loss < COLLAPSE_D_LOSS else 0
        if self.state.weak_d_windows == COLLAPSE_WINDOWS:
            self.accelerator.print(
                f"\nwarning: the discriminator's loss has stayed below {COLLAPSE_D_LOSS} for {COLLAPSE_WINDOWS} log "
                f"windows (step {self.state.step}): D wins and G learns little. What usually helps: a lower D "
                "learning rate (train.optimizers.D.lr), fewer D layers (model.n_layers_D), model.gan_mode=lsgan, "
                "train.diffaugment=color,translation,cutout, or model.spectral_norm=true.")

    def export(self, directory: Path) -> Path:
        """Write the exported networks (EMA weights when kept) as a model directory for ``Translator``."""
        recipe = self.recipe
        meta = {
            "recipe": recipe.name,
            "generators": {n: recipe.export_spec(n) for n in recipe.names(Role.exported)},
            "directions": recipe.directions,
            "step": self.state.step,
            "ema": bool(self.ema),
            "norm_mode": "eval",
            **({"stopped_early": self.state.stopped_early} if self.state.stopped_early else {}),
            "config": OmegaConf.to_container(OmegaConf.structured(self.config)),
        }
        return save_pretrained(directory, self.exported_networks(), meta)


def train(config: Config | str | Path | tuple, resume: bool | str | Path = False) -> Path:
    """Train from a Config (or a YAML path, or (path, overrides)); returns the run directory."""
    return Trainer(as_config(config), resume).fit()

