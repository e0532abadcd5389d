"""The DCGAN networks (Radford et al. 2016) as in pytorch/examples' dcgan: a transposed-conv generator from a latent
vector and a strided-conv discriminator, at any side of the form base · 2^k with base 4..7 (64, 32, 28, ...).

Module names follow pytorch/examples (``main``), so its checkpoints load; its D ends in a sigmoid, ours gives the
logit (the losses take logits).
"""

from __future__ import annotations

from torch import Tensor, nn

from translate.networks import register_generator
from translate.networks.layers import conv_bias, norm_layer


def plan(image_size: int) -> tuple[int, int]:
    """``image_size`` → (base, k): the first layer makes base × base, then k doublings (64 → 4, 4; 28 → 7, 2)."""
    k = 0
    while image_size % 2 ** (k + 1) == 0 and image_size // 2 ** (k + 1) >= 4:
        k += 1
    base = image_size // 2**k
    if k == 0 or not 4 <= base <= 7:
        raise ValueError(f"DCGAN image_size {image_size} is not 4..7 times a power of two (e.g. 28, 32, 64)")
    return base, k


class DCGANGenerator(nn.Module):
    """z (N, nz) → ConvT(base×base) → k-1 × [ConvT 4/2, norm, ReLU] → ConvT 4/2 → tanh, halving the width each
    doubling down to ``ngf`` (at 64²: ngf·8 at 4², as the paper's Figure 1)."""

    def __init__(self, nz: int = 100, ngf: int = 64, output_nc: int = 3, image_size: int = 64, norm: str = "batch"):
        super().__init__()
        self.nz, self.output_nc, self.image_size = nz, output_nc, image_size
        base, k = plan(image_size)
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        c = ngf * 2 ** (k - 1)
        layers = [nn.ConvTranspose2d(nz, c, base, 1, 0, bias=bias), make_norm(c), nn.ReLU(True)]
        for _ in range(k - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=bias), make_norm(c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ConvTranspose2d(c, output_nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    @property
    def latent_key(self) -> str:
        """The state-dict key of the weight that reads the latent vector (its first dimension is nz)."""
        return "main.0.weight"

    def forward(self, z: Tensor) -> Tensor:
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Conv 4/2 + LeakyReLU(0.2) (no norm on the first layer, as in the paper), k-1 × [Conv 4/2, norm, LeakyReLU],
    then a base×base convolution to one logit per image; no pooling, no fully connected layer."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, image_size: int = 64, norm: str = "batch"):
        super().__init__()
        base, k = plan(image_size)
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers = [nn.Conv2d(input_nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        c = ndf
        for _ in range(k - 1):
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=bias), make_norm(c * 2), nn.LeakyReLU(0.2, True)]
            c *= 2
        layers.append(nn.Conv2d(c, 1, base, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


@register_generator("dcgan", stride=1, kind="noise")
def dcgan(nz: int = 100, ngf: int = 64, output_nc: int = 3, image_size: int = 64, norm: str = "batch"):
    return DCGANGenerator(nz, ngf, output_nc, image_size, norm)
