"""×4 super-resolution with a GAN (SRGAN, Ledig et al. 2017; ESRGAN, Wang et al. 2018), on one folder of high-res
images (``data.dataset_mode=single``): each high-res crop is paired on the fly with its ×4 downscale.

The low-res input is made by bicubic downscaling with antialiasing (``F.interpolate(mode="bicubic",
antialias=True)``: PIL's and MATLAB's ``imresize`` kernel, the one SR benchmarks use), clipped to the image range
as a saved file would be. G (``sr_resnet_x4``) is trained with L1 to the high-res crop plus ESRGAN's adversarial
weight 5e-3 (the papers' VGG perceptual loss is left out: its ImageNet weights ship in no package installable here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from translate.losses import l1_loss
from translate.methods import Recipe, Role, build_discriminator, register_recipe
from translate.networks import GENERATORS, create_generator

SCALE = 4


@dataclass
class SROptions:
    n_blocks: int = 16  # residual blocks of G (SRResNet's 16)
    lambda_L1: float = 1.0
    lambda_GAN: float = 0.005  # ESRGAN's adversarial weight


def downscale(hr: Tensor) -> Tensor:
    """High-res (N, C, H, W) in [-1, 1], sides multiples of 4 → its ×4 bicubic, antialiased downscale."""
    return F.interpolate(hr, scale_factor=1 / SCALE, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def upscale_bicubic(lr: Tensor) -> Tensor:
    """The baseline every SR model is compared with: plain bicubic ×4."""
    return F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False).clamp(-1, 1)


@register_recipe("sr")
class SuperResolution(Recipe):
    options = SROptions
    # ESRGAN's training set-up: 128² high-res crops (32² inputs), batch 16, Adam 1e-4 with β1 0.9; PatchGAN D with
    # batch norm (SRGAN's D has it too) and the original GAN loss.
    defaults = {
        "model": {"netG": "sr_resnet_x4", "netD": "basic", "norm": "batch", "gan_mode": "vanilla"},
        "data": {"dataset_mode": "single", "preprocess": "crop", "load_size": 128, "crop_size": 128,
                 "batch_size": 16},
        "train": {"lr": 0.0001, "beta1": 0.9, "beta2": 0.999, "n_epochs": 100, "n_epochs_decay": 100},
    }
    networks = {"G": Role.exported, "D": Role.discriminator}
    groups = {"G": ("G",), "D": ("D",)}
    temporal_term = True

    @classmethod
    def check(cls, config):
        m = config.model
        problems = super().check(config) + cls.out_of_range(
            config, zero_or_more=("n_blocks", "lambda_L1", "lambda_GAN"))
        if m.residual:
            problems.append("model.residual=true: the sr generator already adds its output to a bicubic upscale of "
                            "its input; leave model.residual false")
        if m.netG in GENERATORS and GENERATORS[m.netG].scale != SCALE:
            problems.append(f"model.netG={m.netG} does not upscale ×{SCALE} (registered scale "
                            f"{GENERATORS[m.netG].scale}); use sr_resnet_x4")
        return problems

    def export_spec(self, name):
        m = self.config.model
        return {"netG": m.netG, "input_nc": m.input_nc, "output_nc": m.output_nc, "ngf": m.ngf,
                "n_blocks": self.opt.n_blocks}

    def build(self):
        m = self.config.model
        spec = {k: v for k, v in self.export_spec("G").items() if k != "netG"}
        return {"G": create_generator(m.netG, **spec, init_type=m.init_type, init_gain=m.init_gain),
                "D": build_discriminator(self.config, m.output_nc)}

    @staticmethod
    def pair(batch: dict) -> tuple[Tensor, Tensor]:
        """(low-res input, high-res target) of a batch of high-res crops, cut to multiples of 4 first."""
        hr = batch["A"]
        hr = hr[..., : hr.shape[-2] // SCALE * SCALE, : hr.shape[-1] // SCALE * SCALE]
        return downscale(hr), hr

    def generator_loss(self, nets, batch, ctx):
        lr, hr = self.pair(batch)
        fake = nets["G"](lr)
        ctx.update(lr=lr, hr=hr, fake=fake)
        return {"loss_G_L1": self.opt.lambda_L1 * l1_loss(fake, hr),
                "loss_G_GAN": self.opt.lambda_GAN * self.adversarial(nets["D"](fake)),
                **self.temporal(nets["G"], lr, fake, scale=SCALE)}

    def discriminator_loss(self, nets, batch, ctx):
        return self.judge(nets, "D", ctx["hr"], ctx["fake"])

    def real_images(self, batch):
        return {"D": self.pair(batch)[1]}

    def visuals(self, batch, ctx):
        return [upscale_bicubic(ctx["lr"]), ctx["fake"], ctx["hr"]]
