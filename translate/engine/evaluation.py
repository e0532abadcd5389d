"""Evaluation during training (``train.eval_every``): held-out metrics next to doing nothing (output = input), the
best model (``model_best/`` by ``train.best_metric``), early stopping (``train.early_stop``) and the warning for a
model worse than doing nothing. Recipes that generate from noise have the diversity of their samples watched instead
(translate.engine.watch): at each evaluation or, with evaluation off, with each sample grid. Main process only;
every process stops together."""

from __future__ import annotations

import json

import torch
from torch import nn

from translate.engine.jobs import Job
from translate.engine.watch import WATCH_IMAGES, collapse_warning, real_diversity, watched_diversity

QUALITY_EVALS = 3  # evaluations in a row worse than doing nothing before a warning
LOWER_IS_BETTER = ("fid", "kid", "lpips", "l1")


class Evaluation(Job):
    def __init__(self, trainer):
        self.trainer = trainer
        self.baseline: dict | None = None  # held-out metrics of doing nothing, computed at the first evaluation

    def on_step(self, batch: dict, ctx: dict) -> None:
        trainer = self.trainer
        t, step = trainer.config.train, trainer.state.step
        if t.eval_every and step % t.eval_every == 0:
            self.evaluate()
        elif not t.eval_every and trainer.accelerator.is_main_process and step % t.sample_every == 0:
            self.log_metrics(self.watch_samples())  # no evaluation asked: with each sample grid

    def evaluate(self) -> None:
        trainer = self.trainer
        acc, t, state = trainer.accelerator, trainer.config.train, trainer.state
        if acc.is_main_process and not trainer.recipe.directions:  # a noise recipe: nothing to translate
            self.log_metrics(self.watch_samples())
        elif acc.is_main_process:
            metrics = self.held_out_metrics(trainer.exported_networks())
            if self.baseline is None:
                self.baseline = self.do_nothing_metrics()
            metrics.update({f"{k}_do_nothing": v for k, v in self.baseline.items()})
            self.log_metrics(metrics)
            self.watch_quality(metrics)
            value = metrics.get(t.best_metric)
            if value is not None and self.is_better(value):
                state.best = value
                trainer.export(trainer.run_dir / "model_best")
            if t.early_stop and value is not None:
                self.watch_early_stop(value)
        if t.early_stop and acc.num_processes > 1:  # the main process decides; every process stops with it
            flag = torch.tensor([float(bool(state.stopped_early))])
            torch.distributed.broadcast(flag, 0, group=trainer.cpu_group)
            if flag.item() and not state.stopped_early:
                state.stopped_early = "stopped early by the main process"
        acc.wait_for_everyone()

    def watch_early_stop(self, value: float) -> None:
        """train.early_stop: count evaluations without an improvement of more than train.early_stop_min_delta over
        the value of the last one that improved (Keras' EarlyStopping); at train.early_stop of them, stop."""
        trainer = self.trainer
        t, state = trainer.config.train, trainer.state
        ref, delta = state.stale_reference, t.early_stop_min_delta
        lower = t.best_metric in LOWER_IS_BETTER
        if ref is None or (value < ref - delta if lower else value > ref + delta):
            state.stale_reference, state.stale_evals = value, 0
            return
        state.stale_evals += 1
        if state.stale_evals >= t.early_stop:
            best_step = json.loads((trainer.run_dir / "model_best" / "config.json").read_text())["step"]
            state.stopped_early = (
                f"{t.best_metric} did not improve by more than {delta:g} for {state.stale_evals} evaluations "
                f"(train.early_stop={t.early_stop}, every {t.eval_every} steps); the best, {state.best:.4g} at step "
                f"{best_step}, is in model_best/")
            trainer.accelerator.print(f"\nstep {state.step}: early stop: {state.stopped_early}")

    def log_metrics(self, metrics: dict) -> None:
        """To TensorBoard (eval/...) and logs/metrics.jsonl, which the report charts."""
        if metrics:
            trainer = self.trainer
            trainer.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=trainer.state.step)
            with open(trainer.run_dir / "logs" / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": trainer.state.step, **metrics}) + "\n")

    def watch_samples(self) -> dict:
        """Recipes that generate from noise: the diversity of G's fixed-latent samples (the trained G, as in the
        sample grids) against the real images', and one warning when they have collapsed (translate.engine.watch).
        {} for translation recipes."""
        trainer = self.trainer
        samples = trainer.recipe.fixed_samples(trainer.nets, WATCH_IMAGES)
        if samples is None:
            return {}
        state = trainer.state
        if state.diversity_real is None:  # once; checkpointed, so a resumed run logs the same value
            state.diversity_real = real_diversity(trainer.recipe, trainer.dataset, trainer.config.train.seed)
        metrics = watched_diversity(samples, state.diversity_real)
        message = collapse_warning(metrics, state.step)
        if message and not state.collapse_warned:
            state.collapse_warned = True
            trainer.accelerator.print(message)
        return metrics

    def do_nothing_metrics(self) -> dict:
        """The held-out metrics of returning the input unchanged: the baseline a translation must beat."""
        from translate.evaluation import do_nothing

        m = self.trainer.config.model
        return self.held_out_metrics({"G": do_nothing(m.input_nc)}) if m.input_nc == m.output_nc else {}

    def held_out_metrics(self, nets: dict[str, nn.Module]) -> dict:
        """train.eval_metrics of ``nets`` on train.eval_split, the numbers only."""
        from translate.evaluation import evaluate

        config = self.trainer.config
        t = config.train
        metrics = evaluate(nets, config, split=t.eval_split, metrics=t.eval_metrics, max_images=t.eval_max_images)
        return {k: v for k, v in metrics.items() if isinstance(v, int | float)}

    def watch_quality(self, metrics: dict) -> None:
        """Warn once when the model has been worse than doing nothing for QUALITY_EVALS evaluations in a row."""
        state = self.trainer.state
        worse = [k for k in metrics if f"{k}_do_nothing" in metrics
                 and (metrics[k] > metrics[f"{k}_do_nothing"] if k in LOWER_IS_BETTER
                      else metrics[k] < metrics[f"{k}_do_nothing"])]
        state.worse_evals = state.worse_evals + 1 if worse else 0
        if state.worse_evals == QUALITY_EVALS:
            self.trainer.accelerator.print(
                f"\nwarning: for {QUALITY_EVALS} evaluations in a row (step {state.step}) the model's "
                f"{', '.join(worse)} on the {self.trainer.config.train.eval_split} split were worse than returning "
                "the input unchanged. Short runs on small data do better with the recommended settings: see "
                "configs/*_recommended.yaml and docs/quality.md.")

    def is_better(self, value: float) -> bool:
        state = self.trainer.state
        if state.best is None:
            return True
        lower_is_better = self.trainer.config.train.best_metric in LOWER_IS_BETTER
        return value < state.best if lower_is_better else value > state.best
