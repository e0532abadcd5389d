"""Normalisation layers by name (with the reference's rule for when convolutions carry a bias) and the layers that
any discriminator can be given: a minibatch-stddev layer and spectral normalisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

# ``batch``: learned affine + running statistics; ``instance``: neither (as in the reference); ``none``.
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": lambda channels: nn.BatchNorm2d(channels, affine=True, track_running_stats=True),
    "instance": lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False),
    "none": lambda channels: nn.Identity(),
}


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}' ({', '.join(NORMS)})")
    return NORMS[norm]


def conv_bias(norm: str) -> bool:
    # Batch norm's affine shift makes a conv bias redundant; the reference also drops it for norm=none,
    # and its parameter counts (and checkpoints) follow that rule.
    return norm == "instance"


class MinibatchStdDev(nn.Module):
    """Appends one channel: the standard deviation of each feature across a group of samples, averaged over
    features and pixels (Karras et al. 2018, "Progressive Growing of GANs", §3). A generator that collapses to a few
    outputs makes that deviation small, which the discriminator can then see.

    Groups are strided as in the reference code (sample i joins group i mod N/G). The group size is the largest
    divisor of the batch that is at most ``group_size``, so any batch works, the last smaller one included.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        y = x.float().reshape(g, n // g, c, h, w)
        std = (y.var(0, correction=0) + self.eps).sqrt().mean((1, 2, 3))  # (N/G,): one value per group
        feature = std.to(x.dtype).repeat(g).view(n, 1, 1, 1).expand(n, 1, h, w)
        return torch.cat([x, feature], 1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def _last_conv(net: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    convs = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no Conv2d layer to put a minibatch-stddev layer in front of")
    name, conv = convs[-1]
    parent, _, leaf = name.rpartition(".")
    return net.get_submodule(parent), leaf, conv


def add_minibatch_stddev(net: nn.Module, group_size: int = 4) -> nn.Module:
    """Put a ``MinibatchStdDev`` in front of ``net``'s last convolution (as StyleGAN does before its output block),
    which gets one more input channel. Its weights for that channel start at zero: the discriminator starts as it
    was and learns how much to use the statistic; the other weights and the random stream are left untouched."""
    parent, leaf, conv = _last_conv(net)
    wider = nn.Conv2d(conv.in_channels + 1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, : conv.in_channels].copy_(conv.weight)
        if conv.bias is not None:
            wider.bias.copy_(conv.bias)
    setattr(parent, leaf, nn.Sequential(MinibatchStdDev(group_size), wider))
    return net


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every convolution and linear layer of ``net``, in place: each
    weight is divided by its largest singular value, estimated by one power iteration per training forward."""
    for module in list(net.modules()):
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            spectral_norm(module)
    return net
