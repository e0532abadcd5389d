"""The one adversarial training loop, on Hugging Face Accelerate, shared by every recipe.

Per batch, inside ONE ``accelerator.accumulate`` block: the generator phase (discriminators frozen, so G's loss
cannot leak into D's accumulated gradient), then the discriminator phase, each one backward and one optimizer step.
Everything a resume needs goes through ``save_state``, so a resumed run continues bit for bit (CPU, fp32).
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from omegaconf import OmegaConf
from torch import nn
from torchvision.utils import make_grid, save_image
from tqdm.auto import tqdm

from translate.config import Config, ConfigError, load_config, to_yaml
from translate.devices import warn_if_slow_bf16
from translate.engine.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from translate.engine.ema import EMA
from translate.methods import RECIPES, Recipe
from translate.networks.pretrained import load_pretrained, save_pretrained

COLLAPSE_D_LOSS = 0.01  # total D loss below this (per log window) is a sign of a collapsed game...
COLLAPSE_WINDOWS = 5  # ...when it lasts this many log windows
INTERRUPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later", what a preempted job should report


class TrainingInterrupted(RuntimeError):
    """Raised after a signal asked training to stop and a checkpoint was saved."""


class TrainingDiverged(RuntimeError):
    """Raised after too many consecutive steps with non-finite losses or gradients."""


@dataclass
class TrainState:
    """Loop position, saved with every checkpoint (Accelerate does not save step or epoch itself)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    skipped_steps: int = 0  # steps skipped for non-finite gradients, in all
    best: float | None = None  # best value of train.best_metric so far
    scaler_skipped_steps: int = 0  # fp16 optimizer steps the grad scaler skipped (overflow while it calibrates)
    weak_d_windows: int = 0  # consecutive log windows in which D's loss was near zero
    global_batch: int = 0  # images per batch over all processes when saved: batch_in_epoch counts such batches

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class NetworkGroup(nn.ModuleDict):
    """The networks one optimizer trains, as one module: DDP then syncs them with one reducer. (Separate DDP
    modules of identical shapes, e.g. D_A and D_B, can launch their all-reduces in a different order on each rank
    and silently mix each other's gradients.)"""

    def forward(self, name: str, *args, **kwargs):
        return self[name](*args, **kwargs)


class _RecipeState:
    """Adapter so Accelerate checkpoints a recipe's own state (e.g. image pools)."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    def state_dict(self):
        return self.recipe.state_dict()

    def load_state_dict(self, state):
        self.recipe.load_state_dict(state)


class _StopSignal:
    """First SIGTERM/SIGINT: finish the step, save, exit. Second: the default action, at once."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)
        print(f"\n{signal.Signals(signum).name} received: saving a checkpoint after this step "
              "(send it again to stop at once)", flush=True)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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
        return latest_checkpoint(run_dir)  # none yet: start from scratch (handy for preemptible jobs)
    path = Path(resume)
    if not (path / "custom_checkpoint_0.pkl").is_file():
        raise ConfigError(f"{path} is not a complete training checkpoint (checkpoints/step_NNNNNN of a run)")
    return path


def _lr_lambda(config: Config):
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


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _found_inf(params: Iterable[nn.Parameter], device: torch.device) -> torch.Tensor:
    """1.0 when any gradient holds inf or NaN, else 0.0, as a tensor (no host sync). One pass over the gradients:
    NaN and inf propagate into the norms (so do gradients above ~1e19, whose square overflows: divergence anyway)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    return torch.stack(torch._foreach_norm(grads)).sum().isfinite().logical_not().float()


def _to_rgb(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.shape[1] == 2:
        return torch.cat([images, torch.zeros_like(images[:, :1])], 1)
    return images


def save_samples(path: Path, visuals: list[torch.Tensor], max_rows: int = 4) -> None:
    """One row per example: the recipe's visuals (e.g. input | output | target) side by side."""
    columns = [_to_rgb(v[:max_rows].detach().float().cpu()) for v in visuals]
    rows = torch.stack(columns, 1).flatten(0, 1)
    grid = make_grid(rows, nrow=len(columns), padding=2, value_range=(-1, 1), normalize=True)
    tmp = path.with_name(f".{path.name}")
    save_image(grid, tmp, format="png")
    os.replace(tmp, path)


class Trainer:
    """Builds everything for one run and runs the loop; ``train()`` below is the public entry point."""

    def __init__(self, config: Config, resume: bool | str | Path = False):
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
        self.accelerator = acc = Accelerator(
            cpu=multi_cpu,
            mixed_precision=t.mixed_precision,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            log_with="tensorboard",
            project_config=ProjectConfiguration(project_dir=str(self.run_dir), logging_dir=str(self.run_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=t.seed),
            step_scheduler_with_optimizer=False,
        )
        if t.mixed_precision == "fp16" and acc.device.type != "cuda":
            raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU (its grad scaler); use bf16 on the CPU")
        warn_if_slow_bf16(acc.device, t.mixed_precision, "train.mixed_precision")
        if acc.device.type == "cpu":
            # Launchers set one thread per process; use this machine's cores, shared between the processes.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // acc.num_processes))
        elif acc.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        set_seed(t.seed)

        # Data first: a broken dataset fails before anything is written.
        self.dataset = build_dataset(config, "train")
        loader = build_loader(self.dataset, config, acc.device.type)

        self.recipe = RECIPES[config.model.recipe](config)
        nets = self.recipe.build()
        if t.init_from:
            self._init_from(nets, t.init_from)
        if config.model.sync_bn and acc.num_processes > 1:
            nets = {name: nn.SyncBatchNorm.convert_sync_batchnorm(net) for name, net in nets.items()}
        if t.channels_last:
            nets = {name: net.to(memory_format=torch.channels_last) for name, net in nets.items()}
        set_seed(t.seed, device_specific=True)  # same initial weights everywhere, then per-process dropout noise

        if t.compile:
            self._compile(nets)
        betas = (t.beta1, t.beta2)
        # Fused Adam (one kernel; on the CPU since torch 2.4) is 3-6x faster than foreach and skips a step with
        # non-finite gradients itself (see _phase); foreach elsewhere.
        implementation = {"fused": True} if acc.device.type in ("cpu", "cuda") else {"foreach": True}

        def adam(names):
            params = [p for name in names for p in nets[name].parameters()]
            return torch.optim.Adam(params, lr=t.lr, betas=betas, **implementation)

        G, D = self.recipe.generators, self.recipe.discriminators
        opt_G, opt_D = adam(G), adam(D)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, _lr_lambda(config)) for o in (opt_G, opt_D)]
        groups = [NetworkGroup({n: nets[n] for n in G}), NetworkGroup({n: nets[n] for n in D})]
        self.group_G, self.group_D, self.opt_G, self.opt_D, self.loader = acc.prepare(*groups, opt_G, opt_D, loader)
        self.plain = {**acc.unwrap_model(self.group_G), **acc.unwrap_model(self.group_D)}
        self.wrapped = {**{n: functools.partial(self.group_G, n) for n in G},
                        **{n: functools.partial(self.group_D, n) for n in D}}

        self.state = TrainState()
        self._cpu_group = torch.distributed.new_group(backend="gloo") if acc.num_processes > 1 else None
        self._skips = torch.zeros(3, device=acc.device)  # skipped steps: current run, longest run, count (unread)
        self.ema = {n: EMA(self.plain[n], t.ema_decay) for n in self.recipe.generators} if t.ema else {}
        for obj in (self.state, _RecipeState(self.recipe), *self.schedulers, *self.ema.values()):
            acc.register_for_checkpointing(obj)
        global_batch = d.batch_size * acc.num_processes
        if self.resume_from:
            try:
                acc.load_state(str(self.resume_from))
            except RuntimeError as e:  # e.g. size mismatches: the config's model.* changed since the checkpoint
                raise ConfigError(f"cannot resume from {self.resume_from}: it does not fit this config's networks "
                                  f"(was model.* changed?): {str(e).strip().splitlines()[-1].strip()}") from None
            if self.state.global_batch != global_batch:  # another process count or batch size: same image position
                self.state.batch_in_epoch = self.state.batch_in_epoch * self.state.global_batch // global_batch
                acc.print(f"the checkpoint was written with a global batch of {self.state.global_batch}, this run "
                          f"has {global_batch} (data.batch_size × processes): continuing at the same image")
            acc.print(f"resumed from {self.resume_from} (step {self.state.step})")
        self.state.global_batch = global_batch

        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for sub in ("samples", "logs"):
                (self.run_dir / sub).mkdir(exist_ok=True)
            _write_text_atomic(self.run_dir / "config.yaml", to_yaml(config))
            self._trim_log()
        acc.init_trackers("tensorboard", config=_hparams(config))

    def _init_from(self, nets: dict[str, nn.Module], model_dir: str) -> None:
        _, loaded = load_pretrained(model_dir)
        for name in self.recipe.generators:
            if name not in loaded:
                raise ConfigError(f"train.init_from={model_dir} has no generator {name} (it has {sorted(loaded)})")
            try:
                nets[name].load_state_dict(loaded[name].state_dict())
            except RuntimeError as e:
                raise ConfigError(f"train.init_from={model_dir}: {name} does not match model.* of this config: "
                                  f"{str(e).splitlines()[0]}") from None

    @staticmethod
    def _compile(nets: dict[str, nn.Module]) -> None:
        # In place (Module.compile), so state_dict keys and checkpoints stay the same with or without it. Compilation
        # happens at the first call; where it fails (no C++ compiler...), dynamo falls back to eager with a warning.
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        for net in nets.values():
            net.compile()

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / "losses.jsonl"

    def _trim_log(self) -> None:
        """Drop log lines past the resumed step (written by the interrupted run after its last checkpoint)."""
        for path in (self.log_path, self.log_path.with_name("metrics.jsonl")):
            if path.is_file():
                lines = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= self.state.step]
                _write_text_atomic(path, "".join(ln + "\n" for ln in lines))

    # -- one batch -------------------------------------------------------------------------------------------
    def _phase(self, trainable: tuple[str, ...], frozen: tuple[str, ...], optimizer, loss_fn) -> tuple:
        """One backward and optimizer step; returns (loss terms, extra, 1.0-if-skipped tensor)."""
        acc = self.accelerator
        for name in frozen:
            self.plain[name].requires_grad_(False)
        # Frozen networks run unwrapped: DDP would otherwise wait for gradients they never receive.
        nets = {**{n: self.plain[n] for n in frozen}, **{n: self.wrapped[n] for n in trainable}}
        with acc.autocast():
            terms, extra = loss_fn(nets)
        acc.backward(sum(terms.values()))
        skipped = torch.zeros((), device=acc.device)
        if acc.sync_gradients and self.config.train.mixed_precision != "fp16":  # fp16: the grad scaler checks
            skipped = _found_inf([p for n in trainable for p in self.plain[n].parameters()], acc.device)
            inner = optimizer.optimizer
            if inner.defaults.get("fused"):
                # The fused kernel reads `found_inf` (the attribute torch's GradScaler sets) and leaves parameters,
                # moments and step counts untouched when it is 1: skipping needs no host sync.
                inner.found_inf = skipped
                optimizer.step()
                del inner.found_inf
            elif not skipped:
                optimizer.step()
        else:
            optimizer.step()
            if acc.sync_gradients and optimizer.step_was_skipped:  # fp16: inf/NaN gradients, the scale is lowered
                self.state.scaler_skipped_steps += 1
        optimizer.zero_grad(set_to_none=True)
        for name in frozen:
            self.plain[name].requires_grad_(True)
        return terms, extra, skipped

    def train_step(self, batch: dict) -> tuple[dict, dict, torch.Tensor]:
        """One batch; returns (loss terms, G's outputs, 1.0 if a phase skipped its step for non-finite gradients)."""
        G, D = self.recipe.generators, self.recipe.discriminators
        g_terms, outputs, g_skip = self._phase(G, D, self.opt_G, lambda nets: self.recipe.generator_loss(nets, batch))
        d_terms, _, d_skip = self._phase(
            D, G, self.opt_D, lambda nets: (self.recipe.discriminator_loss(nets, batch, outputs), None))
        return {**g_terms, **d_terms}, outputs, torch.maximum(g_skip, d_skip)

    # -- the loop --------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        acc, t, state = self.accelerator, self.config.train, self.state
        epochs = t.n_epochs + t.n_epochs_decay
        steps_per_epoch = math.ceil(len(self.loader) / t.gradient_accumulation_steps)
        max_steps = min(t.max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
        bar = tqdm(total=max_steps, initial=state.step, desc=self.config.name, unit="step", dynamic_ncols=True,
                   disable=not (acc.is_main_process and t.progress))
        sums: dict[str, torch.Tensor] = {}
        count = 0
        batch = outputs = None
        with _StopSignal() as stop:
            while state.step < max_steps and state.epoch < epochs:
                self.dataset.set_epoch(state.epoch)
                self.loader.set_epoch(state.epoch)
                loader = acc.skip_first_batches(self.loader, state.batch_in_epoch) if state.batch_in_epoch else \
                    self.loader
                for batch in loader:
                    with acc.accumulate(self.group_G, self.group_D):
                        terms, outputs, skipped = self.train_step(batch)
                    state.batch_in_epoch += 1
                    for key, value in terms.items():
                        sums[key] = sums.get(key, 0) + value.detach().float()
                    count += 1
                    if not acc.sync_gradients:
                        continue
                    state.step += 1
                    bar.update(1)
                    # Skipped steps are tallied on the device and read every few steps: no host sync per step.
                    run = (self._skips[0] + 1) * skipped
                    self._skips = torch.stack([run, torch.maximum(self._skips[1], run), self._skips[2] + skipped])
                    for name, ema in self.ema.items():
                        ema.update(self.plain[name])
                    # Read at checkpoints too, so that the saved state counts every skipped step.
                    if any(state.step % n == 0 for n in (t.log_every, t.max_nonfinite_steps, t.checkpoint_every)):
                        self._read_skips()
                    if state.step % t.log_every == 0 or state.step == max_steps:
                        self._log(sums, count, bar)
                        sums, count = {}, 0
                    if acc.is_main_process and state.step % t.sample_every == 0:
                        save_samples(self.run_dir / "samples" / f"step_{state.step:06d}.png",
                                     self.recipe.visuals(batch, outputs))
                    if t.eval_every and state.step % t.eval_every == 0:
                        self._evaluate()
                    if state.step % t.checkpoint_every == 0 and state.step < max_steps:
                        save_checkpoint(acc, self.run_dir, state.step, t.keep_checkpoints)
                    if self._stop_requested(stop):
                        self._read_skips()
                        path = save_checkpoint(acc, self.run_dir, state.step, t.keep_checkpoints)
                        bar.close()
                        acc.end_training()
                        raise TrainingInterrupted(f"training stopped at step {state.step}; checkpoint saved to "
                                                  f"{path}; continue with --resume")
                    if state.step >= max_steps:
                        break
                else:
                    state.epoch += 1
                    state.batch_in_epoch = 0
                    for scheduler in self.schedulers:
                        scheduler.step()
        bar.close()
        self._read_skips()
        save_checkpoint(acc, self.run_dir, state.step, t.keep_checkpoints)
        if acc.is_main_process:
            if batch is not None:
                save_samples(self.run_dir / "samples" / f"step_{state.step:06d}.png",
                             self.recipe.visuals(batch, outputs))
            self.export(self.run_dir / "model")
            if t.report:
                from translate.evaluation import write_report

                write_report(self.run_dir)
        acc.wait_for_everyone()
        acc.end_training()
        return self.run_dir

    def _evaluate(self) -> None:
        """Metrics on the held-out split, logged; ``model_best/`` follows train.best_metric. Main process only."""
        from translate.evaluation import evaluate

        acc, t = self.accelerator, self.config.train
        if acc.is_main_process:
            nets = {n: (self.ema[n].module if n in self.ema else self.plain[n]) for n in self.recipe.generators}
            metrics = evaluate(nets, self.config, split=t.eval_split, metrics=t.eval_metrics,
                               max_images=t.eval_max_images)
            metrics = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            acc.log({f"eval/{k}": v for k, v in metrics.items()}, step=self.state.step)
            with open(self.run_dir / "logs" / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.state.step, **metrics}) + "\n")
            value = metrics.get(t.best_metric)
            if value is not None and self._is_better(value):
                self.state.best = value
                self.export(self.run_dir / "model_best")
        acc.wait_for_everyone()

    def _is_better(self, value: float) -> bool:
        if self.state.best is None:
            return True
        lower_is_better = self.config.train.best_metric in ("fid", "kid", "lpips", "l1")
        return value < self.state.best if lower_is_better else value > self.state.best

    def _stop_requested(self, stop: _StopSignal) -> bool:
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

    def _log(self, sums: dict, count: int, bar) -> None:
        if not sums:
            return
        acc, state = self.accelerator, self.state
        keys = sorted(sums)
        means = acc.reduce(torch.stack([sums[k] for k in keys]) / count, "mean").tolist()
        values = dict(zip(keys, means))
        values["lr"] = self.schedulers[0].get_last_lr()[0]
        if self.config.train.mixed_precision == "fp16":
            values["scaler_skipped_steps"] = state.scaler_skipped_steps
        self._watch_collapse(values)
        acc.log(values, step=state.step)
        if acc.is_main_process:
            bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in values.items() if k != "lr"},
                            refresh=False)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"step": state.step, "epoch": state.epoch, **values}) + "\n")

    def _watch_collapse(self, values: dict) -> None:
        """Warn when D's loss stays near zero: D wins outright and G gets no useful gradient."""
        d_loss = sum(v for k, v in values.items() if k.startswith("loss_D") and not k.endswith("_gp"))
        self.state.weak_d_windows = self.state.weak_d_windows + 1 if d_loss < COLLAPSE_D_LOSS else 0
        if self.state.weak_d_windows == COLLAPSE_WINDOWS:
            self.accelerator.print(
                f"\nwarning: the discriminator's loss has stayed below {COLLAPSE_D_LOSS} for {COLLAPSE_WINDOWS} log "
                f"windows (step {self.state.step}): D wins and G learns little. What usually helps: a lower D "
                "learning rate or fewer D layers (model.n_layers_D), model.gan_mode=lsgan, a larger model.pool_size, "
                "or more data augmentation.")

    def export(self, directory: Path) -> Path:
        """Write the generators (EMA weights when kept) as a model directory for ``Translator``."""
        nets = {n: (self.ema[n].module if n in self.ema else self.plain[n]) for n in self.recipe.generators}
        meta = {
            "recipe": self.recipe.name,
            "generators": {n: self.recipe.generator_spec(n) for n in self.recipe.generators},
            "directions": self.recipe.directions,
            "step": self.state.step,
            "ema": bool(self.ema),
            "norm_mode": "eval",
            "config": OmegaConf.to_container(OmegaConf.structured(self.config)),
        }
        return save_pretrained(directory, nets, meta)


def train(config: Config | str | Path | tuple, resume: bool | str | Path = False) -> Path:
    """Train from a Config (or a YAML path, or (path, overrides)); returns the run directory."""
    return Trainer(as_config(config), resume).fit()
