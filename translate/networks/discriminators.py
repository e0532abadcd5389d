"""Discriminators of the reference implementation: PatchGAN (``basic`` = 70×70, ``n_layers``) and ``pixel`` (1×1)."""

from __future__ import annotations

from torch import nn

from translate.networks import register_discriminator
from translate.networks.layers import conv_bias, norm_layer


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 convolutions, one stride-1, then a 1-channel map of real/fake logits."""

    def __init__(self, input_nc: int, ndf: int, n_layers: int, norm: str):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                make_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1×1 PatchGAN: classifies every pixel on its own."""

    def __init__(self, input_nc: int, ndf: int, norm: str):
        super().__init__()
        bias = conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_layer(norm)(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x):
        return self.net(x)


@register_discriminator("basic")
def basic(input_nc, ndf, n_layers, norm):
    return NLayerDiscriminator(input_nc, ndf, 3, norm)


@register_discriminator("n_layers")
def n_layers(input_nc, ndf, n_layers, norm):
    return NLayerDiscriminator(input_nc, ndf, n_layers, norm)


@register_discriminator("pixel")
def pixel(input_nc, ndf, n_layers, norm):
    return PixelDiscriminator(input_nc, ndf, norm)
