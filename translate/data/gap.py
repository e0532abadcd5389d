"""How far apart two domains are, measured on the training images before any network is built, and the settings
chosen from it: ``model.residual=auto`` resolves to a generator that starts as its input where the domains are close
(near tasks: a style, enhancement, a season) and to a plain one where they are far apart (far tasks: a drawing, flat
colours, zebra stripes), whose output shares little with the input's texture.

The gap is the sum of two distances between the pooled training images of A and B (docs/quality.md):
- colour: the 1-D Wasserstein distance between each channel's distribution of values, averaged over the channels,
  in units of the full range (0.1: a tenth of the range, on average, between matching quantiles);
- texture: the same distance between the distributions of log gradient magnitude (Sobel, of the mean over the
  channels; 1/255 added, so a flat pixel is one grey level of slope): how much more or less detail, and of what
  strength, the other domain has, whatever its colours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Between the near tasks (stylisation 0.41, detail enhancement 0.69, stronger stylisation 0.57) and the far ones (pencil
# sketch 1.11, cartoon 1.09, stripes 1.02) measured on the built-in data, nearer the far ones' lowest value: above
# 0.85 a residual generator lost to a plain one in every far task measured (docs/quality.md). Two crops of the same
# photos (no task at all) measure 0.23.
GAP_THRESHOLD = 0.85
MAX_ITEMS = 200  # items read from the dataset, evenly spaced: enough for stable quantiles, seconds to read
_VALUES_PER_IMAGE = 16384  # each image's pixels, strided down to about this many: bounded memory on large images
_QUANTILES = np.linspace(0.5 / 256, 1 - 0.5 / 256, 256)


@dataclass(frozen=True)
class DomainGap:
    colour: float
    texture: float

    @property
    def value(self) -> float:
        return self.colour + self.texture

    @property
    def far(self) -> bool:
        return self.value >= GAP_THRESHOLD

    def describe(self) -> str:
        return (f"domain gap {self.value:.2f} (colour {self.colour:.2f} + texture {self.texture:.2f}) "
                f"{'>=' if self.far else '<'} {GAP_THRESHOLD}")


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
    n = len(dataset)
    indices = np.unique(np.linspace(0, n - 1, min(n, max_items)).round().astype(int))
    stats = {"A": ([], []), "B": ([], [])}
    for i in indices:
        item = dataset[int(i)]
        for side in "AB":
            values, log_gradient = image_statistics(item[side])
            stats[side][0].append(values)
            stats[side][1].append(log_gradient)
    (values_A, grad_A), (values_B, grad_B) = (
        (np.concatenate(v, axis=1), np.concatenate(g)) for v, g in (stats["A"], stats["B"]))
    if values_A.shape[0] != values_B.shape[0]:  # channel counts differ: compare brightness alone
        values_A, values_B = values_A.mean(0, keepdims=True), values_B.mean(0, keepdims=True)
    colour = float(np.mean([_wasserstein(a, b) for a, b in zip(values_A, values_B)]))
    return DomainGap(colour=colour, texture=_wasserstein(grad_A, grad_B))


def resolve_auto(config, dataset, print_fn: Callable[[str], object] = print) -> DomainGap | None:
    """Resolve ``model.residual=auto`` in ``config`` (in place) from the training ``dataset``, before the networks are
    built, and say what was chosen and why; the resolved value is what the run's config.yaml records. The measured
    gap, or None where nothing was measured (no auto, or a choice the data cannot change)."""
    m = config.model
    if m.residual != "auto":
        return None
    if m.input_nc != m.output_nc:
        m.residual = False
        print_fn(f"model.residual=auto: false (a residual generator adds its change to the input, and "
                 f"model.input_nc={m.input_nc} != model.output_nc={m.output_nc})")
        return None
    if len(dataset) == 0 or "B" not in dataset[0]:
        m.residual = False
        print_fn("model.residual=auto: false (the dataset has no B images to compare A with)")
        return None
    gap = measure_gap(dataset)
    m.residual = not gap.far
    if gap.far:
        why = "far apart (the output shares little with the input's texture): a generator that learns the output"
    else:
        why = "close (the output keeps the input's layout and detail): a generator that starts as its input"
    print_fn(f"model.residual=auto: {str(m.residual).lower()}; {gap.describe()}: the domains are {why} "
             f"(translate.data.gap; set model.residual=true or false to choose)")
    return gap
