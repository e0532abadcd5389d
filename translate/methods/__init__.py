"""Recipes: which networks a method has and what its losses are. The engine does everything else.

A recipe never touches the accelerator, optimizers, devices or files. Register new ones with
``@register_recipe("name")`` and train them with ``model.recipe=name``.
"""

from __future__ import annotations

from torch import Tensor, nn

from translate.config import Config

RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(name: str):
    def decorator(cls):
        cls.name = name
        RECIPES[name] = cls
        return cls

    return decorator


class Recipe:
    """The contract between a method and the engine.

    ``generators`` / ``discriminators`` are the paper names of the networks; ``directions`` maps a translation
    direction ("AtoB") to the generator that performs it, for the exported model. The loss functions receive the
    networks (possibly wrapped for distributed training) by name and return named loss terms; the engine sums,
    logs and back-propagates them: the generator phase first, with the discriminators frozen, then the
    discriminator phase, which may reuse the generator phase's ``outputs`` (detached) instead of recomputing them.
    """

    name = ""
    generators: tuple[str, ...] = ()
    discriminators: tuple[str, ...] = ()

    def __init__(self, config: Config):
        self.config = config

    @property
    def directions(self) -> dict[str, str]:
        return {"AtoB": self.generators[0]}

    def build(self) -> dict[str, nn.Module]:
        """Create every network, initialised, keyed by paper name."""
        raise NotImplementedError

    def generator_spec(self, name: str) -> dict:
        """Architecture of generator ``name`` for the exported model's config.json."""
        raise NotImplementedError

    def generator_loss(self, nets: dict[str, nn.Module], batch: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Return (loss terms, outputs for the discriminator phase and the samples)."""
        raise NotImplementedError

    def discriminator_loss(self, nets: dict[str, nn.Module], batch: dict, outputs: dict[str, Tensor]
                           ) -> dict[str, Tensor]:
        raise NotImplementedError

    def visuals(self, batch: dict, outputs: dict[str, Tensor]) -> list[Tensor]:
        """Image batches in [-1, 1] shown side by side in sample grids, e.g. [real_A, fake_B, real_B]."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """State outside the networks that must survive a resume (e.g. image pools)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# Register the built-in recipes.
from translate.methods import cyclegan, pix2pix  # noqa: E402, F401
