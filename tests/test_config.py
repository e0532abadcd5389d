"""Config loading: YAML + dotted overrides, typed values, every problem reported before any work starts."""

import types
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from translate.config import ConfigError, all_keys, from_dict, load_config, to_yaml

CONFIGS = Path(__file__).parent.parent / "configs"


def test_paper_configs_load_with_paper_defaults():
    p2p = load_config(CONFIGS / "pix2pix_facades.yaml", ["data.root=/data/facades"])
    assert (p2p.name, p2p.model.recipe, p2p.model.netG, p2p.model.norm, p2p.model.pix2pix.lambda_L1) == (
        "pix2pix_facades", "pix2pix", "unet_256", "batch", 100.0)
    assert (p2p.data.load_size, p2p.data.crop_size, p2p.data.batch_size, p2p.train.lr) == (286, 256, 1, 0.0002)
    cyc = load_config(CONFIGS / "cyclegan_horse2zebra.yaml", ["data.root=/data/h2z"])
    m = cyc.model
    o = m.cyclegan
    assert (m.netG, m.norm, m.gan_mode, o.lambda_A, o.lambda_B, o.lambda_identity, o.pool_size, m.no_dropout) == (
        "resnet_9blocks", "instance", "lsgan", 10.0, 10.0, 0.5, 50, True)


def test_overrides_are_typed():
    cfg = load_config(CONFIGS / "pix2pix_facades.yaml",
                      ["data.root=/x", "model.netG=unet_128", "data.batch_size=4", "model.no_dropout=true",
                       "data.crop_size=128", "train.lr=1e-3", "data.augment=[color_jitter]"])
    assert cfg.model.netG == "unet_128" and cfg.data.batch_size == 4 and cfg.model.no_dropout is True
    assert cfg.train.lr == 1e-3 and cfg.data.augment == ["color_jitter"]


def test_mixed_precision_no_survives_yaml_reading_it_as_false(tmp_path):
    assert load_config(None, ["data.root=/x", "train.mixed_precision=no"]).train.mixed_precision == "no"
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  root: /x\ntrain:\n  mixed_precision: no\n")
    assert load_config(path).train.mixed_precision == "no"
    assert load_config(None, ["data.root=/x", "train.mixed_precision=bf16"]).train.mixed_precision == "bf16"


@pytest.mark.parametrize(("override", "suggestion"), [
    ("model.ngff=8", "model.ngf"),
    ("data.batchsize=2", "data.batch_size"),
    ("train.netG=unet_128", "model.netG"),  # right key, wrong group
    ("model.lambda_l1=10", "model.pix2pix.lambda_L1"),  # a recipe option outside its section
])
def test_unknown_key_names_the_closest_valid_key(override, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        load_config(CONFIGS / "pix2pix_facades.yaml", ["data.root=/x", override])


def test_wrong_type_is_a_clear_error():
    with pytest.raises(ConfigError, match="data.batch_size"):
        load_config(None, ["data.root=/x", "data.batch_size=four"])


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "pix2pix_facades.yaml",
                    ["data.crop_size=64", "data.batch_size=0", "model.norm=group", "model.netD=huge"])
    message = str(e.value)
    for part in ("data.root", "unet_256 needs images of at least 256", "data.batch_size=0", "model.norm='group'",
                 "model.netD='huge'"):
        assert part in message


def test_bad_override_syntax_and_missing_file():
    with pytest.raises(ConfigError, match="group.key=value"):
        load_config(None, ["data.root"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.yaml")


def test_resolved_yaml_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "cyclegan_horse2zebra.yaml", ["data.root=/x", "train.seed=3"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(path) == cfg


def _holds(value, hint) -> bool:
    """Whether ``value`` is of the declared type ``hint`` (unions, None and generic containers by their origin)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_holds(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):  # OmegaConf holds both as lists
        return isinstance(value, list | tuple)
    if origin is not None:
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(all_keys()),
       value=st.one_of(st.text(max_size=12), st.from_regex(r"[A-Za-z_]{1,8}", fullmatch=True), st.integers().map(str)))
def test_any_override_loads_or_raises_config_error(key, value):
    # Whatever a user types, the loader answers with a config or a ConfigError, never another exception.
    try:
        config = load_config(None, ["data.root=/x", f"{key}={value}"])
    except ConfigError:
        return
    # An accepted value took effect with the type its field declares, and the resolved copy saved in a run
    # directory loads back to the same config.
    *groups, name = key.split(".")
    owner = config
    for group in groups:
        owner = getattr(owner, group)
    hint = typing.get_type_hints(type(owner))[name]
    assert _holds(getattr(owner, name), hint), f"{key}={value!r} gave {getattr(owner, name)!r}, not {hint}"
    if hint is str and value.isidentifier() and yaml.safe_load(value) == value:  # a plain word YAML keeps as is
        assert getattr(owner, name) == value
    assert from_dict(yaml.safe_load(to_yaml(config))) == config


def test_every_mistyped_key_of_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "two_typos.yaml"
    path.write_text("model:\n  ngff: 8\n  recipe: pix2pix\n  pix2pix:\n    lambda_l2: 3\ndata:\n  root: /x\n"
                    "train:\n  lr: 0.001\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert "unknown key 'model.ngff'; did you mean 'model.ngf'?" in message
    assert "unknown key 'model.pix2pix.lambda_l2'" in message and "model.pix2pix.lambda_L1" in message
