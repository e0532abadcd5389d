"""Generators and discriminators by name: a registry of builders, like timm's ``create_model``.

Users add their own with ``@register_generator("name")`` / ``@register_discriminator("name")`` and train them by
setting ``model.netG`` / ``model.netD`` to that name. A generator's exported spec is ``{"netG": name, **the builder's
keyword arguments}``, so any registered builder can be rebuilt from a model's ``config.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

KINDS = ("image", "noise")  # what a generator takes: an image (translation, super-resolution) or a latent vector
# The keyword arguments of an image-to-image builder and their defaults: ``create_generator("unet_256")`` works.
IMAGE_DEFAULTS = {"input_nc": 3, "output_nc": 3, "ngf": 64, "norm": "batch", "use_dropout": False}


@dataclass(frozen=True)
class Entry:
    build: Callable[..., nn.Module]
    stride: int = 1  # input height and width must be multiples of this
    min_size: int = 1  # smallest input side the network accepts
    kind: str = "image"
    scale: int = 1  # output side / input side: 1 for translation, 4 for a ×4 super-resolution network
    defaults: dict = field(default_factory=dict)  # keyword arguments the builder gets unless given


GENERATORS: dict[str, Entry] = {}
DISCRIMINATORS: dict[str, Entry] = {}


def register_generator(name: str, *, stride: int = 4, min_size: int | None = None, kind: str = "image",
                       scale: int = 1, defaults: dict | None = None):
    """Register a builder ``build(**options) -> nn.Module`` under ``name``.

    ``kind="image"`` builders take ``input_nc, output_nc, ngf, norm, use_dropout`` (defaults: ``IMAGE_DEFAULTS``,
    unless ``defaults`` is given) and may take more keywords; ``kind="noise"`` builders take a latent size ``nz``
    and whatever else they need, with their own defaults. ``scale``: output size / input size of an image builder.
    """
    if kind not in KINDS:
        raise ValueError(f"generator {name!r}: unknown kind {kind!r} ({', '.join(KINDS)})")
    if defaults is None:
        defaults = IMAGE_DEFAULTS if kind == "image" else {}

    def decorator(build):
        GENERATORS[name] = Entry(build, stride, stride if min_size is None else min_size, kind, scale, dict(defaults))
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


def generator_entry(name: str) -> Entry:
    return _lookup(GENERATORS, "generator", name)


def create_generator(name: str, *, init_type: str | None = "normal", init_gain: float = 0.02,
                     **options) -> nn.Module:
    """Build generator ``name`` with ``options`` (its builder's keyword arguments, over the registered defaults),
    initialised by ``init_type`` (None: leave the weights as built, e.g. to load a checkpoint into)."""
    entry = generator_entry(name)
    net = entry.build(**{**entry.defaults, **options})
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
        if getattr(m, "starts_at_zero", False):  # see generators.zero_start
            continue
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
from translate.networks import dcgan, discriminators, generators, sr  # noqa: E402, F401
