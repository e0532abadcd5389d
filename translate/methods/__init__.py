"""Recipes: which networks a method has, how they are trained together, and what their losses are.

A recipe is one file. It declares its options (a dataclass with the paper's defaults: config section
``model.<recipe name>``), the paper defaults it wants for shared keys, its networks by role, its optimizer groups and
its phases, and writes its losses. It never touches the accelerator, optimizers, devices or files: the engine
(translate.engine.trainer) does. Register new ones with ``@register_recipe("name")`` and train them with
``model.recipe=name``; ``model.recipe=path/to/file.py:name`` imports a recipe file from outside the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from torch import Tensor, nn

from translate.losses import adversarial_loss, discriminator_terms, r1_penalty

# The networks every recipe builds, imported from here by recipe files (translate.methods.builders).
from translate.methods.builders import build_discriminator, build_generator, image_spec, with_d_options  # noqa: F401
from translate.methods.equivariance import equivariance_loss

RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(name: str):
    def decorator(cls):
        cls.name = name
        RECIPES[name] = cls
        return cls

    return decorator


class Role(Enum):
    exported = "exported"  # a generator: trained, EMA-averaged (train.ema), written to model/
    discriminator = "discriminator"  # trained, not exported; DiffAugment and R1 apply to it
    auxiliary = "auxiliary"  # trained with its group, neither averaged nor exported (e.g. CUT's feature MLP)


@dataclass(frozen=True)
class Phase:
    """One backward and one optimizer step of ``group``, on the loss terms that recipe method ``loss`` returns.

    every: run on optimizer steps that are multiples of it (lazy regularisation; the recipe scales the loss by it);
    repeat: run this many times per step (D steps per G step, WGAN-GP's n_critic).
    """

    group: str
    loss: str
    every: int = 1
    repeat: int = 1


class Recipe:
    """The contract between a method and the engine (see the module docstring); the defaults give a GAN whose
    generators ``G*`` are trained against discriminators ``D*``: phase G, then phase D, plus lazy R1 and n_critic
    from ``model.*``.

    Loss methods take ``(nets, batch, ctx)``: the networks by name (the modules themselves, so ``G(x, layers=...)``
    and hooks work), the batch, and a dict shared by the phases of this batch (e.g. the G phase leaves its fakes
    there for the D phase and the samples). They return named loss terms; the engine sums, logs and backprops.
    """

    name: ClassVar[str] = ""
    options: ClassVar[type | None] = None  # dataclass -> config section model.<name>
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}  # e.g. {"model": {"netG": "unet_256"}, "data": {...}}
    networks: ClassVar[dict[str, Role]] = {}
    groups: ClassVar[dict[str, tuple[str, ...]]] = {}  # optimizer group -> its networks; lr/betas: train.optimizers
    # Its generator losses add train.temporal's equivariance term (``temporal``); recipes that do not are refused
    # the option when the config loads, rather than ignoring it.
    temporal_term: ClassVar[bool] = False

    @classmethod
    def check(cls, config) -> list[str]:
        """Every problem with this recipe's options (``model.<name>.*``) and with the shared keys as it uses them,
        one message each, naming the full key (``model.cyclegan.smooth_l1_beta=-1 must be ...``). Called by
        ``translate.config.validate``, so a bad value is reported with every other problem when the config loads,
        before anything is built. Overrides extend ``super().check(config)``; ``out_of_range`` checks bounds."""
        problems = []
        if config.train.temporal > 0 and not cls.temporal_term:
            problems.append(f"train.temporal={config.train.temporal}: recipe {cls.name} has no equivariance term "
                            f"(it needs a generator that translates an input image); leave it 0")
        return problems

    @classmethod
    def out_of_range(cls, config, *, zero_or_more: tuple[str, ...] = (), positive: tuple[str, ...] = (),
                     one_or_more: tuple[str, ...] = ()) -> list[str]:
        """For ``check``: messages for the options of ``model.<name>`` outside their bounds, by full key: weights
        and sizes that may be 0 (``zero_or_more``), values above 0 (``positive``: a temperature), counts
        (``one_or_more``)."""
        options, problems = getattr(config.model, cls.name), []
        for keys, bad, rule in ((zero_or_more, lambda v: v < 0, "must be 0 or more"),
                                (positive, lambda v: v <= 0, "must be positive"),
                                (one_or_more, lambda v: v < 1, "must be at least 1")):
            problems += [f"model.{cls.name}.{key}={getattr(options, key)} {rule}" for key in keys
                         if bad(getattr(options, key))]
        return problems

    def __init__(self, config):
        self.config = config
        self.opt = getattr(config.model, self.name, None)  # this recipe's typed options section

    # -- networks ------------------------------------------------------------------------------------------------
    def build(self) -> dict[str, nn.Module]:
        """Create the networks known before any data, initialised, keyed by name."""
        raise NotImplementedError

    def build_after_first_batch(self, nets: dict[str, nn.Module], batch: dict) -> dict[str, nn.Module]:
        """Networks sized from data (CUT's MLP from G's features); called once, before the optimizers exist."""
        return {}

    def names(self, role: Role) -> tuple[str, ...]:
        return tuple(n for n, r in self.networks.items() if r is role)

    @property
    def directions(self) -> dict[str, str]:
        """The folders' translation direction (``data.direction``: "AtoB" or "BtoA") -> exported generator, for the
        exported model: a one-generator recipe translates the way its data was read ("AtoB" for one folder of
        images, which has no direction: super-resolution)."""
        c = self.config.data
        return {"AtoB" if c.dataset_mode == "single" else c.direction: self.names(Role.exported)[0]}

    def export_spec(self, name: str) -> dict:
        """Architecture of exported network ``name`` for the model's config.json."""
        raise NotImplementedError

    # -- training ------------------------------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        m = self.config.model
        phases = [Phase("G", "generator_loss"), Phase("D", "discriminator_loss", repeat=m.n_critic)]
        if m.r1_gamma > 0 and m.r1_every > 1:
            phases.append(Phase("D", "r1_loss", every=m.r1_every))
        return phases

    def real_images(self, batch: dict) -> dict[str, Tensor]:
        """What each discriminator sees as real, by name (used by R1)."""
        raise NotImplementedError

    def r1_loss(self, nets, batch, ctx) -> dict[str, Tensor]:
        """γ/2 · R1 on every discriminator's reals; lazy (every k steps) runs scale it by k (Karras et al. 2020)."""
        m = self.config.model
        scale = m.r1_gamma / 2 * m.r1_every
        reals = self.real_images(batch)
        return {f"loss_{name}_r1": scale * r1_penalty(nets[name], real) for name, real in reals.items()}

    def adversarial(self, prediction: Tensor) -> Tensor:
        """G's adversarial term: D should call its output real."""
        return adversarial_loss(prediction, True, self.config.model.gan_mode, for_discriminator=False)

    def temporal(self, G: nn.Module, x: Tensor, fake: Tensor, name: str = "loss_temporal",
                 scale: float = 1.0) -> dict[str, Tensor]:
        """``train.temporal``'s term for generator ``G`` on its input ``x``, with ``fake`` = G(x) from the recipe's
        own forward and ``scale`` = output size / input size: weight · mean |G(T(x)) − T(G(x))| for a small random
        motion T (translate.methods.equivariance); no term when the option is 0. A recipe that calls it declares
        ``temporal_term = True``."""
        weight = self.config.train.temporal
        return {name: weight * equivariance_loss(G, x, fake, scale)} if weight > 0 else {}

    def judge(self, nets, name: str, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Discriminator ``name``'s loss on a real and a (detached) fake batch, with the penalties the config asks
        for: WGAN-GP's gradient penalty, and R1 when it is not lazy (model.r1_every=1)."""
        m = self.config.model
        terms = discriminator_terms(nets[name], real, fake.detach(), m.gan_mode, m.lambda_gp, name=name)
        if m.r1_gamma > 0 and m.r1_every == 1:
            terms[f"loss_{name}_r1"] = m.r1_gamma / 2 * r1_penalty(nets[name], real)
        return terms

    def visuals(self, batch: dict, ctx: dict) -> list[Tensor]:
        """Image batches in [-1, 1] shown side by side in sample grids, e.g. [real_A, fake_B, real_B]."""
        raise NotImplementedError

    def fixed_samples(self, nets, n: int) -> Tensor | None:
        """``n`` images in [-1, 1] that the generators in ``nets`` make from fixed inputs (the same every call, from
        their own seed: never the training RNG), or None. A recipe that generates from noise returns samples of fixed
        latents, and the engine watches their diversity against the real images' for mode collapse
        (translate.engine.watch); a translation's outputs follow its inputs, so translation recipes return None."""
        return None

    def state_dict(self) -> dict:
        """State outside the networks that must survive a resume (e.g. image pools), per process."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# Register the built-in recipes.
from translate.methods import cut, cyclegan, dcgan, pix2pix, sr  # noqa: E402, F401
