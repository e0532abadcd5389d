"""The collapsed-samples watch for recipes that generate from noise: the diversity of samples from fixed latents
(``Recipe.fixed_samples``) against that of real training images, and the warning when it falls too low. The trainer
runs it at each evaluation (train.eval_every) or, with evaluation off (the default), with each sample grid
(train.sample_every), so that a logged value and a grid describe the same step; it logs diversity, diversity_real and
diversity_ratio next to the held-out metrics (logs/metrics.jsonl, TensorBoard eval/...).

Diversity is the toolkit's mean pairwise distance of thumbnails (translate.evaluation.metrics), after each thumbnail
is standardised (zero mean, unit spread): for two images whose pixels correlate by r it is sqrt(2 (1 - r)), so 0 for
samples that are the same picture and about sqrt(2) for unrelated ones. Brightness and contrast do not count: a young
generator's samples are faint (at 10-160 steps of DCGAN on the digits, 3-20 % of the real images' raw pixel spread)
but differ from each other as much as the real images do, and must not read as collapsed.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import default_collate

from translate.evaluation.metrics import mean_pairwise_distance, thumbnails

WATCH_IMAGES = 64  # samples (and real images, fewer when the data has fewer) compared pairwise: 2016 pairs
# Samples less diverse than this fraction of the real images' have collapsed. k modes of equal weight, each with
# little variation inside, give about 1 - 1/k of the real diversity: below 0.5 the samples hold no more variety than
# two pictures. Measured on 256 digits (DCGAN, ngf 16-32, 160-300 steps): healthy runs 0.71-1.3 from the first steps
# on; a run with G's lr at 0.005 whose grids showed one shape per step from step 90 to 240: 0.43-0.58 (so it is
# warned about at step 120, the first value below 0.5), 0.89 once it recovered; a G that ignores its latent: 0.
SAMPLES_COLLAPSE = 0.5


def diversity(images: Tensor) -> float:
    """Mean pairwise distance of standardised thumbnails of images in [-1, 1] (N ≥ 2); flat images (one colour
    each) are all the same picture."""
    x = thumbnails((images.detach().float().cpu() + 1) / 2)
    x = x - x.mean((1, 2, 3), keepdim=True)
    return mean_pairwise_distance(x / x.std((1, 2, 3), keepdim=True).clamp_min(1e-6))


def real_diversity(recipe, dataset, seed: int) -> float:
    """Diversity of up to WATCH_IMAGES training images, picked by their own seeded generator (the training RNG is
    left alone, so resumed runs stay exact), as the recipe's discriminator sees them (``Recipe.real_images``)."""
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:WATCH_IMAGES]
    batch = default_collate([dataset[i] for i in indices.tolist()])
    return diversity(next(iter(recipe.real_images(batch).values())))


def sample_diversity(samples: Tensor, real: float) -> dict[str, float]:
    value = diversity(samples)
    return {"diversity": value, "diversity_real": real, "diversity_ratio": value / real if real else 0.0}


def collapse_warning(metrics: dict[str, float], step: int) -> str | None:
    """The warning when the samples' diversity is below SAMPLES_COLLAPSE × the real images', else None."""
    value, real = metrics["diversity"], metrics["diversity_real"]
    if not value < SAMPLES_COLLAPSE * real:  # also when undefined (NaN: a dataset of one image)
        return None
    return (f"\nwarning: samples have collapsed: their diversity is {value:.4f}, below {SAMPLES_COLLAPSE} × the real "
            f"images' {real:.4f} (step {step}): G makes nearly the same images whatever its latent. What usually "
            "helps: model.minibatch_stddev=true, model.spectral_norm=true, model.gan_mode=wgangp with "
            "model.n_critic=5, or a lower D learning rate (train.optimizers.D.lr).")
