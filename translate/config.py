"""Typed run configuration: YAML files plus dotted command-line overrides, validated before any work.

Key names follow the reference CycleGAN/pix2pix options (netG, ngf, load_size, n_epochs...) so that
its users can guess them; they live in three groups: ``model``, ``data`` and ``train``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A configuration problem the user has to fix; the message lists every problem found."""


@dataclass
class ModelConfig:
    recipe: str = "cyclegan"  # the reference's --model: pix2pix | cyclegan | any registered recipe
    netG: str = "resnet_9blocks"
    netD: str = "basic"
    ngf: int = 64
    ndf: int = 64
    n_layers_D: int = 3
    norm: str = "instance"
    init_type: str = "normal"
    init_gain: float = 0.02
    no_dropout: bool = False
    input_nc: int = 3
    output_nc: int = 3
    gan_mode: str = "lsgan"
    lambda_L1: float = 100.0
    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_identity: float = 0.5
    lambda_gp: float = 10.0
    pool_size: int = 50
    # Generator upsampling: the reference's transposed convolutions, or resize + convolution (Odena et al. 2016),
    # which avoids checkerboard artefacts.
    upsample: str = "transpose"
    sync_bn: bool = False
    # Free-form options for recipes registered outside the package (e.g. a CUT's lambda_NCE).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    root: str = ""
    # A built-in dataset generated on first use (see translate.data.builtin); root then defaults to its cache.
    builtin: str = ""
    dataset_mode: str = "unaligned"  # aligned | paired | unaligned | single | colorization
    direction: str = "AtoB"
    load_size: int = 286
    crop_size: int = 256
    preprocess: str = "resize_and_crop"
    no_flip: bool = False
    max_dataset_size: int | None = None
    serial_batches: bool = False
    batch_size: int = 1  # per process
    num_workers: int = 2
    on_bad_file: str = "error"  # error | skip
    verify: str = "full"  # full: decode every file before training (cached); header: open headers only
    background: str = "white"  # alpha is composited onto this colour
    max_pixels: int = 178_956_970  # PIL's own decompression-bomb limit, made explicit
    augment: list[str] = field(default_factory=list)  # extra augmentations, off by default


@dataclass
class TrainConfig:
    n_epochs: int = 100
    n_epochs_decay: int = 100
    max_steps: int | None = None  # stop after this many optimizer steps (demos, tests)
    lr: float = 0.0002
    beta1: float = 0.5
    beta2: float = 0.999
    lr_policy: str = "linear"  # linear | step | cosine | constant
    lr_decay_iters: int = 50  # epochs between decays for lr_policy=step
    seed: int = 0
    output_dir: str = ""  # default runs/<config name>
    checkpoint_every: int = 5000  # steps
    keep_checkpoints: int = 3
    sample_every: int = 1000  # steps
    log_every: int = 100  # steps
    mixed_precision: str = "no"  # auto | no | bf16 | fp16 (auto: bf16 where the hardware has it, else fp32)
    gradient_accumulation_steps: int = 1
    ema: bool = False
    ema_decay: float = 0.999
    diffaugment: str = ""  # DiffAugment policy before every D call, e.g. "color,translation,cutout" (off: "")
    init_from: str = ""  # an exported model/ directory to fine-tune from
    compile: bool = False
    channels_last: bool = False
    max_nonfinite_steps: int = 10  # consecutive skipped steps before giving up
    progress: bool = True
    eval_every: int = 0  # steps between evaluations on eval_split (0: off)
    eval_split: str = "val"
    eval_metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim"])
    eval_max_images: int | None = 50
    best_metric: str = ""  # keep model_best/ by this metric (e.g. psnr, fid), next to model/
    report: bool = True  # write report/index.html at the end of training


@dataclass
class Config:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES = {
    "model.norm": ("batch", "instance", "none"),
    "model.init_type": ("normal", "xavier", "kaiming", "orthogonal"),
    "model.gan_mode": ("vanilla", "lsgan", "wgangp", "hinge"),
    "data.dataset_mode": ("aligned", "paired", "unaligned", "single", "colorization"),
    "data.direction": ("AtoB", "BtoA"),
    "data.preprocess": ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"),
    "data.on_bad_file": ("error", "skip"),
    "data.verify": ("full", "header"),
    "model.upsample": ("transpose", "resize_conv"),
    "train.lr_policy": ("linear", "step", "cosine", "constant"),
    "train.mixed_precision": ("auto", "no", "bf16", "fp16"),
    "train.eval_split": ("train", "val", "test"),
}


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, e.g. ``model.netG``."""
    keys = []
    for f in fields(cls):
        if f.type in _GROUPS:  # annotations are strings here (postponed evaluation)
            keys += all_keys(_GROUPS[f.type], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


_GROUPS = {"ModelConfig": ModelConfig, "DataConfig": DataConfig, "TrainConfig": TrainConfig}


def _closest(key: str) -> str:
    keys = all_keys()
    leaf = key.rsplit(".", 1)[-1].lower()
    # A right key in the wrong group or with the wrong case first, then the nearest spelling.
    match = [k for k in keys if k.rsplit(".", 1)[-1].lower() == leaf] or difflib.get_close_matches(key, keys, n=1,
                                                                                                 cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except ConfigKeyError as e:
        key = e.full_key or str(e.key)
        raise ConfigError(f"{source}: unknown key '{key}'{_closest(key)}") from None
    except ValidationError as e:
        raise ConfigError(f"{source}: bad value for '{e.full_key}': {e.msg.splitlines()[0]}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (optional), apply ``group.key=value`` overrides, validate, return a typed Config."""
    cfg = OmegaConf.structured(Config)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = OmegaConf.load(path)
        except Exception as e:  # yaml errors come in several types
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, DictConfig):
            raise ConfigError(f"{path}: expected a mapping of groups (model, data, train)")
        if "name" not in loaded:
            loaded.name = path.stem
        cfg = _merge(cfg, loaded, str(path))
    problems = []  # every bad override is reported, together with the problems of the values
    for item in overrides:
        try:
            if "=" not in item:
                raise ConfigError(f"override '{item}' must look like group.key=value (e.g. data.batch_size=4)")
            try:
                parsed = OmegaConf.from_dotlist([item])
            except Exception as e:  # yaml errors come in several types
                raise ConfigError(f"override '{item}': cannot parse the value: {e}") from None
            cfg = _merge(cfg, parsed, f"override '{item}'")
        except ConfigError as e:
            problems.append(str(e))
    config = _typed(cfg)
    try:
        validate(config)
    except ConfigError as e:
        problems += str(e).split("\n  - ")[1:]
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return config


def _typed(cfg: DictConfig) -> Config:
    config: Config = OmegaConf.to_object(cfg)
    # YAML 1.1 reads a bare `no` as false, which a str field then holds as "False": train.mixed_precision=no.
    if config.train.mixed_precision in ("False", "false"):
        config.train.mixed_precision = "no"
    return config


def from_dict(values: dict) -> Config:
    """Build a validated Config from a nested dict (e.g. a resolved config.yaml read back)."""
    config = _typed(_merge(OmegaConf.structured(Config), values, "config"))
    validate(config)
    return config


def to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def validate(config: Config) -> None:
    """Raise one ConfigError listing every problem found in the values (not the files)."""
    from translate.methods import RECIPES  # late: the registries import this module
    from translate.networks import DISCRIMINATORS, GENERATORS

    problems = []
    for key, allowed in CHOICES.items():
        group, name = key.split(".")
        value = getattr(getattr(config, group), name)
        if value not in allowed:
            problems.append(f"{key}={value!r} is not one of {', '.join(allowed)}")
    m, d, t = config.model, config.data, config.train
    for key, value, registry in (
        ("model.recipe", m.recipe, RECIPES),
        ("model.netG", m.netG, GENERATORS),
        ("model.netD", m.netD, DISCRIMINATORS),
    ):
        if value not in registry:
            problems.append(f"{key}={value!r} is not registered; known: {', '.join(sorted(registry))}")
    for key, value in (
        ("model.ngf", m.ngf), ("model.ndf", m.ndf), ("model.n_layers_D", m.n_layers_D),
        ("data.batch_size", d.batch_size), ("data.load_size", d.load_size), ("data.crop_size", d.crop_size),
        ("train.gradient_accumulation_steps", t.gradient_accumulation_steps),
        ("train.checkpoint_every", t.checkpoint_every), ("train.sample_every", t.sample_every),
        ("train.log_every", t.log_every), ("train.keep_checkpoints", t.keep_checkpoints),
        ("train.max_nonfinite_steps", t.max_nonfinite_steps),
    ):
        if value < 1:
            problems.append(f"{key}={value} must be at least 1")
    for key, value in (("model.input_nc", m.input_nc), ("model.output_nc", m.output_nc)):
        if value not in (1, 2, 3):
            problems.append(f"{key}={value} must be 1, 2 or 3")
    if t.n_epochs < 0 or t.n_epochs_decay < 0 or t.n_epochs + t.n_epochs_decay < 1:
        problems.append("train.n_epochs + train.n_epochs_decay must be at least 1 (and neither negative)")
    if t.max_steps is not None and t.max_steps < 1:
        problems.append(f"train.max_steps={t.max_steps} must be at least 1 (or null for no limit)")
    if d.num_workers < 0:
        problems.append(f"data.num_workers={d.num_workers} must be 0 or more")
    if t.lr <= 0:
        problems.append(f"train.lr={t.lr} must be positive")
    if not 0 < t.ema_decay < 1:
        problems.append(f"train.ema_decay={t.ema_decay} must be between 0 and 1")
    if d.preprocess in ("resize_and_crop", "scale_width_and_crop") and d.crop_size > d.load_size:
        problems.append(f"data.crop_size={d.crop_size} is larger than data.load_size={d.load_size}")
    if m.netG in GENERATORS and d.preprocess != "none":
        min_size = GENERATORS[m.netG].min_size
        if d.crop_size < min_size:
            problems.append(
                f"model.netG={m.netG} needs images of at least {min_size} px but data.crop_size={d.crop_size}; "
                f"use a smaller network (e.g. unet_128) or a larger crop"
            )
    if t.best_metric and t.best_metric not in t.eval_metrics:
        problems.append(f"train.best_metric={t.best_metric!r} is not among train.eval_metrics={t.eval_metrics}")
    if t.best_metric and t.eval_every < 1:
        problems.append("train.best_metric needs train.eval_every (steps between evaluations)")
    if not d.root and not d.builtin:
        problems.append("data.root is empty: give the dataset folder, e.g. data.root=/path/to/facades")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
