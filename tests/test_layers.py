"""The discriminator layers any recipe can switch on: minibatch stddev and spectral norm, on cases worked by hand."""

import pytest
import torch
from torch import nn

from translate.networks import create_discriminator
from translate.networks.layers import MinibatchStdDev, add_minibatch_stddev, apply_spectral_norm


def test_minibatch_stddev_one_group_by_hand():
    # Two samples, one channel, two pixels: pixel 0 holds 0 and 2 (std 1), pixel 1 holds 2 and 2 (std 0, i.e.
    # sqrt(eps) = 1e-4); their mean 0.50005 is appended to both samples.
    x = torch.tensor([[[[0.0, 2.0]]], [[[2.0, 2.0]]]])
    y = MinibatchStdDev(group_size=4)(x)
    assert y.shape == (2, 2, 1, 2)
    assert torch.equal(y[:, :1], x)
    torch.testing.assert_close(y[:, 1], torch.full((2, 1, 2), 0.50005), rtol=0, atol=1e-7)


def test_minibatch_stddev_groups_are_strided():
    # Batch 4, groups of 2: sample i joins group i mod 2, so {0, 2} (values 0, 2: std 1) and {1, 3} (0, 0: 1e-4).
    x = torch.tensor([0.0, 0.0, 2.0, 0.0]).view(4, 1, 1, 1)
    y = MinibatchStdDev(group_size=2)(x)[:, 1].flatten()
    torch.testing.assert_close(y, torch.tensor([1.0, 1e-4, 1.0, 1e-4]), rtol=0, atol=1e-7)


def test_minibatch_stddev_group_size_divides_any_batch():
    # Batch 3 with group size 4: one group of 3; batch 6: groups of 3 (the largest divisor of 6 up to 4).
    x = torch.tensor([0.0, 3.0, 6.0]).view(3, 1, 1, 1)  # population std of {0, 3, 6} = sqrt(6)
    torch.testing.assert_close(MinibatchStdDev(4)(x)[:, 1].flatten(), torch.full((3,), 6**0.5))
    x6 = torch.tensor([0.0, 0.0, 0.0, 3.0, 0.0, 0.0]).view(6, 1, 1, 1)  # groups {0, 2, 4}: 0 and {1, 3, 5}: sqrt(2)
    expected = torch.tensor([1e-4, 2**0.5] * 3)
    torch.testing.assert_close(MinibatchStdDev(4)(x6)[:, 1].flatten(), expected, rtol=1e-6, atol=1e-7)


def test_add_minibatch_stddev_keeps_the_discriminator():
    torch.manual_seed(0)
    net = create_discriminator("basic", input_nc=3, ndf=4, norm="batch").eval()
    x = torch.rand(4, 3, 32, 32)
    before = net(x)
    add_minibatch_stddev(net)
    # Zero weights on the new channel: the same outputs until D learns to use it.
    torch.testing.assert_close(net(x), before, rtol=0, atol=1e-7)  # 1e-5 apart with N(0, 0.02) weights there
    last = net.model[-1]
    assert isinstance(last[0], MinibatchStdDev) and last[1].in_channels == 4 * 8 + 1
    # Identical samples (a collapsed G) give a stddev feature of sqrt(eps); uniform noise about 0.29.
    assert last[0](torch.ones(4, 2, 3, 3))[:, -1].max() < 1e-3
    assert last[0](torch.rand(4, 2, 3, 3))[:, -1].min() > 0.1


def test_spectral_norm_by_hand():
    # A 1x1 conv with weight diag(3, 1) has largest singular value 3: normalised, diag(1, 1/3).
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.diag(torch.tensor([3.0, 1.0])).view(2, 2, 1, 1))
    apply_spectral_norm(nn.Sequential(conv))
    torch.testing.assert_close(conv.weight.view(2, 2), torch.diag(torch.tensor([1.0, 1 / 3])), rtol=0, atol=1e-5)
    # A 3x3 conv to one channel with all weights 1: the 1x9 matrix has norm 3, so every weight becomes 1/3.
    conv3 = nn.Conv2d(1, 1, 3, bias=False)
    nn.init.ones_(conv3.weight)
    apply_spectral_norm(conv3)
    torch.testing.assert_close(conv3.weight, torch.full((1, 1, 3, 3), 1 / 3), rtol=0, atol=1e-5)


@pytest.mark.parametrize("stddev", [False, True])
def test_spectral_norm_covers_every_convolution(stddev):
    net = create_discriminator("basic", input_nc=3, ndf=4, norm="batch")
    if stddev:
        add_minibatch_stddev(net)
    apply_spectral_norm(net)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(hasattr(m, "parametrizations") for m in convs)
    y = net(torch.rand(2, 3, 32, 32))
    y.mean().backward()
    assert all(m.parametrizations.weight.original.grad is not None for m in convs)
