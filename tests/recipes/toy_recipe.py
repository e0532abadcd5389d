"""A recipe that lives outside the package, as a user's would: registered on import, trained by translate.train."""

from dataclasses import dataclass

from translate import register_recipe
from translate.losses import l1_loss
from translate.methods import Phase, Recipe, Role, build_discriminator, build_generator, image_spec


@dataclass
class ToyOptions:
    lambda_rec: float = 5.0


@register_recipe("toy")
class Toy(Recipe):
    """G maps A to B under an L1 loss; D judges B. Two phases, D first, to show that the order is the recipe's."""

    options = ToyOptions
    defaults = {"data": {"dataset_mode": "aligned"}}
    networks = {"G": Role.exported, "D": Role.discriminator}
    groups = {"gen": ("G",), "disc": ("D",)}

    def build(self):
        return {"G": build_generator(self.config, 3, 3), "D": build_discriminator(self.config, 3)}

    def export_spec(self, name):
        return image_spec(self.config, 3, 3)

    def phases(self):
        return [Phase("disc", "d_loss"), Phase("gen", "g_loss")]

    def g_loss(self, nets, batch, ctx):
        fake = ctx["fake"] = nets["G"](batch["A"])
        return {"loss_G_GAN": self.adversarial(nets["D"](fake)),
                "loss_rec": self.opt.lambda_rec * l1_loss(fake, batch["B"])}

    def d_loss(self, nets, batch, ctx):
        return self.judge(nets, "D", batch["B"], nets["G"](batch["A"]))

    def visuals(self, batch, ctx):
        return [batch["A"], ctx["fake"], batch["B"]]
