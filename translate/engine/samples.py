"""Sample grids written during training: one row per example, the recipe's visuals side by side."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from translate.fileio import atomic_write


def _to_rgb(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.shape[1] == 2:
        return torch.cat([images, torch.zeros_like(images[:, :1])], 1)
    return images


def save_samples(path: Path, visuals: list[torch.Tensor], max_rows: int = 4) -> None:
    """One row per example: the recipe's visuals (e.g. input | output | target) side by side; visuals of other
    sizes (a ×4 output) are resized to the first's so they line up."""
    size = visuals[0].shape[-2:]
    columns = []
    for v in visuals:
        v = _to_rgb(v[:max_rows].detach().float().cpu())
        if v.shape[-2:] != size:
            v = torch.nn.functional.interpolate(v, size=size, mode="nearest")
        columns.append(v)
    rows = torch.stack(columns, 1).flatten(0, 1)
    grid = make_grid(rows, nrow=len(columns), padding=2, value_range=(-1, 1), normalize=True)
    with atomic_write(path, "wb") as f:
        save_image(grid, f, format="png")
