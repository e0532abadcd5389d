"""translate: image-to-image translation with GANs (Pix2Pix, CycleGAN) on one adversarial engine.

The public names are imported on first use, so that ``from translate import Translator`` loads the networks and the
image rules only, not the training stack (recipes, datasets, Accelerate, OmegaConf).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name → the module that defines it
_PUBLIC = {
    "Config": "translate.config", "ConfigError": "translate.config", "load_config": "translate.config",
    "Recipe": "translate.methods", "register_recipe": "translate.methods",
    "register_discriminator": "translate.networks", "register_generator": "translate.networks",
    "Translator": "translate.inference.translator",
}

__all__ = [*sorted(_PUBLIC), "__version__", "train"]


def train(config, *, resume: bool | str = False):
    """Run the training the CLI runs: ``config`` is a Config, a YAML path, or (path, [overrides])."""
    from translate.engine.trainer import train as _train

    return _train(config, resume=resume)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'translate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
