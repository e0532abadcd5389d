"""How far apart two domains are, measured on the training images before any network is built, and the settings
chosen from it: ``model.residual=auto`` resolves to a generator that starts as its input unless the two domains'
colours are far apart (a drawing on white paper from a photo, or a photo from one), where that start is a poor one.

Two distances between the pooled training images of A and B (docs/quality.md):
- colour: the 1-D Wasserstein distance between each channel's distribution of values, averaged over the channels,
  in units of the full range. It is a lower bound of the mean absolute difference between A and B under any pairing,
  so of doing nothing's error: a generator that starts as its input starts at least this far from every output.
  This one decides.
- texture: the same distance between the distributions of log gradient magnitude (Sobel, of the mean over the
  channels; 1/255 added, so a flat pixel is one grey level of slope): how much more or less detail, and how strong,
  the other domain has. Printed, not used: tasks that change texture but keep the colours' layout (flat posterised
  colours with outlines, stripes on part of the image) were still done best by a generator that starts as its input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from translate.data.base import evenly_spaced

# The colour gap above which a generator that starts as its input is a poor start. Measured on the built-in tasks'
# training data (docs/quality.md): where the residual generator won or tied, at most 0.18 (stronger stylisation
# 0.17-0.18, stripes 0.12-0.14, cartoon 0.08-0.09, stylisation 0.07-0.09, detail enhancement 0.04-0.05); where it lost
# (pencil sketch, either direction), 0.24-0.26. Two crops of the same photos (no task at all) measure 0.03.
COLOUR_THRESHOLD = 0.2
MAX_ITEMS = 200  # items read from the dataset, evenly spaced: enough for stable quantiles, seconds to read
_VALUES_PER_IMAGE = 16384  # each image's pixels, strided down to about this many: bounded memory on large images
_QUANTILES = np.linspace(0.5 / 256, 1 - 0.5 / 256, 256)


@dataclass(frozen=True)
class DomainGap:
    colour: float
    texture: float

    @property
    def far(self) -> bool:
        return self.colour >= COLOUR_THRESHOLD

    def describe(self) -> str:
        return (f"colour gap {self.colour:.2f} {'>=' if self.far else '<'} {COLOUR_THRESHOLD} "
                f"(texture gap {self.texture:.2f})")


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """The 1-D Wasserstein distance between two samples, from 256 matching quantiles."""
    return float(np.mean(np.abs(np.quantile(a, _QUANTILES) - np.quantile(b, _QUANTILES))))


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8


def image_statistics(image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(values (C, n), log gradient magnitudes (n,)) of one (C, H, W) image in [-1, 1], strided to about
    ``_VALUES_PER_IMAGE`` pixels each."""
    x = (image.detach().float().cpu() + 1) / 2
    gray = x.mean(0, keepdim=True)[None]
    kernels = torch.stack([_SOBEL, _SOBEL.T])[:, None]
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)[0]
    log_gradient = torch.log(g.pow(2).sum(0).sqrt() + 1 / 255).flatten()
    values = x.flatten(1)
    step = max(1, values.shape[1] // _VALUES_PER_IMAGE)
    return values[:, ::step].numpy(), log_gradient[::step].numpy()


def measure_gap(dataset, max_items: int = MAX_ITEMS) -> DomainGap:
    """The colour and texture gap between the "A" and "B" images of ``dataset`` (items as training reads them), from
    up to ``max_items`` items evenly spaced over it."""
    stats = {"A": [], "B": []}
    for i in evenly_spaced(len(dataset), max_items):
        item = dataset[i]
        for side in "AB":
            stats[side].append(image_statistics(item[side]))
    return _gap(stats["A"], stats["B"])


def images_gap(images_A, images_B) -> DomainGap:
    """The colour and texture gap between two sets of (C, H, W) images in [-1, 1] (batches, or lists of any sizes):
    for a translation's outputs against their truths, how far the outputs are from the target domain's colours and
    detail, wherever in the image they put them (what an unpaired model is trained for, which a per-pixel metric
    does not see)."""
    return _gap([image_statistics(x) for x in images_A], [image_statistics(x) for x in images_B])


def _gap(stats_A: list, stats_B: list) -> DomainGap:
    (values_A, grad_A), (values_B, grad_B) = (
        (np.concatenate([v for v, _ in s], axis=1), np.concatenate([g for _, g in s])) for s in (stats_A, stats_B))
    return DomainGap(colour=colour_distance(values_A, values_B), texture=_wasserstein(grad_A, grad_B))


def colour_values(images) -> np.ndarray:
    """The pooled values (C, n) of (C, H, W) images in [-1, 1] (a batch, or a list of any sizes), as
    ``image_statistics`` samples them."""
    return np.concatenate([image_statistics(image)[0] for image in images], axis=1)


def colour_distance(values_A: np.ndarray, values_B: np.ndarray) -> float:
    """The colour gap between two pools of values (C, n), in units of the full range (0: the same distribution)."""
    if values_A.shape[0] != values_B.shape[0]:  # channel counts differ: compare brightness alone
        values_A, values_B = values_A.mean(0, keepdims=True), values_B.mean(0, keepdims=True)
    return float(np.mean([_wasserstein(a, b) for a, b in zip(values_A, values_B)]))


def auto_generator(config, residual: bool) -> str:
    """``model.netG=auto`` (CycleGAN): for a generator that starts as its input, the deepest U-Net that data.crop_size
    allows (unet_256 from 256 px, and a crop its stride divides), the generator of the recommended configs; for one
    that learns the output from scratch, the paper's ResNet (resnet_9blocks), which cannot copy its input through skip
    connections and so moves towards the other domain from the first steps (a U-Net without the residual start stayed
    at its input under CycleGAN's identity term: docs/quality.md)."""
    from translate.networks import GENERATORS

    crop = config.data.crop_size
    unets = sorted((g.min_size, name) for name, g in GENERATORS.items()
                   if name.startswith("unet_") and g.min_size <= crop and crop % g.stride == 0)
    return unets[-1][1] if residual and unets else "resnet_9blocks"


def resolve_auto(config, dataset, print_fn: Callable[[str], object] = print) -> DomainGap | None:
    """Resolve ``model.residual=auto`` from the training ``dataset``, and ``model.netG=auto`` from the residual choice
    (``auto_generator``), in ``config``, in place, before the networks are built, and say what was chosen and why; the
    resolved values are what the run's config.yaml records. The measured gap, or None where nothing was measured."""
    m = config.model
    keys = [key for key, value in (("model.residual", m.residual), ("model.netG", m.netG)) if value == "auto"]
    if not keys:
        return None
    reason, gap = None, None
    if m.residual != "auto":
        reason = f"model.residual={str(m.residual).lower()}"
    elif m.input_nc != m.output_nc:
        reason = (f"a residual generator adds its change to the input, and model.input_nc={m.input_nc} != "
                  f"model.output_nc={m.output_nc}")
    elif len(dataset) == 0 or "B" not in dataset[0]:
        reason = "the dataset has no B images to compare A with"
    else:
        gap = measure_gap(dataset)
    if m.residual == "auto":
        m.residual = gap is not None and not gap.far
    if m.netG == "auto":
        m.netG = auto_generator(config, m.residual)
    chosen = ", ".join(str(getattr(m, key.split(".")[1])).lower() for key in keys)
    asked = ", ".join(f"{key}=auto" for key in keys)
    if gap is None:
        print_fn(f"{asked}: {chosen} ({reason})")
        return None
    why = ("far apart: a plain generator, which learns the output from scratch" if gap.far else
           "close enough for a generator that starts as its input and learns the change")
    print_fn(f"{asked}: {chosen}; {gap.describe()}: the domains' colours are {why} (translate.data.gap; "
             f"name the setting to choose it yourself)")
    return gap
