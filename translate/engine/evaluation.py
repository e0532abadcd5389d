"""Evaluation during training (``train.eval_every``): held-out metrics next to doing nothing (output = input), the
best model (``model_best/`` by ``train.best_metric``), early stopping (``train.early_stop``) and the warning for a
model worse than doing nothing. At each evaluation or, with evaluation off, with each sample grid: translation
recipes have the distance of their outputs' colours from the other domain's watched (the warning for a generator that
stays at its input on a far task), and recipes that generate from noise the diversity of their samples
(translate.engine.watch). Main process only; every process stops together."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from translate.engine.jobs import Job
from translate.engine.watch import WATCH_IMAGES, collapse_warning, real_diversity, watched_diversity

QUALITY_EVALS = 3  # evaluations in a row worse than doing nothing before a warning
# A generator "has not moved from its input" when, past STUCK_STEPS, its outputs have closed less than STUCK_CLOSED of
# the colour gap between its input's domain and its target's, and that gap is a far task's (translate.data.gap).
# Measured on photo -> pencil sketch (docs/quality.md, far tasks), CycleGAN at 400 steps: the residual U-Net that
# stays at its input (held-out PSNR that of doing nothing) had closed 15 % of the gap at 200 steps and 17 % at 400;
# the ResNet, which moves, 51 % at 100 steps and 66 % at 200.
STUCK_STEPS = 200
STUCK_CLOSED = 0.25
MOVED_IMAGES = 16  # training items translated at each check
LOWER_IS_BETTER = ("fid", "kid", "lpips", "l1")


class Evaluation(Job):
    def __init__(self, trainer):
        self.trainer = trainer
        self.baseline: dict | None = None  # held-out metrics of doing nothing, computed at the first evaluation
        self.moved: dict | None = None  # the items watch_moved translates, read at its first call

    def on_step(self, batch: dict, ctx: dict) -> None:
        trainer = self.trainer
        t, step = trainer.config.train, trainer.state.step
        if t.eval_every and step % t.eval_every == 0:
            self.evaluate()
        elif not t.eval_every and trainer.accelerator.is_main_process and step % t.sample_every == 0:
            self.log_metrics({**self.watch_samples(), **self.watch_moved()})  # no evaluation asked: with each grid

    def evaluate(self) -> None:
        trainer = self.trainer
        acc, t, state = trainer.accelerator, trainer.config.train, trainer.state
        if acc.is_main_process and not trainer.recipe.directions:  # a noise recipe: nothing to translate
            self.log_metrics(self.watch_samples())
        elif acc.is_main_process:
            metrics = self.held_out_metrics(trainer.exported_networks())
            if self.baseline is None:
                self.baseline = self.do_nothing_metrics()
            metrics.update({f"{k}_do_nothing": v for k, v in self.baseline.items()}, **self.watch_moved())
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

    def watch_moved(self) -> dict:
        """How far each generator's outputs are from its target domain's colours: ``colour_gap_<direction>`` next
        to ``colour_gap_<direction>_input`` (its inputs' distance: where a generator that starts as its input
        starts), on the same training items each time; and one warning where the domains are far apart and the
        outputs have closed little of that distance. {} for recipes whose output has other channels than their
        input, or that read one folder (super-resolution) or none (noise)."""
        from translate.data.gap import COLOUR_THRESHOLD, colour_distance, colour_values
        from translate.evaluation.evaluate import eval_mode

        trainer = self.trainer
        m, state = trainer.config.model, trainer.state
        if m.input_nc != m.output_nc or not trainer.recipe.directions:
            return {}
        if self.moved is None:  # once: the items, each side's colours and the inputs' distance
            items = _moved_items(trainer.dataset)
            values = {side: colour_values([item[side] for item in items])
                      for side in "AB" if items and side in items[0]}
            self.moved = {"items": items, "values": values,
                          "input": colour_distance(values["A"], values["B"]) if "B" in values else None}
        if self.moved["input"] is None:  # no other domain to move towards
            return {}
        names = {name: direction for direction, name in trainer.recipe.directions.items()}
        before, metrics, stuck = self.moved["input"], {}, []
        # The first exported generator takes the items' A and draws B; CycleGAN's second the other way.
        for (name, net), (source, target) in zip(trainer.exported_networks().items(), (("A", "B"), ("B", "A"))):
            with eval_mode([net]):  # one image at a time: any sizes, little memory
                outputs = [net(item[source][None].to(trainer.accelerator.device)).float().cpu()[0]
                           for item in self.moved["items"]]
            after = colour_distance(colour_values(outputs), self.moved["values"][target])
            key = f"colour_gap_{names.get(name, name)}"
            metrics.update({key: after, f"{key}_input": before})
            if before >= COLOUR_THRESHOLD and after > (1 - STUCK_CLOSED) * before:
                stuck.append(f"{name}'s outputs are {after:.2f} from the target domain's colours, its inputs "
                             f"{before:.2f}")
        if stuck and state.step >= STUCK_STEPS and not state.stuck_warned:
            state.stuck_warned = True
            if m.residual:
                hint = ("a generator that starts as its input stays there when the domains are this far apart: set "
                        "model.residual=false" + (" (model.netG=auto then takes the paper's ResNet)"
                                                  if m.recipe == "cyclegan" else ""))
            else:
                hint = "a generator that learns the output from scratch needs more steps on such tasks: train longer"
            trainer.accelerator.print(
                f"\nwarning: the generator has not moved from its input towards the target domain after {state.step} "
                f"steps ({'; '.join(stuck)}; colour gap between the domains >= {COLOUR_THRESHOLD}: this looks like a "
                f"far task): {hint} (docs/quality.md, far tasks).")
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


def _moved_items(dataset) -> list[dict]:
    """MOVED_IMAGES training items, evenly spaced, as the dataset's first epoch draws them whatever the epoch now (a
    resumed run watches the same crops), from each item's own generator (the training RNG is left alone). A file that
    no longer decodes is left out."""
    from translate.data import BadImageError, evenly_spaced

    items = []
    for i in evenly_spaced(len(dataset), MOVED_IMAGES):
        try:
            items.append(dataset.load(i, np.random.default_rng((dataset.seed, 0, i))))
        except BadImageError:
            continue
    return items

