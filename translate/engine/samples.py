"""Sample grids written during training: one row per example, the recipe's visuals side by side, each shown as RGB
through a stated channel mapping (``to_rgb``: train.sample_channels, by default the first three channels, gray for one
or two)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from translate.engine.jobs import Job
from translate.evaluation.display import to_rgb  # the mapping the report shows too
from translate.fileio import atomic_write


def save_samples(path: Path, visuals: list[torch.Tensor], max_rows: int = 4,
                 channels: list[int] | tuple[int, ...] = ()) -> None:
    """One row per example: the recipe's visuals (e.g. input | output | target) side by side, each through
    ``to_rgb(visual, channels)``; visuals of other sizes (a ×4 output) are resized to the first's so they line up."""
    size = visuals[0].shape[-2:]
    columns = []
    for v in visuals:
        v = to_rgb(v[:max_rows].detach().float().cpu(), channels)
        if v.shape[-2:] != size:
            v = torch.nn.functional.interpolate(v, size=size, mode="nearest")
        columns.append(v)
    rows = torch.stack(columns, 1).flatten(0, 1)
    grid = make_grid(rows, nrow=len(columns), padding=2, value_range=(-1, 1), normalize=True)
    with atomic_write(path, "wb") as f:
        save_image(grid, f, format="png")


class Samples(Job):
    """``samples/step_NNNNNN.png`` every ``train.sample_every`` steps and at the end (main process)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step(self, batch: dict, ctx: dict) -> None:
        if self.trainer.state.step % self.trainer.config.train.sample_every == 0:
            self.save(batch, ctx)

    def on_end(self, batch: dict | None, ctx: dict | None) -> None:
        if batch is not None:
            self.save(batch, ctx)

    def save(self, batch: dict, ctx: dict) -> None:
        trainer = self.trainer
        if trainer.accelerator.is_main_process:
            save_samples(trainer.run_dir / "samples" / f"step_{trainer.state.step:06d}.png",
                         trainer.recipe.visuals(batch, ctx), channels=trainer.config.train.sample_channels)
