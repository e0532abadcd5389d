"""Loss functions against values worked by hand on tiny tensors: every gan_mode on both sides, D's terms, the
gradient penalty (where D's input gradient is known in closed form) and L1."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from translate.losses import adversarial_loss, discriminator_terms, gradient_penalty, l1_loss

# D's raw outputs on a tiny batch: positive, negative, zero and a fraction, so that every branch of every loss
# (relu kinks, log-sigmoid tails) is exercised.
PREDICTION = torch.tensor([[[[2.0, -1.0], [0.0, 0.5]]]])
VALUES = (2.0, -1.0, 0.0, 0.5)


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def softplus(v: float) -> float:
    return math.log(1 + math.exp(v))


# (mode, real, for_discriminator) → the loss by its textbook formula, evaluated with math on VALUES.
HAND = {
    # -log sigmoid(p) for "real", -log(1 - sigmoid(p)) for "fake"; the generator uses the real target.
    ("vanilla", True, True): mean(softplus(-v) for v in VALUES),
    ("vanilla", False, True): mean(softplus(v) for v in VALUES),
    ("vanilla", True, False): mean(softplus(-v) for v in VALUES),
    ("lsgan", True, True): mean((v - 1) ** 2 for v in VALUES),
    ("lsgan", False, True): mean(v**2 for v in VALUES),
    ("lsgan", True, False): mean((v - 1) ** 2 for v in VALUES),
    ("wgangp", True, True): -mean(VALUES),
    ("wgangp", False, True): mean(VALUES),
    ("wgangp", True, False): -mean(VALUES),
    ("hinge", True, True): mean(max(0.0, 1 - v) for v in VALUES),
    ("hinge", False, True): mean(max(0.0, 1 + v) for v in VALUES),
    ("hinge", True, False): -mean(VALUES),
}


def test_hand_values_are_what_they_claim():
    # Spelled out once, so that a typo in the table above cannot hide a wrong expectation.
    assert HAND[("lsgan", True, True)] == pytest.approx((1 + 4 + 1 + 0.25) / 4)
    assert HAND[("hinge", True, True)] == pytest.approx((0 + 2 + 1 + 0.5) / 4)
    assert HAND[("hinge", False, True)] == pytest.approx((3 + 0 + 1 + 1.5) / 4)
    assert HAND[("vanilla", True, True)] == pytest.approx(0.6518535, abs=1e-6)


@pytest.mark.parametrize(("mode", "real", "for_discriminator"), list(HAND), ids=lambda v: str(v))
def test_adversarial_loss_matches_the_formula(mode, real, for_discriminator):
    loss = adversarial_loss(PREDICTION, real, mode, for_discriminator=for_discriminator)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(HAND[(mode, real, for_discriminator)], abs=1e-6)


def test_unknown_gan_mode_is_named():
    with pytest.raises(ValueError, match="unknown gan_mode 'wgan'"):
        adversarial_loss(PREDICTION, True, "wgan")


class Linear(nn.Module):
    """D(x) = w·x + b over the flattened image: its gradient with respect to x is w everywhere."""

    def __init__(self, weight: list[float], bias: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))
        self.bias = nn.Parameter(torch.tensor(bias))

    def forward(self, x):
        return (x.flatten(1) * self.weight).sum(1) + self.bias


class HalfSquare(nn.Module):
    """D(x) = ½‖x‖² per image: its gradient with respect to x is x itself."""

    def forward(self, x):
        return 0.5 * x.flatten(1).pow(2).sum(1)


def test_gradient_penalty_of_a_linear_critic():
    # ‖∇D‖ = ‖w‖ = 5 at every interpolate: (5 - 1)² = 16, whatever the random mixing.
    d = Linear([3.0, 0.0, 0.0, 4.0], bias=0.7)
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    penalty = gradient_penalty(d, real, fake)
    assert penalty.item() == pytest.approx(16.0, rel=1e-6)
    assert gradient_penalty(d, real, fake, constant=5.0).item() == pytest.approx(0.0, abs=1e-10)
    # It is a loss on D: differentiable in D's weights. d/dw (‖w‖ - 1)² = 2 (‖w‖ - 1) w / ‖w‖ = 1.6 w.
    penalty.backward()
    torch.testing.assert_close(d.weight.grad, 1.6 * torch.tensor([3.0, 0.0, 0.0, 4.0]))
    assert d.bias.grad is None or d.bias.grad.abs().item() < 1e-12  # the bias does not change the gradient


def test_gradient_penalty_is_per_image_then_averaged():
    # real = fake: every interpolate is the image itself, ∇D = x, so the penalty is mean_i (‖x_i‖ - 1)².
    x = torch.zeros(3, 1, 2, 2)
    x.view(3, -1)[:, 0] = torch.tensor([3.0, 0.5, 2.0])  # norms 3, 0.5 and 2
    expected = ((3 - 1) ** 2 + (0.5 - 1) ** 2 + (2 - 1) ** 2) / 3
    assert gradient_penalty(HalfSquare(), x, x.clone()).item() == pytest.approx(expected, rel=1e-6)


def test_gradient_penalty_mixes_real_and_fake_with_one_uniform_weight_per_image():
    # fake = 0: the interpolate is αx with ‖∇D‖ = 3α. With α ~ U(0, 1) drawn per image,
    # E[(3α - 1)²] = ∫₀¹ (3α - 1)² dα = 1 (standard error over 4000 images: 0.017).
    torch.manual_seed(0)
    real = torch.full((4000, 1, 3, 3), 1.0)  # ‖x‖ = 3
    penalty = gradient_penalty(HalfSquare(), real, torch.zeros_like(real))
    assert penalty.item() == pytest.approx(1.0, abs=0.07)
    # Real and fake enter symmetrically with α ~ U(0, 1); at α = ½ the interpolate is their midpoint.
    ones = torch.full((2, 1, 1, 4), 1.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "rand", lambda *shape, **kw: torch.full(shape, 0.5, **kw))
        midpoint = gradient_penalty(HalfSquare(), 3 * ones, ones).item()
    assert midpoint == pytest.approx((4.0 - 1) ** 2)  # midpoint 2·1 in 4 entries: ‖∇D‖ = 4


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge"])
def test_discriminator_terms_are_half_of_each_side(mode):
    d = Linear([1.0, -2.0])
    real, fake = torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([[0.0, 1.0], [2.0, 0.25]])
    # D(real) = 1, -0.5; D(fake) = -2, 1.5 (w·x by hand)
    p_real, p_fake = (1.0, -0.5), (-2.0, 1.5)
    terms = discriminator_terms(d, real.view(2, 1, 1, 2), fake.view(2, 1, 1, 2), mode, lambda_gp=10.0, name="D_B")
    assert set(terms) == {"loss_D_B_real", "loss_D_B_fake"}
    formulas = {
        "vanilla": (lambda v: softplus(-v), lambda v: softplus(v)),
        "lsgan": (lambda v: (v - 1) ** 2, lambda v: v**2),
        "hinge": (lambda v: max(0.0, 1 - v), lambda v: max(0.0, 1 + v)),
    }[mode]
    assert terms["loss_D_B_real"].item() == pytest.approx(0.5 * mean(map(formulas[0], p_real)), abs=1e-6)
    assert terms["loss_D_B_fake"].item() == pytest.approx(0.5 * mean(map(formulas[1], p_fake)), abs=1e-6)


def test_discriminator_terms_wgangp_adds_the_weighted_penalty():
    d = Linear([0.0, 3.0, 4.0, 0.0])  # ‖w‖ = 5: penalty 16 at any interpolate
    real, fake = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)  # D(real) = 7, D(fake) = 0
    terms = discriminator_terms(d, real, fake, "wgangp", lambda_gp=10.0)
    assert set(terms) == {"loss_D_real", "loss_D_fake", "loss_D_gp"}
    assert terms["loss_D_real"].item() == pytest.approx(-0.5 * 7)
    assert terms["loss_D_fake"].item() == pytest.approx(0.0)
    assert terms["loss_D_gp"].item() == pytest.approx(10.0 * 16)


def test_l1_loss_is_the_mean_absolute_error():
    output = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    target = torch.tensor([[0.0, 1.0], [2.0, -0.25]])
    assert l1_loss(output, target).item() == pytest.approx((0.5 + 2.0 + 0.0 + 0.25) / 4)


def test_smooth_l1_rounds_the_corner_and_keeps_the_slope():
    output = torch.tensor([[0.5, -1.0], [2.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 1.0], [2.0, -0.25]])
    loss = l1_loss(output, target, beta=0.8)  # not torch's default beta (1)
    # |d| < beta: d² / (2 beta); beyond: |d| - beta / 2. Differences 0.5, -2, 0, 0.25.
    assert loss.item() == pytest.approx((0.25 / 1.6 + 1.6 + 0.0 + 0.0625 / 1.6) / 4)
    loss.backward()
    # d / beta inside the parabola (fading to 0 at d = 0), L1's ±1 beyond it; /4 for the mean.
    assert output.grad.flatten().tolist() == pytest.approx([0.5 / 0.8 / 4, -1 / 4, 0.0, 0.25 / 0.8 / 4])
