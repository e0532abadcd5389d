"""Normalisation layers by name, with the reference's rule for when convolutions carry a bias."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """``batch``: learned affine + running statistics; ``instance``: neither (as in the reference); ``none``."""
    if norm == "batch":
        return lambda channels: nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"unknown norm '{norm}' (batch, instance, none)")


def conv_bias(norm: str) -> bool:
    # Batch norm's affine shift makes a conv bias redundant; the reference also drops it for norm=none,
    # and its parameter counts (and checkpoints) follow that rule.
    return norm == "instance"
