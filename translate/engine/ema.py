"""Exponential moving average of generator weights (as in StyleGAN's G_ema): smoother samples and exports."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Holds a frozen copy of ``net``; ``update`` moves it towards ``net`` by ``1 - decay``. Buffers (batch-norm
    statistics) are copied as they are.

    ``warmup``: the decay of update ``t`` (0, 1, ...) is min(decay, (1 + t) / (10 + t)), as diffusers' EMAModel
    ramps it (StyleGAN's ema_rampup serves the same end): a fixed 0.999 would still hold 0.999^400 = 67 % of the
    random initial weights after 400 steps."""

    def __init__(self, net: nn.Module, decay: float, warmup: bool = True):
        super().__init__()
        self.decay = decay
        self.warmup = warmup
        self.module = copy.deepcopy(net).eval().requires_grad_(False)

    def decay_at(self, t: int) -> float:
        return min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, net: nn.Module, t: int) -> None:
        """Update number ``t`` (counted from 0 over the whole run, so that a resumed run ramps on where it was)."""
        ema_params = list(self.module.parameters())
        params = [p.detach().to(q.dtype) for p, q in zip(net.parameters(), ema_params)]
        torch._foreach_lerp_(ema_params, params, 1 - self.decay_at(t))
        for b_ema, b in zip(self.module.buffers(), net.buffers()):
            b_ema.copy_(b)
