"""translate: image-to-image translation with GANs (Pix2Pix, CycleGAN) on one adversarial engine."""

from __future__ import annotations

__version__ = "0.1.0"

from translate.config import Config, ConfigError, load_config  # noqa: E402
from translate.methods import Recipe, register_recipe  # noqa: E402
from translate.networks import register_discriminator, register_generator  # noqa: E402

__all__ = [
    "Config", "ConfigError", "Recipe", "Translator", "__version__", "load_config", "register_discriminator",
    "register_generator", "register_recipe", "train",
]


def train(config, *, resume: bool | str = False):
    """Run the training the CLI runs: ``config`` is a Config, a YAML path, or (path, [overrides])."""
    from translate.engine.trainer import train as _train

    return _train(config, resume=resume)


def __getattr__(name):
    # The inference stack is imported on first use so that `import translate` stays light.
    if name == "Translator":
        from translate.inference.translator import Translator

        return Translator
    raise AttributeError(f"module 'translate' has no attribute {name!r}")
