"""DiffAugment: the paper's colour/translation/cutout maths, differentiable, channel groups, seeded per step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from translate.diffaugment import attach, parse_policy

POLICY = ("color", "translation", "cutout")


class Recorder(nn.Module):
    """Stands in for a discriminator: keeps what it is fed."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x, *rest):
        self.seen.append(x)
        return x.mean((1, 2, 3))


def augmented(x, policy=POLICY, seed=0, step=0, calls=1):
    d = Recorder()
    handle = attach([d], policy, seed)
    handle.set_step(step)
    for _ in range(calls):
        d(x)
    return d.seen[-1]


def images(n=2, c=3, h=32, w=32, seed=0):
    # Strictly inside (-1, 1) and never 0, so that zeros in an output can only come from translation or cutout.
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=g) * 1.8 - 0.9).clamp_min(0.01) * torch.where(
        torch.rand(n, c, h, w, generator=g) < 0.5, -1, 1)


def test_parse_policy():
    assert parse_policy("color,translation,cutout") == POLICY
    assert parse_policy(" color , cutout ") == ("color", "cutout")
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="unknown colour, zoom; known: color, translation, cutout"):
        parse_policy("colour,translation,zoom")


def test_color_is_the_papers_brightness_saturation_contrast():
    # Brightness b, saturation s around each pixel's grey g, contrast c around the image mean m (all per image):
    #   out = c·s·(x − g) + c·(g − m) + m + b.  Fit (c·s, c, b) per image by least squares: the fit must be exact
    # and the factors within the paper's ranges.
    x = images(n=4, h=16, w=16)
    out = augmented(x, ("color",))
    for xi, oi in zip(x, out):
        g = xi.mean(0, keepdim=True).expand_as(xi)
        m = xi.mean()
        basis = torch.stack([(xi - g).flatten(), (g - m).flatten(), torch.ones(xi.numel())], 1).double()
        coef, *_ = torch.linalg.lstsq(basis, (oi - m).flatten().double().unsqueeze(1))
        cs, c, b = coef.flatten().tolist()
        assert torch.allclose(basis @ coef, (oi - m).flatten().double().unsqueeze(1), atol=1e-5)
        assert 0.5 <= c <= 1.5 and 0 <= cs / c <= 2 and -0.5 <= b <= 0.5


def test_translation_is_a_whole_pixel_shift_up_to_an_eighth_zero_filled():
    x = images(n=3, h=32, w=40)
    out = augmented(x, ("translation",), step=5)
    for xi, oi in zip(x, out):
        matches = []
        for dy in range(-4, 5):
            for dx in range(-5, 6):
                shifted = torch.zeros_like(xi)
                ys, yd = (slice(0, 32 - dy), slice(dy, 32)) if dy >= 0 else (slice(-dy, 32), slice(0, 32 + dy))
                xs, xd = (slice(0, 40 - dx), slice(dx, 40)) if dx >= 0 else (slice(-dx, 40), slice(0, 40 + dx))
                shifted[:, yd, xd] = xi[:, ys, xs]
                if torch.equal(shifted, oi):
                    matches.append((dy, dx))
        assert len(matches) == 1


def test_cutout_zeroes_one_square_of_half_the_side():
    x = images(n=3)
    out = augmented(x, ("cutout",))
    for xi, oi in zip(x, out):
        zero = (oi == 0).all(0)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert len(rows) == len(cols) == 16 and zero.sum() == 16 * 16
        assert zero[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        assert torch.equal(oi[:, ~zero], xi[:, ~zero])


@pytest.mark.parametrize("channels", [1, 3, 4, 6])
def test_any_channel_count_keeps_shape_and_is_differentiable(channels):
    x = images(n=2, c=channels, h=24, w=20).requires_grad_(True)
    out = augmented(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("policy", [("color",), POLICY])
def test_gradient_matches_finite_differences(policy):
    # The same seed and step draw the same parameters for x ± eps·v, so the augmentation is a fixed differentiable
    # map whose directional derivative autograd must reproduce.
    x = images().double().requires_grad_(True)
    weights, direction = torch.randn(x.shape, dtype=torch.float64), torch.randn(x.shape, dtype=torch.float64)
    (augmented(x, policy) * weights).sum().backward()
    eps = 1e-4
    plus, minus = (augmented((x + s * eps * direction).detach(), policy) for s in (1, -1))
    numeric = ((plus - minus) * weights).sum() / (2 * eps)
    assert torch.allclose((x.grad * direction).sum(), numeric, rtol=1e-5)


def test_channel_groups_get_the_same_transform():
    # pix2pix's D sees (input, output): two RGB groups that must stay aligned and be recoloured alike, each around
    # its own statistics: the pair's augmentation equals each half's own with the same draws (same seed and step).
    a, b = images(n=3, seed=1), images(n=3, seed=2)
    out = augmented(torch.cat([a, b], 1))
    assert torch.allclose(out[:, :3], augmented(a), atol=1e-6)
    assert torch.allclose(out[:, 3:], augmented(b), atol=1e-6)
    assert not torch.equal(out[0], out[1])  # each image of the batch draws its own parameters


def test_same_seed_and_step_same_output_whatever_came_before():
    x = images()
    first = augmented(x, step=7, calls=2)
    d = Recorder()
    handle = attach([d], POLICY, 0)
    for step in range(3):  # an uninterrupted run that reaches step 7 after other steps
        handle.set_step(step)
        d(x)
    handle.set_step(7)
    d(x)
    d(x)
    assert torch.equal(d.seen[-1], first)
    assert not torch.equal(augmented(x, step=8, calls=2), first)
    assert not torch.equal(augmented(x, seed=1, step=7, calls=2), first)
    assert not torch.equal(d.seen[-1], d.seen[-2])  # two calls in one step draw different parameters


def test_global_random_stream_is_untouched_and_remove_detaches():
    x = images()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    d = Recorder()
    handle = attach([d], POLICY, 0)
    d(x)
    assert torch.equal(torch.rand(3), expected)
    handle.remove()
    d(x)
    assert d.seen[-1] is x


def test_every_discriminator_is_hooked_and_only_the_first_input_changes():
    d1, d2 = Recorder(), Recorder()
    attach([d1, d2], ("cutout",), 0).set_step(0)
    x, extra = images(), torch.ones(2)
    d1(x, extra)
    d2(x)
    assert not torch.equal(d1.seen[-1], x) and not torch.equal(d2.seen[-1], x)
