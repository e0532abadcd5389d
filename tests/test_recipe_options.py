"""Recipe options are checked when the config loads (``Recipe.check``, called by translate.config.validate): every
bad value is a ConfigError naming its full key, listed with every other problem, before anything is built."""

from __future__ import annotations

import dataclasses

import pytest

from translate.config import ConfigError, load_config
from translate.methods import RECIPES, Recipe

# (recipe, key, a bad value, a good value next to it); the key is what the message must start with. model.* keys
# without a recipe section are shared keys that the recipe cannot use.
CASES = [
    ("pix2pix", "model.pix2pix.lambda_L1", -1.0, 0.0),
    ("pix2pix", "model.pix2pix.pool_size", -1, 0),
    ("cyclegan", "model.cyclegan.lambda_A", -1.0, 0.0),
    ("cyclegan", "model.cyclegan.lambda_B", -0.5, 0.0),
    ("cyclegan", "model.cyclegan.lambda_identity", -0.5, 0.0),
    ("cyclegan", "model.cyclegan.pool_size", -1, 0),
    ("cyclegan", "model.cyclegan.smooth_l1_beta", -0.1, 0.5),
    ("dcgan", "model.dcgan.nz", 0, 1),
    ("dcgan", "model.dcgan.n_samples", 6, 8),
    ("dcgan", "model.dcgan.n_samples", 0, 4),
    ("dcgan", "model.residual", True, False),
    ("dcgan", "data.crop_size", 27, 28),
    ("dcgan", "train.temporal", 0.1, 0.0),
    ("sr", "model.sr.n_blocks", -1, 0),
    ("sr", "model.sr.lambda_L1", -1.0, 0.0),
    ("sr", "model.sr.lambda_GAN", -1.0, 0.0),
    ("sr", "model.residual", True, False),
    ("sr", "model.netG", "resnet_6blocks", "sr_resnet_x4"),
]
for _recipe in ("cut", "fastcut"):
    CASES += [
        (_recipe, f"model.{_recipe}.lambda_GAN", -1.0, 0.0),
        (_recipe, f"model.{_recipe}.lambda_NCE", -1.0, 0.0),
        (_recipe, f"model.{_recipe}.nce_T", 0.0, 0.5),
        (_recipe, f"model.{_recipe}.nce_T", -0.07, 0.07),
        (_recipe, f"model.{_recipe}.num_patches", 0, 1),
        (_recipe, f"model.{_recipe}.netF_nc", 0, 1),
        (_recipe, f"model.{_recipe}.nce_layers", [], [0]),
        (_recipe, f"model.{_recipe}.nce_layers", [-1, 4], [0, 4]),
        (_recipe, f"model.{_recipe}.nce_layers", [4, 4], [4]),
        (_recipe, f"model.{_recipe}.nce_layers", [0, 28], [0, 27]),  # resnet_9blocks: 28 layers
        (_recipe, "model.netG", "unet_128", "resnet_6blocks"),  # no layer list for the features
    ]
# Options any value of their type suits (flags, seeds): nothing to check.
UNCHECKED = {"model.cut.nce_idt", "model.cut.flip_equivariance", "model.fastcut.nce_idt",
             "model.fastcut.flip_equivariance", "model.dcgan.sample_seed"}


def override(key: str, value) -> str:
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, list):
        value = "[" + ",".join(map(str, value)) + "]"
    return f"{key}={value}"


def load(recipe: str, *overrides: str):
    sizes = ("data.load_size=27",) if any(o.startswith("data.crop_size=27") for o in overrides) else ()
    return load_config(None, [f"model.recipe={recipe}", "data.root=unused", *sizes, *overrides])


def problems(error: ConfigError) -> list[str]:
    text = str(error)
    return text.split("\n  - ")[1:] or [text]


def value_of(config, key: str):
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize(("recipe", "key", "bad", "good"), CASES, ids=[f"{c[1]}={c[2]}" for c in CASES])
def test_a_bad_option_is_a_config_error_naming_its_key(recipe, key, bad, good):
    with pytest.raises(ConfigError) as e:
        load(recipe, override(key, bad))
    listed = problems(e.value)
    assert len(listed) == 1 and listed[0].startswith(f"{key}="), listed
    assert "Traceback" not in str(e.value)
    loaded = value_of(load(recipe, override(key, good)), key)
    assert (list(loaded) if isinstance(good, list) else loaded) == good


def test_every_recipe_option_is_checked_or_needs_no_check():
    # The package's own recipes: a recipe file another test loaded (tests/recipes/toy_recipe.py) stays registered.
    options = {f"model.{name}.{f.name}" for name, cls in RECIPES.items()
               if cls.options and cls.__module__.startswith("translate.") for f in dataclasses.fields(cls.options)}
    checked = {key for _, key, *_ in CASES}
    assert sorted(options - checked - UNCHECKED) == [], "a new recipe option: add its bad value to CASES"
    assert sorted(UNCHECKED - options) == []


def test_every_problem_of_the_recipe_and_the_shared_keys_is_listed_at_once():
    with pytest.raises(ConfigError) as e:
        load("cyclegan", "model.cyclegan.lambda_A=-1", "model.cyclegan.smooth_l1_beta=-1", "model.ngf=0",
             "train.lr=0")
    assert sorted(p.split("=")[0] for p in problems(e.value)) == [
        "model.cyclegan.lambda_A", "model.cyclegan.smooth_l1_beta", "model.ngf", "train.lr"]


def test_a_recipe_from_outside_the_package_gets_its_check_called(monkeypatch):
    @dataclasses.dataclass
    class Options:
        strength: float = 1.0

    class Outside(Recipe):
        name = "outside"
        options = Options
        groups = {"G": ("G",)}

        @classmethod
        def check(cls, config):
            return super().check(config) + cls.out_of_range(config, positive=("strength",))

    monkeypatch.setitem(RECIPES, "outside", Outside)
    assert load("outside", "model.outside.strength=2").model.outside.strength == 2
    with pytest.raises(ConfigError, match=r"^model.outside.strength=0.0 must be positive$"):
        load("outside", "model.outside.strength=0")
    # The contract's own check: a recipe that declares no equivariance term is refused train.temporal.
    with pytest.raises(ConfigError, match=r"^train.temporal=0.5: recipe outside has no equivariance term"):
        load("outside", "train.temporal=0.5")
