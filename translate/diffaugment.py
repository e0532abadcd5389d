"""DiffAugment (Zhao et al. 2020): one differentiable augmentation on every image a discriminator sees, real or fake,
so that D cannot memorise a small training set while G still gets gradients through the augmentation.

Built on kornia's augmentation module and attached to the discriminators as forward pre-hooks (``attach``); the
random stream is reseeded from (seed, step) every step, so a resumed run augments exactly as an uninterrupted one.
Any channel count: translation and cutout move and blank every channel alike; color changes the brightness,
saturation and contrast of gray and RGB images, and the config refuses it for other channel counts.
"""

from __future__ import annotations

import kornia.augmentation as K
import numpy as np
import torch
from torch import Tensor, nn

POLICY = ("color", "translation", "cutout")
GROUP = 3  # channels transformed together: pix2pix's D sees (input, output) as two RGB groups


def parse_policy(text: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` → ("color", "translation", "cutout"); "" → () (off)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in POLICY]
    if unknown:
        raise ValueError(f"train.diffaugment: unknown {', '.join(unknown)}; known: {', '.join(POLICY)}")
    return names


def _groups(x: Tensor) -> Tensor:
    """(N, C, H, W) → (N, G, C/G, H, W) with RGB groups where C is a multiple of 3, else one group of C."""
    group = GROUP if x.shape[1] % GROUP == 0 else x.shape[1]
    return x.unflatten(1, (x.shape[1] // group, group))


class DiffAugment(nn.Module):
    """The paper's policy on images in [-1, 1]; every image of a batch gets its own parameters, and all channel
    groups of one image the same ones (pix2pix's input and output stay aligned)."""

    def __init__(self, policy: tuple[str, ...]):
        super().__init__()
        self.policy = policy
        # The paper's ranges, on [-1, 1] images: brightness + U(-0.5, 0.5); saturation × U(0, 2) around the pixel's
        # grey; contrast × U(0.5, 1.5) around the image mean. kornia draws one factor per image and applies it to
        # every channel; its contrast, unclipped, is a plain multiplication, used here on the centred values.
        self.brightness = K.RandomBrightness((0.5, 1.5), clip_output=False, p=1.0)
        self.saturation = K.RandomContrast((0.0, 2.0), clip_output=False, p=1.0)
        self.contrast = K.RandomContrast((0.5, 1.5), clip_output=False, p=1.0)
        # Shift by up to 1/8 of the size, zero-filled; nearest sampling makes it a whole-pixel shift, as in the paper.
        self.translation = K.RandomTranslate((-0.125, 0.125), (-0.125, 0.125), resample="nearest", p=1.0)
        # Zero a square of half the side (a quarter of the area) at a random place.
        self.cutout = K.RandomErasing(scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0, p=1.0)

    def _scale_around(self, x: Tensor, mean: Tensor, scale: nn.Module) -> Tensor:
        return (scale(x - mean.flatten(1, 2)) + mean.flatten(1, 2)).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if "color" in self.policy:
            x = self.brightness(x).to(x.dtype)
            groups = _groups(x)
            x = self._scale_around(x, groups.mean(2, keepdim=True).expand_as(groups), self.saturation)
            groups = _groups(x)
            x = self._scale_around(x, groups.mean((2, 3, 4), keepdim=True).expand_as(groups), self.contrast)
        if "translation" in self.policy:
            x = self.translation(x).to(x.dtype)
        if "cutout" in self.policy:
            x = self.cutout(x).to(x.dtype)
        return x


def step_seed(seed: int, step: int) -> int:
    """A well-mixed 63-bit seed for (seed, step): neighbouring steps get unrelated streams."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class Handle:
    """What ``attach`` returns: ``set_step(step)`` before each optimizer step, ``remove()`` to detach."""

    def __init__(self, augment: DiffAugment, seed: int):
        self.augment, self.seed = augment, seed
        self.generator = torch.Generator().manual_seed(step_seed(seed, 0))
        self.hooks: list = []

    def set_step(self, step: int) -> None:
        self.generator.manual_seed(step_seed(self.seed, step))

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        # kornia draws its parameters from torch's global generator: run it on a fork of that generator, seeded from
        # this handle's stream, so the draws are reproducible and the global stream (dropout, pools) is untouched.
        call_seed = int(torch.randint(2**62, (), generator=self.generator))
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(call_seed)
            return (self.augment(x), *args[1:])

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()


def attach(discriminators: list[nn.Module], policy: tuple[str, ...], seed: int) -> Handle:
    """Augment the first input of every call of each discriminator with ``policy`` (see ``parse_policy``)."""
    handle = Handle(DiffAugment(policy), seed)
    handle.hooks = [d.register_forward_pre_hook(handle) for d in discriminators]
    return handle
