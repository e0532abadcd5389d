"""Pix2Pix (Isola et al. 2017): a conditional GAN on paired images, adversarial + λ_L1 · L1."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from translate.losses import l1_loss
from translate.methods import Recipe, Role, build_discriminator, build_generator, image_spec, register_recipe
from translate.methods.image_pool import ImagePool


@dataclass
class Pix2PixOptions:
    lambda_L1: float = 100.0
    pool_size: int = 0  # the reference uses no image pool for pix2pix


@register_recipe("pix2pix")
class Pix2Pix(Recipe):
    options = Pix2PixOptions
    # The reference's pix2pix defaults (train.py --model pix2pix).
    defaults = {"model": {"netG": "unet_256", "norm": "batch", "gan_mode": "vanilla"},
                "data": {"dataset_mode": "aligned"}}
    networks = {"G": Role.exported, "D": Role.discriminator}
    groups = {"G": ("G",), "D": ("D",)}
    temporal_term = True

    @classmethod
    def check(cls, config):
        return super().check(config) + cls.out_of_range(config, zero_or_more=("lambda_L1", "pool_size"))

    def __init__(self, config):
        super().__init__(config)
        self.fake_pool = ImagePool(self.opt.pool_size, config.train.seed)

    def export_spec(self, name):
        m = self.config.model
        return image_spec(self.config, m.input_nc, m.output_nc)

    def build(self):
        m = self.config.model
        # The conditional D judges the (input, output) pair.
        return {"G": build_generator(self.config, m.input_nc, m.output_nc),
                "D": build_discriminator(self.config, m.input_nc + m.output_nc)}

    def generator_loss(self, nets, batch, ctx):
        real_A, real_B = batch["A"], batch["B"]
        fake_B = ctx["fake_B"] = nets["G"](real_A)
        return {"loss_G_GAN": self.adversarial(nets["D"](torch.cat([real_A, fake_B], 1))),
                "loss_G_L1": self.opt.lambda_L1 * l1_loss(fake_B, real_B),
                **self.temporal(nets["G"], real_A, fake_B)}

    def discriminator_loss(self, nets, batch, ctx):
        fake_AB = self.fake_pool.query(torch.cat([batch["A"], ctx["fake_B"].detach()], 1))
        return self.judge(nets, "D", self.real_images(batch)["D"], fake_AB)

    def real_images(self, batch):
        return {"D": torch.cat([batch["A"], batch["B"]], 1)}

    def visuals(self, batch, ctx):
        return [batch["A"], ctx["fake_B"], batch["B"]]

    def state_dict(self):
        return {"fake_pool": self.fake_pool.state_dict()}

    def load_state_dict(self, state):
        self.fake_pool.load_state_dict(state["fake_pool"])
