"""A ×4 super-resolution generator: SRResNet's layout (Ledig et al. 2017) without batch norm, as EDSR and ESRGAN
found better, with two PixelShuffle ×2 stages, added to a bicubic upscaling of the input. Any input size works.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from translate.networks import register_generator
from translate.networks.checkpointing import register_checkpoint_block


@register_checkpoint_block
class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2, True),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """conv → ``n_blocks`` residual blocks → conv (+ the first conv's output) → 2 × [conv to 4·ngf, PixelShuffle ×2,
    LeakyReLU] → conv, LeakyReLU, conv; the result is added to the bicubic ×4 upscaling of the input, so a network
    whose last weights are near zero (as initialised) starts as bicubic and learns the missing detail."""

    scale = 4

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 16):
        super().__init__()
        if input_nc != output_nc:
            raise ValueError(f"super-resolution keeps the channels: input_nc {input_nc} != output_nc {output_nc}")
        self.head = nn.Conv2d(input_nc, ngf, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(ngf) for _ in range(n_blocks)], nn.Conv2d(ngf, ngf, 3, padding=1))
        up = []
        for _ in range(2):
            up += [nn.Conv2d(ngf, ngf * 4, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2, True)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Sequential(nn.Conv2d(ngf, ngf, 3, padding=1), nn.LeakyReLU(0.2, True),
                                  nn.Conv2d(ngf, output_nc, 3, padding=1))
        # Input pixels an output pixel depends on, per side: 3×3 convs add 2 at the input's resolution (head, two per
        # block, the body's last, the first upsampling conv), 1 at ×2 and 1/2 at ×4 (the tail's two).
        self.receptive_field = 3 + 4 * n_blocks + 2 + 2 + 1 + 1

    def forward(self, x: Tensor) -> Tensor:
        feat = self.head(x)
        residual = self.tail(self.upsample(feat + self.body(feat)))
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False) + residual


@register_generator("sr_resnet_x4", stride=1, scale=4,
                    defaults={"input_nc": 3, "output_nc": 3, "ngf": 64, "n_blocks": 16})
def sr_resnet_x4(input_nc: int, output_nc: int, ngf: int, n_blocks: int):
    return SRResNet(input_nc, output_nc, ngf, n_blocks)
