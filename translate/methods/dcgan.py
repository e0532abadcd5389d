"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs"): images from
noise, trained on one folder of images (``data.dataset_mode=single``) or a built-in dataset (``digits``).

The networks are pytorch/examples' (translate.networks.dcgan) at ``data.crop_size`` (64, 32, 28, ...); the
defaults are the paper's: Adam 2e-4, β1 0.5, batch 128, the original (vanilla) GAN loss, batch norm, a 100-d latent.
Every shared D option applies: ``model.gan_mode`` (lsgan, hinge, wgangp with ``model.n_critic=5``), R1,
``model.spectral_norm`` and ``model.minibatch_stddev`` (the remedies for mode collapse of Karras et al. 2018). With
wgangp the critic has no batch norm, as the WGAN-GP paper requires (its penalty is per sample). During training the
samples of fixed latents are watched for collapse against the real images (``fixed_samples``, translate.engine.watch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from translate.methods import Recipe, Role, register_recipe, with_d_options
from translate.networks import create_generator, init_weights
from translate.networks.dcgan import DCGANDiscriminator, plan


@dataclass
class DCGANOptions:
    nz: int = 100  # latent size
    n_samples: int = 32  # fixed latents shown in the sample grids during training (4 rows: a multiple of 4)
    sample_seed: int = 1234  # their seed: the same latents in every grid, so the grids show progress over time


@register_recipe("dcgan")
class DCGAN(Recipe):
    options = DCGANOptions
    defaults = {
        "model": {"netG": "dcgan", "norm": "batch", "gan_mode": "vanilla", "init_type": "normal"},
        "data": {"dataset_mode": "single", "load_size": 64, "crop_size": 64, "no_flip": True, "batch_size": 128},
        "train": {"lr": 0.0002, "beta1": 0.5, "n_epochs": 25, "n_epochs_decay": 0, "lr_policy": "constant"},
    }
    networks = {"G": Role.exported, "D": Role.discriminator}
    groups = {"G": ("G",), "D": ("D",)}

    @classmethod
    def check(cls, config):
        o, size = config.model.dcgan, config.data.crop_size
        problems = super().check(config) + cls.out_of_range(config, one_or_more=("nz",))
        if o.n_samples < 4 or o.n_samples % 4:
            problems.append(f"model.dcgan.n_samples={o.n_samples} must be a multiple of 4 (the grids' 4 rows)")
        if config.model.residual:
            problems.append("model.residual=true: a DCGAN generator has no input image to change; leave it false")
        try:
            plan(size)
        except ValueError as e:
            problems.append(f"data.crop_size={size}: {e}")
        return problems

    @property
    def directions(self):
        return {}  # nothing to translate: Translator refuses the model, ``translate sample`` draws from it

    def export_spec(self, name):
        m = self.config.model
        return {"netG": m.netG, "nz": self.opt.nz, "ngf": m.ngf, "output_nc": m.output_nc,
                "image_size": self.config.data.crop_size, "norm": m.norm}

    def build(self):
        m, size = self.config.model, self.config.data.crop_size
        spec = {k: v for k, v in self.export_spec("G").items() if k != "netG"}
        G = create_generator(m.netG, **spec, init_type=m.init_type, init_gain=m.init_gain)
        # The gradient penalty is per sample: batch norm, which mixes the samples of a batch, breaks it.
        norm = "none" if m.gan_mode == "wgangp" else m.norm
        D = init_weights(DCGANDiscriminator(m.output_nc, m.ndf, size, norm), m.init_type, m.init_gain)
        return {"G": G, "D": with_d_options(self.config, D)}

    def latents(self, n: int, device: torch.device) -> Tensor:
        return torch.randn(n, self.opt.nz, device=device)

    def generator_loss(self, nets, batch, ctx):
        real = batch["A"]
        fake = ctx["fake"] = nets["G"](self.latents(len(real), real.device))
        ctx["G"] = nets["G"]  # for the fixed-latent sample grids (visuals)
        return {"loss_G_GAN": self.adversarial(nets["D"](fake))}

    def discriminator_loss(self, nets, batch, ctx):
        real, fake = batch["A"], ctx["fake"]
        ctx["critic_steps"] = ctx.get("critic_steps", 0) + 1
        if ctx["critic_steps"] > 1:
            # Further critic steps of a G step (model.n_critic > 1) see new samples, as in WGAN-GP.
            with torch.no_grad():
                fake = nets["G"](self.latents(len(real), real.device))
        return self.judge(nets, "D", real, fake)

    def real_images(self, batch):
        return {"D": batch["A"]}

    @torch.no_grad()
    def fixed_samples(self, nets, n):
        """G in eval mode (as exported) on the first ``n`` latents of ``model.dcgan.sample_seed``: the same latents
        every time, so grids and the diversity watch follow one set of samples over training."""
        G, o = nets["G"], self.opt
        device = next(G.parameters()).device
        # One draw of the larger count, sliced: torch.randn(n, ...) is not a prefix of torch.randn(m, ...) for all n, m.
        z = torch.randn(max(n, o.n_samples), o.nz, generator=torch.Generator().manual_seed(o.sample_seed))[:n]
        z = z.to(device)
        training = G.training
        fake = G.eval()(z)
        G.train(training)
        return fake

    def visuals(self, batch, ctx):
        """The fixed-latent samples as 4 rows (``save_samples`` shows each visual as a column of up to 4)."""
        fake = self.fixed_samples({"G": ctx["G"]}, self.opt.n_samples)
        return list(fake[: len(fake) // 4 * 4].split(4))
