"""Generators of the reference implementation: ResNet (CycleGAN) and U-Net (pix2pix).

Layer order and module nesting follow the reference exactly, so its ``state_dict`` keys load unchanged. With
``upsample="resize_conv"`` every transposed convolution (but the U-Net's innermost, see there) becomes a
nearest-neighbour ×2 resize followed by a 3×3 convolution (Odena et al. 2016, "Deconvolution and Checkerboard
Artifacts"), at the same place in the module tree. With ``residual=True`` the generator starts as the identity and
learns a change to its input (``residual_output``), with the reference's keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from translate.networks import register_generator
from translate.networks.checkpointing import register_checkpoint_block
from translate.networks.layers import conv_bias, norm_layer

UPSAMPLE = ("transpose", "resize_conv")


class ResizeConv2d(nn.Conv2d):
    """×2 nearest-neighbour upsampling, then a 3×3 convolution: every output pixel sees the same number of input
    pixels, so no checkerboard pattern. One module in place of the transposed convolution, so the other keys stay."""

    upsamples = True  # for translate.networks.checkpointing

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 3, padding=1, bias=bias, padding_mode="reflect")

    def forward(self, x):
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


def check_residual(residual: bool, input_nc: int, output_nc: int) -> None:
    if residual and input_nc != output_nc:
        raise ValueError(f"model.residual needs as many output channels as input channels, not {input_nc} -> "
                         f"{output_nc}: a residual generator adds its change to the input; set model.residual=false")


def residual_forward(net: nn.Module, x):
    """``net.model(x)``, added to ``x`` by ``residual_output`` when ``net.residual``."""
    y = net.model(x)
    return residual_output(x, y) if net.residual else y


def up_conv(in_channels: int, out_channels: int, kernel_size: int, upsample: str, bias: bool = True,
            **transpose) -> nn.Module:
    """A ×2 upsampling convolution: the reference's ``ConvTranspose2d`` or a ``ResizeConv2d``."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2, bias=bias, **transpose)
    if upsample == "resize_conv":
        return ResizeConv2d(in_channels, out_channels, bias=bias)
    raise ValueError(f"unknown upsample {upsample!r} ({', '.join(UPSAMPLE)})")


def residual_output(x, r):
    """``tanh(atanh(x) + r)``: the input ``x`` changed by the last layer's ``r``, in place of the reference's
    ``tanh(r)``. The last layer starts at zero (``zero_start``), so at initialisation the generator returns its input
    (to 8 bits) and a short run starts from "do nothing" instead of from noise; training moves it only as far as
    the losses ask. The change is added before the tanh, so outputs stay in (-1, 1) with a smooth gradient
    everywhere (a clamp of ``x + r`` would give none at the ends)."""
    eps = 1e-3  # atanh(±1) is infinite; ±(1 - eps) maps back within 1/2000, below an 8-bit step
    x = x.clamp(eps - 1, 1 - eps)
    atanh = 0.5 * (torch.log1p(x) - torch.log1p(-x))  # torch.atanh has no ONNX export (opset 17-20)
    return torch.tanh(atanh + r)


def zero_start(layer: nn.Module) -> nn.Module:
    """Weights and bias at zero, kept so by ``init_weights`` (ControlNet's "zero convolution", Zhang et al. 2023):
    a residual generator's last layer, whose zero output leaves the input unchanged."""
    layer.starts_at_zero = True
    for param in layer.parameters():
        nn.init.zeros_(param)
    return layer


def last_layer(layer: nn.Module, residual: bool) -> list[nn.Module]:
    """A generator's last convolution and its output module: tanh (the reference), or, for a residual generator,
    the convolution started at zero and a pass-through (``residual_output`` then adds it to the input). Neither
    module has parameters, so the module tree and its keys stay the reference's."""
    return [zero_start(layer), nn.Identity()] if residual else [layer, nn.Tanh()]


@register_checkpoint_block
class ResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, use_dropout: bool):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, two stride-2 downsamplings, ``n_blocks`` residual blocks, two upsamplings, c7s1-output_nc, tanh."""

    def __init__(self, input_nc: int, output_nc: int, ngf: int, norm: str, use_dropout: bool, n_blocks: int,
                 upsample: str = "transpose", residual: bool = False):
        super().__init__()
        check_residual(residual, input_nc, output_nc)
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), make_norm(ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), make_norm(c * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, use_dropout) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [
                up_conv(c, c // 2, 3, upsample, bias, padding=1, output_padding=1),
                make_norm(c // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), *last_layer(nn.Conv2d(ngf, output_nc, 7), residual)]
        self.model = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x):
        return residual_forward(self, x)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down, the inner levels, up; its input is concatenated to its output (except outermost)."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, *, outermost=False, innermost=False,
                 norm="batch", use_dropout=False, upsample="transpose", residual=False):
        super().__init__()
        self.outermost = outermost
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        down_conv = nn.Conv2d(input_nc or outer_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        # In-place like the reference: the skip connection then carries the leaky-ReLU'd input, which its
        # released checkpoints were trained with.
        down_relu, up_relu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            up = [up_relu, *last_layer(up_conv(inner_nc * 2, outer_nc, 4, upsample, padding=1), residual)]
            layers = [down_conv, submodule, *up]
        elif innermost:
            # Always transposed here: at the bottleneck the input is a single pixel (at the network's minimum size),
            # whose ×2 resize is flat, so a resize + convolution would give a constant 2×2 map that batch or instance
            # norm then zeroes. A transposed convolution of one pixel places each tap once: no checkerboard to avoid.
            up = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [down_relu, down_conv, up_relu, up, make_norm(outer_nc)]
        else:
            up = up_conv(inner_nc * 2, outer_nc, 4, upsample, bias, padding=1)
            layers = [down_relu, down_conv, make_norm(inner_nc), submodule, up_relu, up, make_norm(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` halvings: a 2**num_downs input reaches 1×1 at the bottleneck."""

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int, norm: str, use_dropout: bool,
                 upsample: str = "transpose", residual: bool = False):
        super().__init__()
        check_residual(residual, input_nc, output_nc)
        level = {"norm": norm, "upsample": upsample}
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **level)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout, **level)
        for mult in (4, 2, 1):
            block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block, **level)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc, block, outermost=True, residual=residual,
                                             **level)
        self.residual = residual

    def forward(self, x):
        return residual_forward(self, x)


@register_generator("resnet_9blocks", stride=4, min_size=8)
def resnet_9blocks(input_nc, output_nc, ngf, norm, use_dropout, upsample="transpose", residual=False):
    return ResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks=9, upsample=upsample,
                           residual=residual)


@register_generator("resnet_6blocks", stride=4, min_size=8)
def resnet_6blocks(input_nc, output_nc, ngf, norm, use_dropout, upsample="transpose", residual=False):
    return ResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks=6, upsample=upsample,
                           residual=residual)


@register_generator("unet_256", stride=256)
def unet_256(input_nc, output_nc, ngf, norm, use_dropout, upsample="transpose", residual=False):
    return UnetGenerator(input_nc, output_nc, 8, ngf, norm, use_dropout, upsample=upsample, residual=residual)


@register_generator("unet_128", stride=128)
def unet_128(input_nc, output_nc, ngf, norm, use_dropout, upsample="transpose", residual=False):
    return UnetGenerator(input_nc, output_nc, 7, ngf, norm, use_dropout, upsample=upsample, residual=residual)
