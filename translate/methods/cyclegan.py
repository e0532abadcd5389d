"""CycleGAN (Zhu et al. 2017): two generators and two discriminators on unpaired images, with cycle-consistency
and identity losses and a pool of past fakes per discriminator.

Paper names: G_A: A→B, G_B: B→A; D_A judges domain B (real_B vs G_A's fakes), D_B judges domain A.
"""

from __future__ import annotations

from translate.losses import adversarial_loss, discriminator_terms, l1_loss
from translate.methods import Recipe, register_recipe
from translate.methods.image_pool import ImagePool
from translate.networks import create_discriminator, create_generator
from translate.networks.pretrained import generator_spec


@register_recipe("cyclegan")
class CycleGAN(Recipe):
    generators = ("G_A", "G_B")
    discriminators = ("D_A", "D_B")

    def __init__(self, config):
        super().__init__(config)
        m, seed = config.model, config.train.seed
        self.fake_A_pool = ImagePool(m.pool_size, seed)
        self.fake_B_pool = ImagePool(m.pool_size, seed + 1)

    @property
    def directions(self):
        # With data.direction=BtoA the data swaps the folders, so G_A learns the folders' B→A.
        if self.config.data.direction == "BtoA":
            return {"BtoA": "G_A", "AtoB": "G_B"}
        return {"AtoB": "G_A", "BtoA": "G_B"}

    def generator_spec(self, name):
        m = self.config.model
        nc_in, nc_out = (m.input_nc, m.output_nc) if name == "G_A" else (m.output_nc, m.input_nc)
        return generator_spec(m.netG, m.ngf, m.norm, not m.no_dropout, nc_in, nc_out)

    def build(self):
        m = self.config.model
        init = {"init_type": m.init_type, "init_gain": m.init_gain}

        def generator(nc_in, nc_out):
            return create_generator(m.netG, input_nc=nc_in, output_nc=nc_out, ngf=m.ngf, norm=m.norm,
                                    use_dropout=not m.no_dropout, **init)

        def discriminator(nc):
            return create_discriminator(m.netD, input_nc=nc, ndf=m.ndf, n_layers=m.n_layers_D, norm=m.norm, **init)

        return {
            "G_A": generator(m.input_nc, m.output_nc),
            "G_B": generator(m.output_nc, m.input_nc),
            "D_A": discriminator(m.output_nc),
            "D_B": discriminator(m.input_nc),
        }

    def generator_loss(self, nets, batch):
        m = self.config.model
        real_A, real_B = batch["A"], batch["B"]
        G_A, G_B = nets["G_A"], nets["G_B"]
        fake_B, fake_A = G_A(real_A), G_B(real_B)
        terms = {
            "loss_G_A": adversarial_loss(nets["D_A"](fake_B), True, m.gan_mode, for_discriminator=False),
            "loss_G_B": adversarial_loss(nets["D_B"](fake_A), True, m.gan_mode, for_discriminator=False),
            "loss_cycle_A": m.lambda_A * l1_loss(G_B(fake_B), real_A),
            "loss_cycle_B": m.lambda_B * l1_loss(G_A(fake_A), real_B),
        }
        if m.lambda_identity > 0:
            # G_A fed a real B should change nothing (helps keep colours, e.g. for photo↔painting).
            terms["loss_idt_A"] = m.lambda_B * m.lambda_identity * l1_loss(G_A(real_B), real_B)
            terms["loss_idt_B"] = m.lambda_A * m.lambda_identity * l1_loss(G_B(real_A), real_A)
        return terms, {"fake_A": fake_A, "fake_B": fake_B}

    def discriminator_loss(self, nets, batch, outputs):
        m = self.config.model
        fake_B = self.fake_B_pool.query(outputs["fake_B"].detach())
        fake_A = self.fake_A_pool.query(outputs["fake_A"].detach())
        return {
            **discriminator_terms(nets["D_A"], batch["B"], fake_B, m.gan_mode, m.lambda_gp, name="D_A"),
            **discriminator_terms(nets["D_B"], batch["A"], fake_A, m.gan_mode, m.lambda_gp, name="D_B"),
        }

    def visuals(self, batch, outputs):
        return [batch["A"], outputs["fake_B"], batch["B"], outputs["fake_A"]]

    def state_dict(self):
        return {"fake_A_pool": self.fake_A_pool.state_dict(), "fake_B_pool": self.fake_B_pool.state_dict()}

    def load_state_dict(self, state):
        self.fake_A_pool.load_state_dict(state["fake_A_pool"])
        self.fake_B_pool.load_state_dict(state["fake_B_pool"])
