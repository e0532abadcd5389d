"""Pix2Pix (Isola et al. 2017): a conditional GAN on paired images, adversarial + λ_L1 · L1."""

from __future__ import annotations

import torch

from translate.losses import adversarial_loss, discriminator_terms, l1_loss
from translate.methods import Recipe, register_recipe
from translate.methods.image_pool import ImagePool
from translate.networks import create_discriminator, create_generator
from translate.networks.pretrained import generator_spec


@register_recipe("pix2pix")
class Pix2Pix(Recipe):
    generators = ("G",)
    discriminators = ("D",)

    def __init__(self, config):
        super().__init__(config)
        # The reference uses no pool for pix2pix (pool_size 0); honour the option if a user sets it.
        self.fake_pool = ImagePool(config.model.pool_size, config.train.seed)

    @property
    def directions(self):
        return {self.config.data.direction: "G"}

    def generator_spec(self, name):
        m = self.config.model
        return generator_spec(m.netG, m.ngf, m.norm, not m.no_dropout, m.input_nc, m.output_nc)

    def build(self):
        m = self.config.model
        init = {"init_type": m.init_type, "init_gain": m.init_gain}
        return {
            "G": create_generator(m.netG, input_nc=m.input_nc, output_nc=m.output_nc, ngf=m.ngf, norm=m.norm,
                                  use_dropout=not m.no_dropout, **init),
            # The conditional D judges the (input, output) pair.
            "D": create_discriminator(m.netD, input_nc=m.input_nc + m.output_nc, ndf=m.ndf, n_layers=m.n_layers_D,
                                      norm=m.norm, **init),
        }

    def generator_loss(self, nets, batch):
        m = self.config.model
        real_A, real_B = batch["A"], batch["B"]
        fake_B = nets["G"](real_A)
        prediction = nets["D"](torch.cat([real_A, fake_B], 1))
        terms = {
            "loss_G_GAN": adversarial_loss(prediction, True, m.gan_mode, for_discriminator=False),
            "loss_G_L1": m.lambda_L1 * l1_loss(fake_B, real_B),
        }
        return terms, {"fake_B": fake_B}

    def discriminator_loss(self, nets, batch, outputs):
        m = self.config.model
        real_AB = torch.cat([batch["A"], batch["B"]], 1)
        fake_AB = self.fake_pool.query(torch.cat([batch["A"], outputs["fake_B"].detach()], 1))
        return discriminator_terms(nets["D"], real_AB, fake_AB, m.gan_mode, m.lambda_gp)

    def visuals(self, batch, outputs):
        return [batch["A"], outputs["fake_B"], batch["B"]]

    def state_dict(self):
        return {"fake_pool": self.fake_pool.state_dict()}

    def load_state_dict(self, state):
        self.fake_pool.load_state_dict(state["fake_pool"])
