"""CUT and FastCUT (Park et al. 2020, "Contrastive Learning for Unpaired Image-to-Image Translation").

One generator and one discriminator on unpaired images. Instead of CycleGAN's second generator and cycle loss,
PatchNCE keeps the content: a patch of the output must match the patch of the input at the same place (through a
small MLP ``F`` on G's encoder features) better than the input's other patches. Defaults follow the authors' code
(taesungp/contrastive-unpaired-translation), whose ``nce_layers`` index the generator's layer list; our generator
is the CycleGAN reference's (stride-2 convolutions: their ``--no_antialias`` variant).
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from translate.losses import patch_nce_loss
from translate.methods import Recipe, Role, build_discriminator, build_generator, image_spec, register_recipe
from translate.networks import init_weights


@dataclass
class CUTOptions:
    lambda_GAN: float = 1.0
    lambda_NCE: float = 1.0
    nce_idt: bool = True  # identity PatchNCE on G(real_B) as well
    nce_layers: list[int] = field(default_factory=lambda: [0, 4, 8, 12, 16])  # indices into G's layer list
    nce_T: float = 0.07  # temperature
    num_patches: int = 256  # patches sampled per image and layer
    netF_nc: int = 256  # width of the feature MLP
    flip_equivariance: bool = False  # FastCUT: randomly flip the input and expect the flipped features


@dataclass
class FastCUTOptions(CUTOptions):
    lambda_NCE: float = 10.0
    nce_idt: bool = False
    flip_equivariance: bool = True


class PatchSampleF(nn.Module):
    """Per encoder layer: sample patch locations, project their features with a 2-layer MLP, L2-normalise."""

    def __init__(self, channels: list[int], nc: int):
        super().__init__()
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)) for c in channels)

    def forward(self, feats: list[torch.Tensor], num_patches: int, patch_ids: list[torch.Tensor] | None = None):
        out, ids = [], []
        for i, (feat, mlp) in enumerate(zip(feats, self.mlps)):
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)  # (batch, H*W, C)
            if patch_ids is None:
                chosen = torch.randperm(flat.shape[1], device=feat.device)[:num_patches]
            else:
                chosen = patch_ids[i]
            out.append(F.normalize(mlp(flat[:, chosen]), dim=-1, eps=1e-7))
            ids.append(chosen)
        return out, ids


def encode(G: nn.Module, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
    """G's features after each layer in ``layers`` (indices into ``G.model``), stopping after the last one."""
    feats, last = [], max(layers)
    for i, layer in enumerate(G.model):
        x = layer(x)
        if i in layers:
            feats.append(x)
        if i == last:
            return feats
    raise ValueError(f"nce_layers={layers}: the generator has only {len(G.model)} layers")


@register_recipe("cut")
class CUT(Recipe):
    options = CUTOptions
    defaults = {
        "model": {"netG": "resnet_9blocks", "norm": "instance", "no_dropout": True, "init_type": "xavier",
                  "gan_mode": "lsgan"},
        "data": {"dataset_mode": "unaligned"},
        "train": {"n_epochs": 200, "n_epochs_decay": 200},
    }
    networks = {"G": Role.exported, "D": Role.discriminator, "F": Role.auxiliary}
    groups = {"G": ("G", "F"), "D": ("D",)}
    temporal_term = True

    @classmethod
    def check(cls, config):
        key, o = f"model.{cls.name}", getattr(config.model, cls.name)
        problems = super().check(config) + cls.out_of_range(config, zero_or_more=("lambda_GAN", "lambda_NCE"),
                                                            positive=("nce_T",), one_or_more=("num_patches", "netF_nc"))
        layers = list(o.nce_layers)
        if not layers:
            return [*problems, f"{key}.nce_layers=[] must name at least one layer of G (the paper's: 0,4,8,12,16)"]
        if min(layers) < 0 or len(set(layers)) < len(layers):
            problems.append(f"{key}.nce_layers={layers} must be different indices into G's layer list, 0 or more")
        # G's layer list, from the generator itself at width 1 (milliseconds): netG may be any registered one.
        m = config.model
        try:
            G = build_generator(types.SimpleNamespace(model=dataclasses.replace(m, ngf=1)), m.input_nc, m.output_nc)
        except Exception:  # a netG that does not build: validate or the build itself reports it
            return problems
        if not isinstance(getattr(G, "model", None), nn.Sequential):
            problems.append(f"model.netG={m.netG}: {cls.name} needs a generator with a layer list (resnet_*)")
        elif max(layers) >= len(G.model):
            problems.append(f"{key}.nce_layers={layers}: model.netG={m.netG} has only {len(G.model)} layers "
                            f"(0 to {len(G.model) - 1})")
        if o.nce_idt and m.input_nc != m.output_nc:  # the identity term runs G on a real B
            problems.append(f"{key}.nce_idt=true runs G on images of the output side, which needs model.input_nc == "
                            f"model.output_nc ({m.input_nc} != {m.output_nc}); set it to false")
        return problems

    def export_spec(self, name):
        m = self.config.model
        return image_spec(self.config, m.input_nc, m.output_nc)

    def build(self):
        m = self.config.model
        return {"G": build_generator(self.config, m.input_nc, m.output_nc),
                "D": build_discriminator(self.config, m.output_nc)}

    def build_after_first_batch(self, nets, batch):
        with torch.no_grad():
            feats = encode(nets["G"], batch["A"][:1], self.opt.nce_layers)
        m = self.config.model
        return {"F": init_weights(PatchSampleF([f.shape[1] for f in feats], self.opt.netF_nc), m.init_type,
                                  m.init_gain)}

    def generator_loss(self, nets, batch, ctx):
        o, G = self.opt, nets["G"]
        real_A, real_B = batch["A"], batch["B"]
        real = torch.cat([real_A, real_B]) if o.nce_idt else real_A
        flipped = o.flip_equivariance and bool(torch.rand(()) < 0.5)
        if flipped:
            real = real.flip(3)
        fake = G(real)
        fake_B = ctx["fake_B"] = fake[: len(real_A)]
        terms = {"loss_G_GAN": o.lambda_GAN * self.adversarial(nets["D"](fake_B))}
        # Keys come from the unflipped input: with flip-equivariance, G(flip(x)) must match x's patches flipped back.
        nce = self.nce(nets, real_A, fake_B, flipped)
        if o.nce_idt:
            terms["loss_NCE"] = 0.5 * nce
            terms["loss_NCE_Y"] = 0.5 * self.nce(nets, real_B, fake[len(real_A):], flipped)
        else:
            terms["loss_NCE"] = nce
        # G's input for fake_B: real_A, flipped with it under flip-equivariance.
        terms.update(self.temporal(G, real[: len(real_A)], fake_B))
        return terms

    def nce(self, nets, source, output, flipped):
        """PatchNCE between G's features of ``source`` (keys) and of ``output`` (queries), mean over layers."""
        o = self.opt
        feat_q = encode(nets["G"], output, o.nce_layers)
        if flipped:  # flip-equivariance: the output's features are compared in the input's orientation
            feat_q = [f.flip(3) for f in feat_q]
        feat_k = encode(nets["G"], source, o.nce_layers)
        keys, ids = nets["F"](feat_k, o.num_patches)
        queries, _ = nets["F"](feat_q, o.num_patches, ids)
        return o.lambda_NCE * sum(patch_nce_loss(q, k, o.nce_T) for q, k in zip(queries, keys)) / len(keys)

    def discriminator_loss(self, nets, batch, ctx):
        return self.judge(nets, "D", batch["B"], ctx["fake_B"])

    def real_images(self, batch):
        return {"D": batch["B"]}

    def visuals(self, batch, ctx):
        return [batch["A"], ctx["fake_B"], batch["B"]]


@register_recipe("fastcut")
class FastCUT(CUT):
    """FastCUT: no identity PatchNCE, λ_NCE 10, flip-equivariance, a shorter schedule (150 + 50 epochs)."""

    options = FastCUTOptions
    defaults = {**CUT.defaults, "train": {"n_epochs": 150, "n_epochs_decay": 50}}
