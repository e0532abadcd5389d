"""Loss functions as plain functions: adversarial objectives, gradient penalty, reconstruction terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def adversarial_loss(prediction: Tensor, real: bool, mode: str, *, for_discriminator: bool = True) -> Tensor:
    """How far ``prediction`` (D's raw output) is from saying ``real``.

    vanilla: BCE with logits (the original GAN); lsgan: least squares to 1/0; wgangp: the Wasserstein critic's
    mean; hinge: hinge for D, -mean for G.
    """
    if mode == "vanilla":
        target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
        return F.binary_cross_entropy_with_logits(prediction, target)
    if mode == "lsgan":
        target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
        return F.mse_loss(prediction, target)
    if mode == "wgangp":
        return -prediction.mean() if real else prediction.mean()
    if mode == "hinge":
        if not for_discriminator:
            return -prediction.mean()
        return F.relu(1 - prediction).mean() if real else F.relu(1 + prediction).mean()
    raise ValueError(f"unknown gan_mode '{mode}' (vanilla, lsgan, wgangp, hinge)")


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor, constant: float = 1.0) -> Tensor:
    """WGAN-GP: (||∇D(x̂)|| - constant)² at random interpolates x̂ of real and fake (Gulrajani et al. 2017)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - constant) ** 2).mean()


def discriminator_terms(discriminator: nn.Module, real: Tensor, fake: Tensor, mode: str, lambda_gp: float,
                        name: str = "D") -> dict[str, Tensor]:
    """D's loss on a real and a (detached) fake batch, halved as in the papers so D learns slower than G."""
    terms = {
        f"loss_{name}_real": 0.5 * adversarial_loss(discriminator(real), True, mode),
        f"loss_{name}_fake": 0.5 * adversarial_loss(discriminator(fake), False, mode),
    }
    if mode == "wgangp":
        terms[f"loss_{name}_gp"] = lambda_gp * gradient_penalty(discriminator, real, fake)
    return terms


def l1_loss(output: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error: pix2pix's reconstruction term and CycleGAN's cycle and identity terms."""
    return F.l1_loss(output, target)
