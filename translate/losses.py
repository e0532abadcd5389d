"""Loss functions as plain functions: adversarial objectives, gradient penalties, reconstruction and contrastive terms.

``GAN_MODES`` is the registry of adversarial objectives that ``model.gan_mode`` chooses from.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _vanilla(prediction: Tensor, real: bool, for_discriminator: bool) -> Tensor:
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.binary_cross_entropy_with_logits(prediction, target)


def _lsgan(prediction: Tensor, real: bool, for_discriminator: bool) -> Tensor:
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def _wgan(prediction: Tensor, real: bool, for_discriminator: bool) -> Tensor:
    return -prediction.mean() if real else prediction.mean()


def _hinge(prediction: Tensor, real: bool, for_discriminator: bool) -> Tensor:
    if not for_discriminator:
        return -prediction.mean()
    return F.relu(1 - prediction).mean() if real else F.relu(1 + prediction).mean()


GAN_MODES: dict[str, Callable[[Tensor, bool, bool], Tensor]] = {
    "vanilla": _vanilla, "lsgan": _lsgan, "wgangp": _wgan, "hinge": _hinge,
}


def register_gan_mode(name: str):
    """Register ``loss(prediction, real, for_discriminator) -> Tensor`` as ``model.gan_mode=name``."""

    def decorator(fn):
        GAN_MODES[name] = fn
        return fn

    return decorator


def adversarial_loss(prediction: Tensor, real: bool, mode: str, *, for_discriminator: bool = True) -> Tensor:
    """How far ``prediction`` (D's raw output) is from saying ``real``.

    vanilla: BCE with logits (the original GAN); lsgan: least squares to 1/0; wgangp: the Wasserstein critic's
    mean; hinge: hinge for D, -mean for G.
    """
    if mode not in GAN_MODES:
        raise ValueError(f"unknown gan_mode '{mode}' ({', '.join(GAN_MODES)})")
    return GAN_MODES[mode](prediction, real, for_discriminator)


# The loss scale of the phase being computed (fp16 with a grad scaler sets it): penalties on input gradients take
# them of the scaled output and unscale, as PyTorch's AMP recipe for gradient penalties does, so that small fp16
# gradients do not underflow to zero.
_GRAD_SCALE: contextvars.ContextVar[float] = contextvars.ContextVar("grad_scale", default=1.0)


@contextmanager
def penalty_scale(scale: float):
    token = _GRAD_SCALE.set(scale)
    try:
        yield
    finally:
        _GRAD_SCALE.reset(token)


def _input_gradient(discriminator: nn.Module, x: Tensor) -> Tensor:
    scale = _GRAD_SCALE.get()
    (grad,) = torch.autograd.grad(discriminator(x).sum() * scale, x, create_graph=True)
    return grad / scale


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor, constant: float = 1.0) -> Tensor:
    """WGAN-GP: (||∇D(x̂)|| - constant)² at random interpolates x̂ of real and fake (Gulrajani et al. 2017)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad = _input_gradient(discriminator, mixed)
    return ((grad.flatten(1).norm(2, dim=1) - constant) ** 2).mean()


def r1_penalty(discriminator: nn.Module, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): E ||∇ₓD(x)||² on real images; the caller weights it by γ/2."""
    grad = _input_gradient(discriminator, real.detach().requires_grad_(True))
    return grad.pow(2).flatten(1).sum(1).mean()


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


def l1_loss(output: Tensor, target: Tensor, beta: float = 0.0) -> Tensor:
    """Mean absolute error: pix2pix's reconstruction term and CycleGAN's cycle and identity terms. With ``beta`` > 0,
    smooth L1 (torch's ``smooth_l1_loss``): the same slope beyond ``beta``, but the corner at zero rounded into a
    parabola ``beta`` wide, whose gradient fades to zero as output meets target instead of staying at ±1."""
    return F.smooth_l1_loss(output, target, beta=beta) if beta > 0 else F.l1_loss(output, target)


def patch_nce_loss(query: Tensor, key: Tensor, temperature: float) -> Tensor:
    """PatchNCE (Park et al. 2020): each query patch must pick its own key patch among the image's other patches.

    ``query``, ``key``: (batch, patches, dim), L2-normalised. The positive of query i is key i of the same image;
    the negatives are the other keys of that image. Returns the mean cross-entropy over all query patches.
    """
    key = key.detach()
    logits = torch.bmm(query, key.transpose(1, 2)) / temperature  # (batch, patches, patches): diagonal = positives
    target = torch.arange(query.shape[1], device=query.device).expand(query.shape[0], -1)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())
