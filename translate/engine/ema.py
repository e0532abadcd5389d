"""Exponential moving average of generator weights (as in StyleGAN's G_ema): smoother samples and exports."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Holds a frozen copy of ``net``; ``update`` moves it towards ``net`` by ``1 - decay``. Buffers (batch-norm
    statistics) are copied as they are."""

    def __init__(self, net: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.module = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        params = [p.detach().to(q.dtype) for p, q in zip(net.parameters(), ema_params)]
        torch._foreach_lerp_(ema_params, params, 1 - self.decay)
        for b_ema, b in zip(self.module.buffers(), net.buffers()):
            b_ema.copy_(b)
