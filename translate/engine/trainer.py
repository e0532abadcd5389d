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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import default_collate

from translate.config import Config, ConfigError, load_config, recipe_class, to_yaml
from translate.devices import resolve_mixed_precision, warn_if_slow_bf16
from translate.engine.checkpoint import (
    Checkpoints,
    latest_checkpoint,
    list_checkpoints,
    load_process_state,
    save_checkpoint,
)
from translate.engine.ema import EMA
from translate.engine.evaluation import Evaluation
from translate.engine.jobs import Job
from translate.engine.memory import (
    MemoryLog,
    OutOfMemoryStop,
    is_out_of_memory,
    out_of_memory_stop,
    peak,
    plan_memory,
    release_free_memory,
    reset_peak,
)
from translate.engine.nonfinite import NonFiniteWatch, TrainingDiverged
from translate.engine.outputs import FinalOutputs
from translate.engine.progress import Progress
from translate.engine.samples import Samples
from translate.engine.signals import INTERRUPTED_EXIT_CODE, StopSignal
from translate.fileio import write_text
from translate.losses import penalty_scale
from translate.methods import Phase, Role
from translate.networks.checkpointing import disable_checkpointing, enable_checkpointing
from translate.networks.pretrained import load_pretrained, save_pretrained

__all__ = ["INTERRUPTED_EXIT_CODE", "BadFileStop", "OutOfMemoryStop", "Trainer", "TrainingDiverged",
           "TrainingInterrupted", "run_directory", "train"]


class TrainingInterrupted(RuntimeError):
    """Raised after a signal asked training to stop and a checkpoint was saved."""


class BadFileStop(RuntimeError):
    """Raised after a file that passed the scan failed to load (data.on_bad_file=error) and a checkpoint was saved."""


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
    stuck_warned: bool = False  # "the generator has not moved from its input" was printed (once per run)
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

    def __init__(self, config: Config, resume: bool | str | Path = False, memory: dict | None = None):
        from translate.data import build_dataset
        from translate.data.gap import resolve_auto
        from translate.data.loader import build_loader

        self.config = config = copy.deepcopy(config)  # auto settings get resolved in it: the caller's stays as asked
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
        # model.residual=auto (and netG=auto): chosen from the training images before any network exists; config.yaml
        # records the choice, which a resumed run keeps (its checkpoint holds that generator, whatever the data say
        # now). Items draw their crops from their own generators, so an auto run and the run of its choice made
        # explicit are the same run.
        if self.resume_from and (self.run_dir / "config.yaml").is_file():
            recorded = load_config(self.run_dir / "config.yaml").model
            for key in ("residual", "netG"):
                if getattr(config.model, key) == "auto":
                    setattr(config.model, key, getattr(recorded, key))
        resolve_auto(config, self.dataset, acc.print)
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
        self.set_checkpointing(t.gradient_checkpointing)
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
        self.cpu_group = torch.distributed.new_group(backend="gloo") if acc.num_processes > 1 else None
        self.ema = {n: EMA(self.nets[n], t.ema_decay, t.ema_warmup)
                    for n in recipe.names(Role.exported)} if t.ema else {}
        self.diffaugment = None
        self.autocast = None  # the memory probe's bf16 autocast, in place of the accelerator's
        self.memory = memory or {}  # the plan of train.max_memory (translate.engine.memory.plan_memory)
        self.nonfinite = NonFiniteWatch(self)
        if t.diffaugment:
            from translate.diffaugment import attach, parse_policy

            self.diffaugment = attach([self.nets[n] for n in recipe.names(Role.discriminator)],
                                      parse_policy(t.diffaugment), t.seed)
        for obj in (self.state, _Networks(self.nets), *self.schedulers.values(), *self.ema.values(),
                    *self.scalers.values()):
            acc.register_for_checkpointing(obj)
        if t.max_memory and memory is None:
            planned = plan_memory(self)
            if planned is not None:  # another batch, accumulation or precision: everything above depends on them
                self.__init__(planned, resume, self.memory)
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
        # config.yaml keeps train.mixed_precision as asked (auto decides again on another machine); the run's logs keep
        # the precision it chose.
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
    def set_checkpointing(self, on: bool) -> None:
        """train.gradient_checkpointing on every network (translate.networks.checkpointing), or off."""
        for name, net in self.nets.items():
            disable_checkpointing(net)
            if on and not enable_checkpointing(net):
                self.accelerator.print(f"train.gradient_checkpointing: {name} ({type(net).__name__}) has no block or "
                                       "layer list to checkpoint; it keeps its activations")

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
        with self.autocast or acc.autocast(), penalty_scale(scale):
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
        if self.diffaugment is not None:
            self.diffaugment.set_step(self.state.step)
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
        max_steps = min(t.max_steps or epochs * self.steps_per_epoch, epochs * self.steps_per_epoch)
        self.progress = Progress(self, max_steps)
        jobs = self.jobs(max_steps)
        self._clock = (time.perf_counter(), state.seconds)
        release_free_memory(acc.device)  # the peak logged is the run's own, not the memory probe's
        reset_peak(acc.device)
        pending = 0  # batches whose gradients wait for the optimizer step (gradient accumulation)
        batch = ctx = None
        if state.stopped_early:
            acc.print(f"this run stopped early at step {state.step}: {state.stopped_early}")
        with StopSignal() as stop, self._stop_on_bad_file():
            while state.step < max_steps and state.epoch < epochs and not state.stopped_early:
                self.dataset.set_epoch(state.epoch)
                self.loader.set_epoch(state.epoch)
                loader = acc.skip_first_batches(self.loader, state.batch_in_epoch) if state.batch_in_epoch else \
                    self.loader
                for batch in loader:
                    self._warm_up()
                    terms, ctx, skipped = self._step(batch, can_save=not pending)
                    pending = 0 if acc.sync_gradients else pending + 1
                    state.batch_in_epoch += 1
                    self.progress.add(terms)
                    if not acc.sync_gradients:
                        continue
                    state.step += 1
                    self.nonfinite.tally(skipped)
                    for name, ema in self.ema.items():
                        ema.update(self.nets[name], state.step - 1)
                    for job in jobs:
                        job.on_step(batch, ctx)
                    if self._stop_requested(stop):
                        self._interrupt()
                    if state.step >= max_steps or state.stopped_early:
                        break
                else:
                    state.epoch += 1
                    state.batch_in_epoch = 0
                    for scheduler in self.schedulers.values():
                        scheduler.step()
        for job in jobs:
            job.on_end(batch, ctx)
        acc.wait_for_everyone()
        acc.end_training()
        return self.run_dir

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.loader) / self.config.train.gradient_accumulation_steps)

    def jobs(self, max_steps: int) -> list[Job]:
        """The side jobs, in the order they run after each step and at the end."""
        return [self.nonfinite, self.progress, Samples(self), MemoryLog(self), Evaluation(self),
                Checkpoints(self, max_steps), FinalOutputs(self)]

    def _step(self, batch: dict, can_save: bool) -> tuple[dict, dict, torch.Tensor]:
        """``train_step`` in the accelerator's accumulation context; out of memory stops the run (see
        translate.engine.memory.out_of_memory_stop), with a checkpoint where no gradient of this step is pending."""
        self._stepped, failed = False, None  # _stepped: an optimizer stepped during this batch (see _phase)
        try:
            with self.accelerator.accumulate():
                return self.train_step(batch)
        except (RuntimeError, MemoryError) as e:
            if not is_out_of_memory(e):
                raise
            failed = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        # Outside the except: its traceback no longer holds the step's tensors.
        self.progress.bar.close()
        out_of_memory_stop(self, failed, batch, can_save=can_save and not self._stepped)

    def _interrupt(self) -> None:
        path = self.checkpoint()
        self.progress.bar.close()
        self.accelerator.end_training()
        raise TrainingInterrupted(f"training stopped at step {self.state.step}; checkpoint saved to {path}; "
                                  "continue with --resume")

    def checkpoint(self) -> Path:
        """The full training state, as checkpoints/step_NNNNNN (see translate.engine.checkpoint)."""
        self.nonfinite.read()
        started, before = self._clock
        self.state.seconds = before + time.perf_counter() - started
        self.state.peak_memory = max(self.state.peak_memory, peak(self.accelerator.device))
        return save_checkpoint(self.accelerator, self.run_dir, self.state.step, self.config.train.keep_checkpoints,
                               self.recipe.state_dict())

    @contextlib.contextmanager
    def _stop_on_bad_file(self):
        """A file that changed on disk after the scan: save what was trained (at the last complete step) and stop
        with one line naming the file. With several processes only the failing one knows, so it stops alone and
        the launcher ends the others; the periodic checkpoints are what is kept then."""
        from translate.data.base import BadFileDuringTraining

        try:
            yield
        except BadFileDuringTraining as e:
            self.progress.bar.close()
            if self.accelerator.num_processes > 1:
                raise BadFileStop(f"{e}; training stopped at step {self.state.step}; the last checkpoint is "
                                  f"{latest_checkpoint(self.run_dir) or 'none'}") from None
            path = self.checkpoint()
            self.accelerator.end_training()
            raise BadFileStop(f"{e}; training stopped at step {self.state.step}; checkpoint saved to {path}; fix or "
                              "remove the file (or set data.on_bad_file=skip), then --resume") from None

    def exported_networks(self) -> dict[str, nn.Module]:
        """The networks a model directory holds: the EMA copies where train.ema is on."""
        return {n: (self.ema[n].module if n in self.ema else self.nets[n]) for n in self.recipe.names(Role.exported)}

    def _stop_requested(self, stop: StopSignal) -> bool:
        if self.accelerator.num_processes == 1:
            return stop.requested
        # Every rank must agree to save together (saving is collective). The flag goes over a CPU (gloo) group: a
        # collective on the GPUs' group would wait for their queued work every step.
        flag = torch.tensor([float(stop.requested)])
        torch.distributed.all_reduce(flag, torch.distributed.ReduceOp.MAX, group=self.cpu_group)
        return bool(flag)

    def export(self, directory: Path) -> Path:
        """Write the exported networks (EMA weights when kept) as a model directory for ``Translator``: its
        config.json is the description of the recipe's generators and directions (translate.networks.description),
        with the data's normalisation, the run's step and its config."""
        recipe, nets = self.recipe, self.exported_networks()
        return save_pretrained(directory, nets, {
            "recipe": recipe.name, "generators": {n: recipe.export_spec(n) for n in nets},
            "directions": recipe.directions, "step": self.state.step, "ema": bool(self.ema),
            "normalize": self.config.data.normalize_stats or None,
            **({"stopped_early": self.state.stopped_early} if self.state.stopped_early else {}),
            "config": OmegaConf.to_container(OmegaConf.structured(self.config))})

def train(config: Config | str | Path | tuple, resume: bool | str | Path = False) -> Path:
    """Train from a Config (or a YAML path, or (path, overrides)); returns the run directory."""
    return Trainer(as_config(config), resume).fit()

