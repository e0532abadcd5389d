"""The collapsed-samples watch for recipes that generate from noise: the diversity of samples from fixed latents
(``Recipe.fixed_samples``) against that of real training images, and the warning when it falls too low. The trainer
runs it at each evaluation (train.eval_every) or, with evaluation off (the default), with each sample grid
(train.sample_every), so that a logged value and a grid describe the same step; it logs diversity, diversity_real and
diversity_ratio next to the held-out metrics (logs/metrics.jsonl, TensorBoard eval/...).

Diversity is translate.evaluation.metrics.sample_diversity (the measure `translate eval` reports for a noise model),
and SAMPLES_COLLAPSE its threshold, both explained there.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import default_collate

from translate.evaluation.metrics import SAMPLES_COLLAPSE, sample_diversity, thumbnails

WATCH_IMAGES = 64  # samples (and real images, fewer when the data has fewer) compared pairwise: 2016 pairs


def diversity(images: Tensor) -> float:
    """``sample_diversity`` of images in [-1, 1] (N ≥ 2)."""
    return sample_diversity(thumbnails((images.detach().float().cpu() + 1) / 2))


def real_diversity(recipe, dataset, seed: int) -> float:
    """Diversity of up to WATCH_IMAGES training images, picked by their own seeded generator (the training RNG is
    left alone, so resumed runs stay exact), as the recipe's discriminator sees them (``Recipe.real_images``)."""
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:WATCH_IMAGES]
    batch = default_collate([dataset[i] for i in indices.tolist()])
    return diversity(next(iter(recipe.real_images(batch).values())))


def watched_diversity(samples: Tensor, real: float) -> dict[str, float]:
    value = diversity(samples)
    return {"diversity": value, "diversity_real": real,
            "diversity_ratio": value / real if real else float("nan")}  # real images all alike: no ratio


def collapse_warning(metrics: dict[str, float], step: int) -> str | None:
    """The warning when the samples' diversity is below SAMPLES_COLLAPSE × the real images', else None."""
    value, real = metrics["diversity"], metrics["diversity_real"]
    if not value < SAMPLES_COLLAPSE * real:  # also when undefined (NaN: a dataset of one image)
        return None
    return (f"\nwarning: samples have collapsed: their diversity is {value:.4f}, below {SAMPLES_COLLAPSE} × the real "
            f"images' {real:.4f} (step {step}): G makes nearly the same images whatever its latent. What usually "
            "helps: model.minibatch_stddev=true, model.spectral_norm=true, model.gan_mode=wgangp with "
            "model.n_critic=5, or a lower D learning rate (train.optimizers.D.lr).")
