"""Generators and discriminators by name: a registry of builders, like timm's ``create_model``.

Users add their own with ``@register_generator("name")`` / ``@register_discriminator("name")`` and train them by
setting ``model.netG`` / ``model.netD`` to that name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Entry:
    build: Callable[..., nn.Module]
    stride: int = 1  # input height and width must be multiples of this
    min_size: int = 1  # smallest input side the network accepts


GENERATORS: dict[str, Entry] = {}
DISCRIMINATORS: dict[str, Entry] = {}


def register_generator(name: str, *, stride: int = 4, min_size: int | None = None):
    """Register ``build(input_nc, output_nc, ngf, norm, use_dropout) -> nn.Module`` under ``name``."""

    def decorator(build):
        GENERATORS[name] = Entry(build, stride, stride if min_size is None else min_size)
        return build

    return decorator


def register_discriminator(name: str):
    """Register ``build(input_nc, ndf, n_layers, norm) -> nn.Module`` under ``name``."""

    def decorator(build):
        DISCRIMINATORS[name] = Entry(build)
        return build

    return decorator


def _lookup(registry: dict[str, Entry], kind: str, name: str) -> Entry:
    if name not in registry:
        raise KeyError(f"unknown {kind} '{name}'; registered: {', '.join(sorted(registry))}")
    return registry[name]


def create_generator(
    name: str,
    *,
    input_nc: int = 3,
    output_nc: int = 3,
    ngf: int = 64,
    norm: str = "batch",
    use_dropout: bool = False,
    init_type: str | None = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    net = _lookup(GENERATORS, "generator", name).build(input_nc, output_nc, ngf, norm, use_dropout)
    if init_type:
        init_weights(net, init_type, init_gain)
    return net


def create_discriminator(
    name: str,
    *,
    input_nc: int = 3,
    ndf: int = 64,
    n_layers: int = 3,
    norm: str = "batch",
    init_type: str | None = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    net = _lookup(DISCRIMINATORS, "discriminator", name).build(input_nc, ndf, n_layers, norm)
    if init_type:
        init_weights(net, init_type, init_gain)
    return net


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """The reference's initialisation: conv/linear weights by ``init_type``, biases 0, batch-norm weights N(1, gain)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown init_type '{init_type}' (normal, xavier, kaiming, orthogonal)")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


# Register the built-in networks.
from translate.networks import discriminators, generators  # noqa: E402, F401
