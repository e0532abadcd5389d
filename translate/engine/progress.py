"""The progress bar and the loss log: the mean of every loss term over each log window (``train.log_every``) to
TensorBoard, ``logs/losses.jsonl`` and the bar (or, when stderr is not a terminal, a plain line per window); and the
watch for a discriminator that wins outright."""

from __future__ import annotations

import json
import sys

import torch
from tqdm.auto import tqdm

from translate.engine.jobs import Job

COLLAPSE_D_LOSS = 0.01  # total D loss below this (per log window) is a sign of a collapsed game...
COLLAPSE_WINDOWS = 5  # ...when it lasts this many log windows


class Progress(Job):
    def __init__(self, trainer, max_steps: int):
        self.trainer, self.max_steps = trainer, max_steps
        t, acc = trainer.config.train, trainer.accelerator
        self.plain = t.progress and not sys.stderr.isatty()
        self.bar = tqdm(total=max_steps, initial=trainer.state.step, desc=trainer.config.name, unit="step",
                        dynamic_ncols=True, disable=not (acc.is_main_process and t.progress) or self.plain)
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        """Every batch's loss terms (micro-batches of an accumulated step included)."""
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float()
        self.count += 1

    def on_step(self, batch: dict, ctx: dict) -> None:
        self.bar.update(1)
        step = self.trainer.state.step
        if step % self.trainer.config.train.log_every == 0 or step == self.max_steps:
            self.write()

    def on_end(self, batch: dict | None, ctx: dict | None) -> None:
        self.write()  # the last, partial window of a run that stopped early
        self.bar.close()

    def write(self) -> None:
        """The current window's means, then a new window."""
        if not self.sums:
            return
        trainer = self.trainer
        acc, state = trainer.accelerator, trainer.state
        keys = sorted(self.sums)
        means = acc.reduce(torch.stack([self.sums[k] for k in keys]) / self.count, "mean").tolist()
        self.sums, self.count = {}, 0
        values = dict(zip(keys, means))
        values["lr"] = next(iter(trainer.optimizers.values())).param_groups[0]["lr"]  # the last step's (warm-up too)
        if trainer.scalers:
            values["scaler_skipped_steps"] = state.scaler_skipped_steps
        self.watch_collapse(values)
        acc.log(values, step=state.step)
        if acc.is_main_process:
            shown = {k.removeprefix("loss_"): f"{v:.3f}" for k, v in values.items() if k != "lr"}
            self.bar.set_postfix(shown, refresh=False)
            if self.plain:
                print(f"{trainer.config.name} step {state.step}/{self.max_steps} epoch {state.epoch}: "
                      + " ".join(f"{k} {v}" for k, v in shown.items()), flush=True)
            trainer.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(trainer.log_path, "a") as f:
                f.write(json.dumps({"step": state.step, "epoch": state.epoch, **values}) + "\n")

    def watch_collapse(self, values: dict) -> None:
        """Warn when D's loss stays near zero: D wins and G gets no useful gradient."""
        state = self.trainer.state
        d_loss = sum(v for k, v in values.items() if k.startswith("loss_D") and not k.endswith(("_gp", "_r1")))
        state.weak_d_windows = state.weak_d_windows + 1 if d_loss < COLLAPSE_D_LOSS else 0
        if state.weak_d_windows == COLLAPSE_WINDOWS:
            self.trainer.accelerator.print(
                f"\nwarning: the discriminator's loss has stayed below {COLLAPSE_D_LOSS} for {COLLAPSE_WINDOWS} log "
                f"windows (step {state.step}): D wins and G learns little. What usually helps: a lower D "
                "learning rate (train.optimizers.D.lr), fewer D layers (model.n_layers_D), model.gan_mode=lsgan, "
                "train.diffaugment=color,translation,cutout, or model.spectral_norm=true.")
