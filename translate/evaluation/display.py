"""How images of any channel count are shown (sample grids of training, the report's gallery): a stated channel → RGB
mapping, ``to_rgb`` and the words that say which one was used (``describe_mapping``). Torch only: training and the
report both import it, neither through the other."""

from __future__ import annotations

import torch


def picked_channels(c: int, channels: list[int] | tuple[int, ...] = ()) -> list[int]:
    """The channels of a ``c``-channel image that ``to_rgb`` shows: ``channels`` where the image has them all, else
    its first three (one: gray)."""
    if channels and max(channels) < c:
        return list(channels)
    return [0, 1, 2] if c >= 3 else [0]


def to_rgb(images: torch.Tensor, channels: list[int] | tuple[int, ...] = ()) -> torch.Tensor:
    """(N, C, H, W) images of any channel count → (N, 3, H, W) to look at: the ``channels`` given (3 indices shown as
    R, G, B, or 1 shown as gray) where the images have them all; otherwise (and by default) their first three channels
    as R, G, B, or the first as gray when they have one or two."""
    picked = images[:, picked_channels(images.shape[1], channels)]
    return picked.expand(-1, 3, -1, -1) if picked.shape[1] == 1 else picked


def describe_mapping(c: int, channels: list[int] | tuple[int, ...] = ()) -> str:
    """In words, what ``to_rgb`` shows of a ``c``-channel image: "channels 2, 1, 0 as R, G, B", "channel 0 as gray"."""
    picked = picked_channels(c, channels)
    if len(picked) == 1:
        return f"channel {picked[0]} as gray"
    return f"channels {', '.join(map(str, picked))} as R, G, B"
