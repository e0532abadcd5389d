"""CycleGAN (Zhu et al. 2017): two generators and two discriminators on unpaired images, with cycle-consistency
and identity losses and a pool of past fakes per discriminator.

Paper names: G_A: A→B, G_B: B→A; D_A judges domain B (real_B vs G_A's fakes), D_B judges domain A.
"""

from __future__ import annotations

from dataclasses import dataclass

from translate.losses import l1_loss
from translate.methods import Recipe, Role, build_discriminator, build_generator, image_spec, register_recipe
from translate.methods.image_pool import ImagePool


@dataclass
class CycleGANOptions:
    lambda_A: float = 10.0  # cycle A → B → A
    lambda_B: float = 10.0  # cycle B → A → B
    lambda_identity: float = 0.5  # identity loss, relative to lambda_A/B
    pool_size: int = 50
    # 0: the paper's L1 for the cycle and identity terms. > 0: smooth L1 with this beta (images in [-1, 1]). A residual
    # generator (model.residual) starts where both terms are zero, at L1's corner: there every change costs at full
    # slope and the adversarial gradient cannot pay for it, so G never leaves its input. Rounded, the corner lets it.
    smooth_l1_beta: float = 0.0


@register_recipe("cyclegan")
class CycleGAN(Recipe):
    options = CycleGANOptions
    defaults = {"data": {"dataset_mode": "unaligned"}}
    networks = {"G_A": Role.exported, "G_B": Role.exported, "D_A": Role.discriminator, "D_B": Role.discriminator}
    groups = {"G": ("G_A", "G_B"), "D": ("D_A", "D_B")}
    temporal_term = True

    @classmethod
    def check(cls, config):
        problems = super().check(config) + cls.out_of_range(
            config, zero_or_more=("lambda_A", "lambda_B", "lambda_identity", "pool_size"))
        beta = getattr(config.model, cls.name).smooth_l1_beta
        if beta < 0:
            problems.append(f"model.{cls.name}.smooth_l1_beta={beta} must be 0 (L1, the paper's) or positive")
        m, identity = config.model, getattr(config.model, cls.name).lambda_identity
        if identity > 0 and m.input_nc != m.output_nc:  # G_A is fed a real B (the reference asserts the same)
            problems.append(f"model.{cls.name}.lambda_identity={identity} feeds each generator an image of the other "
                            f"side, which needs model.input_nc == model.output_nc ({m.input_nc} != {m.output_nc}); "
                            f"set it to 0")
        return problems

    def __init__(self, config):
        super().__init__(config)
        seed = config.train.seed
        self.fake_A_pool = ImagePool(self.opt.pool_size, seed)
        self.fake_B_pool = ImagePool(self.opt.pool_size, seed + 1)

    @property
    def directions(self):
        # With data.direction=BtoA the data swaps the folders, so G_A learns the folders' B→A.
        if self.config.data.direction == "BtoA":
            return {"BtoA": "G_A", "AtoB": "G_B"}
        return {"AtoB": "G_A", "BtoA": "G_B"}

    def export_spec(self, name):
        m = self.config.model
        return image_spec(self.config, *((m.input_nc, m.output_nc) if name == "G_A" else (m.output_nc, m.input_nc)))

    def build(self):
        m = self.config.model
        return {
            "G_A": build_generator(self.config, m.input_nc, m.output_nc),
            "G_B": build_generator(self.config, m.output_nc, m.input_nc),
            "D_A": build_discriminator(self.config, m.output_nc),
            "D_B": build_discriminator(self.config, m.input_nc),
        }

    def generator_loss(self, nets, batch, ctx):
        o = self.opt
        real_A, real_B = batch["A"], batch["B"]
        G_A, G_B = nets["G_A"], nets["G_B"]
        fake_B = ctx["fake_B"] = G_A(real_A)
        fake_A = ctx["fake_A"] = G_B(real_B)
        beta = o.smooth_l1_beta
        terms = {
            "loss_G_A": self.adversarial(nets["D_A"](fake_B)),
            "loss_G_B": self.adversarial(nets["D_B"](fake_A)),
            "loss_cycle_A": o.lambda_A * l1_loss(G_B(fake_B), real_A, beta),
            "loss_cycle_B": o.lambda_B * l1_loss(G_A(fake_A), real_B, beta),
        }
        if o.lambda_identity > 0:
            # G_A fed a real B should change nothing (helps keep colours, e.g. for photo↔painting).
            terms["loss_idt_A"] = o.lambda_B * o.lambda_identity * l1_loss(G_A(real_B), real_B, beta)
            terms["loss_idt_B"] = o.lambda_A * o.lambda_identity * l1_loss(G_B(real_A), real_A, beta)
        terms.update(self.temporal(G_A, real_A, fake_B, "loss_temporal_A"))
        terms.update(self.temporal(G_B, real_B, fake_A, "loss_temporal_B"))
        return terms

    def discriminator_loss(self, nets, batch, ctx):
        fake_B = self.fake_B_pool.query(ctx["fake_B"].detach())
        fake_A = self.fake_A_pool.query(ctx["fake_A"].detach())
        return {**self.judge(nets, "D_A", batch["B"], fake_B), **self.judge(nets, "D_B", batch["A"], fake_A)}

    def real_images(self, batch):
        return {"D_A": batch["B"], "D_B": batch["A"]}

    def visuals(self, batch, ctx):
        return [batch["A"], ctx["fake_B"], batch["B"], ctx["fake_A"]]

    def state_dict(self):
        return {"fake_A_pool": self.fake_A_pool.state_dict(), "fake_B_pool": self.fake_B_pool.state_dict()}

    def load_state_dict(self, state):
        self.fake_A_pool.load_state_dict(state["fake_A_pool"])
        self.fake_B_pool.load_state_dict(state["fake_B_pool"])
