"""Typed run configuration: YAML files plus dotted command-line overrides, validated before any work.

Key names follow the reference CycleGAN/pix2pix options (netG, ngf, load_size, n_epochs...) so that
its users can guess them; they live in three groups: ``model``, ``data`` and ``train``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A configuration problem the user has to fix; the message lists every problem found."""


@dataclass
class ModelConfig:
    """Keys every recipe shares; a recipe's own options live in its section ``model.<recipe>`` (see translate.methods),
    and a recipe may change these defaults to its paper's (pix2pix: netG unet_256, norm batch, gan_mode vanilla)."""

    recipe: str = "cyclegan"  # the reference's --model: a registered recipe, or path/to/file.py:name
    netG: str = "resnet_9blocks"  # a registered generator, or auto (CycleGAN): a U-Net if residual, else the ResNet
    netD: str = "basic"
    ngf: int = 64
    ndf: int = 64
    n_layers_D: int = 3
    norm: str = "instance"
    init_type: str = "normal"
    init_gain: float = 0.02
    no_dropout: bool = False
    input_nc: int = 3  # channels of the network input (side A), any number: checked against the data's files
    output_nc: int = 3  # channels of the output (side B)
    gan_mode: str = "lsgan"  # vanilla | lsgan | wgangp | hinge | any registered with register_gan_mode
    lambda_gp: float = 10.0  # WGAN-GP's gradient penalty weight
    n_critic: int = 1  # D steps per G step (WGAN-GP: 5)
    r1_gamma: float = 0.0  # R1 penalty weight γ on D's real inputs (0: off)
    r1_every: int = 16  # lazy R1: every k steps, scaled by k (StyleGAN2); 1: in every D step
    spectral_norm: bool = False  # spectral normalisation of D's convolutions (Miyato et al. 2018)
    minibatch_stddev: bool = False  # a minibatch standard-deviation channel before D's last layer (Karras et al.)
    # Generator upsampling: the reference's transposed convolutions, or resize + convolution (Odena et al. 2016),
    # which avoids checkerboard artefacts.
    upsample: str = "transpose"
    # A generator that starts as the identity and learns a change to its input (translate.networks.generators.
    # residual_output): for tasks whose output keeps most of the input (styles, seasons, colour, restoration).
    # auto: chosen from the training data before the networks are built (translate.data.gap: false where the two
    # domains' colours are far apart, as a drawing on white and a photo, true elsewhere); config.yaml keeps the choice.
    residual: bool | str = False
    sync_bn: bool = False


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
    # How 3-D arrays (.npy / .npz, and TIFFs whose axes do not say) are laid out: hwc, chw, or auto (the smallest axis,
    # first or last, is the channels).
    array_layout: str = "auto"
    # Intensities → the networks' [-1, 1], per side (translate.normalization): auto (by sample type: 8-bit /255 as
    # always, 16-bit /65535, float as [0, 1]), minmax (of the dataset, per channel), percentile (per channel, clipped),
    # fixed (normalize_range), meanstd (mean ± 3 std → ±1). Fitted once from the train split at scan time (cached).
    normalize: str = "auto"
    normalize_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])  # percentile: low and high
    normalize_range: list[float] = field(default_factory=list)  # fixed: [low, high] in data units, e.g. [0, 4095]
    normalize_range_B: list[float] = field(default_factory=list)  # fixed: side B's range where it differs from A's
    # Filled when the dataset is built: each side's fitted normalisation ({"A": {...}, "B": {...}}), so the run's
    # config.yaml and its exported model keep them. Given (a run's config.yaml), they are used as they are where the
    # method and its setting match.
    normalize_stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupOptimizer:
    """Adam settings of one optimizer group (train.optimizers.<group>); unset values follow train.lr/beta1/beta2."""

    lr: float | None = None
    beta1: float | None = None
    beta2: float | None = None


@dataclass
class TrainConfig:
    n_epochs: int = 100
    n_epochs_decay: int = 100
    max_steps: int | None = None  # stop after this many optimizer steps (demos, tests)
    lr: float = 0.0002
    beta1: float = 0.5
    beta2: float = 0.999
    optimizers: dict[str, GroupOptimizer] = field(default_factory=dict)  # per group, e.g. D.lr (TTUR)
    lr_policy: str = "linear"  # linear | step | cosine | constant
    lr_decay_iters: int = 50  # epochs between decays for lr_policy=step
    warmup_steps: int = 0  # lr * step / warmup_steps over the first training steps, then lr_policy alone
    seed: int = 0
    output_dir: str = ""  # default runs/<config name>
    checkpoint_every: int = 5000  # steps
    keep_checkpoints: int = 3
    sample_every: int = 1000  # steps
    log_every: int = 100  # steps
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16 (auto: bf16 where the hardware has it, else fp32)
    gradient_accumulation_steps: int = 1
    ema: bool = False
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + t) / (10 + t)) at update t = 0, 1...: short runs too
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
    # Stop when best_metric has not improved by more than early_stop_min_delta for this many evaluations (0: off).
    early_stop: int = 0
    early_stop_min_delta: float = 0.0
    # Memory: recompute activations in the backward pass (torch.utils.checkpoint) instead of keeping them...
    gradient_checkpointing: bool = False
    # ...or let a budget choose, from a measured probe step: "6GiB", "512MiB", or a fraction of the GPU's memory (the
    # machine's RAM on a CPU), e.g. 0.5. Tried in turn: as configured, checkpointing, micro-batches with gradient
    # accumulation at the same effective batch, bf16 where the hardware has it. "" (off).
    max_memory: str = ""
    # Weight of the equivariance term for video stability (Eilertsen et al. 2019): mean |G(T(x)) - T(G(x))| for a
    # small random shift, rotation and zoom T each step (translate.methods.equivariance). 0: off.
    temporal: float = 0.0
    report: bool = True  # write report/index.html at the end of training
    # Which channels sample grids show (translate.engine.samples): 3 indices as RGB or 1 as gray, for every image with
    # that many channels; [] (default): the first three, gray for one or two.
    sample_channels: list[int] = field(default_factory=list)


@dataclass
class Config:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES = {
    "model.init_type": ("normal", "xavier", "kaiming", "orthogonal"),
    "model.upsample": ("transpose", "resize_conv"),
    "data.direction": ("AtoB", "BtoA"),
    "data.preprocess": ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"),
    "data.on_bad_file": ("error", "skip"),
    "data.verify": ("full", "header"),
    "data.array_layout": ("auto", "hwc", "chw"),
    "data.normalize": ("auto", "minmax", "percentile", "fixed", "meanstd"),
    "train.lr_policy": ("linear", "step", "cosine", "constant"),
    "train.mixed_precision": ("auto", "no", "bf16", "fp16"),
    "train.eval_split": ("train", "val", "test"),
}
# Choices that come from registries (module, dict): registering a recipe, network, loss or dataset layout needs no
# edit here. Imported when a config is validated, so that this module imports none of them.
REGISTRIES = {
    "model.recipe": ("translate.methods", "RECIPES"),
    "model.netG": ("translate.networks", "GENERATORS"),
    "model.netD": ("translate.networks", "DISCRIMINATORS"),
    "model.norm": ("translate.networks.layers", "NORMS"),
    "model.gan_mode": ("translate.losses", "GAN_MODES"),
    "data.dataset_mode": ("translate.data", "DATASETS"),
}


def registry(key: str) -> dict:
    module, name = REGISTRIES[key]
    return getattr(importlib.import_module(module), name)


def unregistered(key: str, value: Any) -> str:
    """The message for a value that ``key``'s registry does not hold, with the closest registered name."""
    known = sorted(registry(key))
    match = difflib.get_close_matches(str(value), known, n=1, cutoff=0.5)
    hint = f"did you mean '{match[0]}'? " if match else ""
    return f"{key}={value!r} is not registered; {hint}known: {', '.join(known)}"


def recipe_class(value: str):
    """The recipe class of ``model.recipe``: a registered name, or ``path/to/file.py:name`` (the file is imported
    once; it registers its recipe with ``@register_recipe``). None when unknown."""
    recipes = registry("model.recipe")
    path, _, name = value.rpartition(":")
    if path.endswith(".py"):
        if name not in recipes:
            _import_file(Path(path), f"model.recipe={value}")
        if name not in recipes:
            raise ConfigError(f"model.recipe={value}: {path} registers no recipe named '{name}' "
                              f"(known: {', '.join(sorted(recipes))})")
        return recipes[name]
    return recipes.get(value)


def _import_file(path: Path, source: str) -> None:
    if not path.is_file():
        raise ConfigError(f"{source}: no such file {path}")
    spec = importlib.util.spec_from_file_location(f"translate_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(f"{source}: importing {path} failed: {type(e).__name__}: {e}") from None


def schema(recipe: str = "cyclegan") -> DictConfig:
    """The config schema for ``recipe``: the shared keys with the recipe's paper defaults, plus its options section
    ``model.<name>``."""
    cls = recipe_class(recipe)
    if cls is None:
        return OmegaConf.structured(Config)
    return OmegaConf.merge(OmegaConf.structured(_config_class(cls.name, cls.options)), cls.defaults)


@functools.cache  # one class per recipe, so that configs of the same recipe compare equal
def _config_class(name: str, options: type | None) -> type:
    if options is None:
        return Config
    model = make_dataclass("ModelConfig", [(name, options, field(default_factory=options))], bases=(ModelConfig,))
    return make_dataclass("Config", [("model", model, field(default_factory=model))], bases=(Config,))


def all_keys(cfg: DictConfig | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of a schema (default: the default recipe's), e.g. ``model.netG``."""
    cfg = schema() if cfg is None else cfg
    keys = []
    for key in cfg:
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is not dict:
            keys += all_keys(node, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _closest(key: str, cfg: DictConfig) -> str:
    keys = all_keys(cfg)
    parts = key.split(".")
    other = recipe_class(parts[1]) if len(parts) >= 2 and parts[0] == "model" else None
    if other is not None and other is not recipe_class(str(cfg.model.recipe)):
        return (f" (model.{parts[1]}.* are options of recipe {parts[1]}, but this config has "
                f"model.recipe={cfg.model.recipe})")
    leaf = parts[-1].lower()
    # A right key in the wrong group or with the wrong case first, then the nearest spelling.
    match = [k for k in keys if k.rsplit(".", 1)[-1].lower() == leaf] or difflib.get_close_matches(key, keys, n=1,
                                                                                                 cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except ConfigKeyError as e:
        key = e.full_key or str(e.key)
        raise ConfigError(f"{source}: unknown key '{key}'{_closest(key, base)}") from None
    except ValidationError as e:
        raise ConfigError(f"{source}: bad value for '{e.full_key}': {e.msg.splitlines()[0]}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{source}: {e}") from None


def _leaves(node: DictConfig, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a loaded YAML mapping; lists are leaves."""
    out = []
    for key, value in node.items_ex(resolve=False):
        if isinstance(value, DictConfig) and len(value):
            out += _leaves(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _requested_recipe(loaded: DictConfig | None, overrides) -> str:
    recipe = OmegaConf.select(loaded, "model.recipe", default=None) if loaded is not None else None
    for item in overrides:
        key, _, value = str(item).partition("=")
        if key.strip() == "model.recipe":
            recipe = value.strip()
    return str(recipe or ModelConfig.recipe)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (optional), apply ``group.key=value`` overrides, validate, return a typed Config.
    Every problem is reported at once: each bad key of the file, each bad override, each bad value."""
    loaded = None
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
    recipe = _requested_recipe(loaded, overrides)
    if recipe_class(recipe) is None:
        # Alone: the keys of the recipe meant (model.cyclegan.*) would otherwise each be reported as unknown first.
        raise ConfigError(unregistered("model.recipe", recipe))
    cfg = schema(recipe)
    problems = []
    # Merged leaf by leaf, so that every mistyped key of the file is reported, not only the first.
    for key, value in _leaves(loaded) if loaded is not None else ():
        try:
            cfg = _merge(cfg, _nested(key, value), str(path))
        except ConfigError as e:
            problems.append(str(e))
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
        problems += str(e).split("\n  - ")[1:] or [str(e)]
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return config


def _nested(key: str, value: Any) -> DictConfig:
    node = OmegaConf.create()
    OmegaConf.update(node, key, value, force_add=True)
    return node


def _typed(cfg: DictConfig) -> Config:
    config: Config = OmegaConf.to_object(cfg)
    # YAML 1.1 reads a bare `no` as false, which a str field then holds as "False": train.mixed_precision=no.
    if config.train.mixed_precision in ("False", "false"):
        config.train.mixed_precision = "no"
    return config


def from_dict(values: dict) -> Config:
    """Build a validated Config from a nested dict (e.g. a resolved config.yaml read back)."""
    recipe = str((values.get("model") or {}).get("recipe") or ModelConfig.recipe)
    config = _typed(_merge(schema(recipe), values, "config"))
    validate(config)
    return config


def to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def validate(config: Config) -> None:
    """Raise one ConfigError listing every problem found in the values (not the files)."""
    problems = []
    for key, allowed in CHOICES.items():
        group, name = key.split(".")
        value = getattr(getattr(config, group), name)
        if value not in allowed:
            problems.append(f"{key}={value!r} is not one of {', '.join(allowed)}")
    m, d, t = config.model, config.data, config.train
    for key in REGISTRIES:
        group, name = key.split(".")
        value, known = getattr(getattr(config, group), name), registry(key)
        if value not in known and not (key == "model.recipe" and recipe_class(value)) and \
                not (key == "model.netG" and value == "auto"):  # resolved from the data (translate.data.gap)
            problems.append(unregistered(key, value))
    recipe = recipe_class(m.recipe)
    if recipe is not None:
        problems += _check_recipe(recipe, config)
    for key, value in (
        ("model.ngf", m.ngf), ("model.ndf", m.ndf), ("model.n_layers_D", m.n_layers_D),
        ("data.batch_size", d.batch_size), ("data.load_size", d.load_size), ("data.crop_size", d.crop_size),
        ("train.gradient_accumulation_steps", t.gradient_accumulation_steps),
        ("train.checkpoint_every", t.checkpoint_every), ("train.sample_every", t.sample_every),
        ("train.log_every", t.log_every), ("train.keep_checkpoints", t.keep_checkpoints),
        ("train.max_nonfinite_steps", t.max_nonfinite_steps), ("model.n_critic", m.n_critic),
        ("model.r1_every", m.r1_every),
    ):
        if value < 1:
            problems.append(f"{key}={value} must be at least 1")
    for key, value in (("model.input_nc", m.input_nc), ("model.output_nc", m.output_nc)):
        if value < 1:
            problems.append(f"{key}={value} must be at least 1")
    problems += _check_channels_and_normalisation(config)
    if t.n_epochs < 0 or t.n_epochs_decay < 0 or t.n_epochs + t.n_epochs_decay < 1:
        problems.append("train.n_epochs + train.n_epochs_decay must be at least 1 (and neither negative)")
    if t.max_steps is not None and t.max_steps < 1:
        problems.append(f"train.max_steps={t.max_steps} must be at least 1 (or null for no limit)")
    if d.num_workers < 0:
        problems.append(f"data.num_workers={d.num_workers} must be 0 or more")
    if t.lr <= 0:
        problems.append(f"train.lr={t.lr} must be positive")
    if m.r1_gamma < 0:
        problems.append(f"model.r1_gamma={m.r1_gamma} must be 0 (off) or positive")
    if t.diffaugment:
        from translate.diffaugment import parse_policy

        try:
            parse_policy(t.diffaugment)
        except ValueError as e:
            problems.append(f"train.diffaugment={t.diffaugment!r}: {e}")
    if t.temporal < 0:
        problems.append(f"train.temporal={t.temporal} must be 0 (off) or positive")
    if t.warmup_steps < 0:
        problems.append(f"train.warmup_steps={t.warmup_steps} must be 0 (off) or positive")
    if isinstance(m.residual, str) and m.residual != "auto":
        problems.append(f"model.residual={m.residual!r} must be true, false or auto")
    if m.netG == "auto" and m.recipe != "cyclegan":
        problems.append(f"model.netG=auto chooses between CycleGAN's generators (a U-Net that starts as its input, "
                        f"the paper's ResNet); name the generator of recipe {m.recipe}")
    if m.netG == "auto" and d.preprocess == "none":
        problems.append("model.netG=auto with data.preprocess=none: name the generator (images are padded to its "
                        "stride before it is chosen)")
    if not 0 < t.ema_decay < 1:
        problems.append(f"train.ema_decay={t.ema_decay} must be between 0 and 1")
    if d.preprocess in ("resize_and_crop", "scale_width_and_crop") and d.crop_size > d.load_size:
        problems.append(f"data.crop_size={d.crop_size} is larger than data.load_size={d.load_size}")
    generators = registry("model.netG")
    if m.netG in generators and d.preprocess != "none":
        min_size = generators[m.netG].min_size
        if d.crop_size < min_size:
            problems.append(
                f"model.netG={m.netG} needs images of at least {min_size} px but data.crop_size={d.crop_size}; "
                f"use a smaller network (e.g. unet_128) or a larger crop"
            )
    if t.best_metric and t.best_metric not in t.eval_metrics:
        problems.append(f"train.best_metric={t.best_metric!r} is not among train.eval_metrics={t.eval_metrics}")
    if t.best_metric and t.eval_every < 1:
        problems.append("train.best_metric needs train.eval_every (steps between evaluations)")
    if t.early_stop < 0:
        problems.append(f"train.early_stop={t.early_stop} must be 0 (off) or a number of evaluations")
    if t.early_stop and not t.best_metric:
        problems.append("train.early_stop needs train.best_metric (and train.eval_every): the metric it watches")
    if t.early_stop_min_delta < 0:
        problems.append(f"train.early_stop_min_delta={t.early_stop_min_delta} must be 0 or positive")
    if t.max_memory:
        from translate.engine.memory import parse_memory

        try:
            parse_memory(t.max_memory)
        except ValueError as e:
            problems.append(str(e))
    if not d.root and d.builtin.lower() in ("", "none"):
        problems.append("data.root is empty: give the dataset folder, e.g. data.root=/path/to/facades")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def _check_channels_and_normalisation(config: Config) -> list[str]:
    """data.normalize's settings, train.sample_channels, and DiffAugment's colour ops (gray or RGB images only)."""
    m, d, t = config.model, config.data, config.train
    problems = []
    if d.normalize == "percentile" and not (len(d.normalize_percentiles) == 2
                                            and 0 <= d.normalize_percentiles[0] < d.normalize_percentiles[1] <= 100):
        problems.append(f"data.normalize_percentiles={list(d.normalize_percentiles)} must be [low, high] with "
                        f"0 <= low < high <= 100, e.g. [0.5, 99.5]")
    for key, value in (("data.normalize_range", d.normalize_range), ("data.normalize_range_B", d.normalize_range_B)):
        if value and not (len(value) == 2 and value[0] < value[1]):
            problems.append(f"{key}={list(value)} must be [low, high] with low < high, e.g. [0, 4095]")
    if d.normalize == "fixed" and not d.normalize_range:
        problems.append("data.normalize=fixed needs data.normalize_range=[low, high] in the data's units, "
                        "e.g. [0, 4095] for 12-bit data")
    if d.normalize != "fixed" and (d.normalize_range or d.normalize_range_B):
        problems.append(f"data.normalize_range is for data.normalize=fixed (this config: {d.normalize})")
    if t.sample_channels and (len(t.sample_channels) not in (1, 3) or min(t.sample_channels) < 0):
        problems.append(f"train.sample_channels={list(t.sample_channels)} must be 3 channel indices (shown as RGB) "
                        f"or 1 (gray), each 0 or more, e.g. [2, 1, 0]")
    if "color" in [p.strip() for p in t.diffaugment.split(",")] and d.dataset_mode != "colorization":
        odd = [f"{k}={v}" for k, v in (("model.input_nc", m.input_nc), ("model.output_nc", m.output_nc))
               if v not in (1, 3)]
        if odd:
            problems.append(f"train.diffaugment={t.diffaugment!r}: its color op changes the brightness, saturation "
                            f"and contrast of gray or RGB images, and {', '.join(odd)}; use translation,cutout")
    return problems


def _check_recipe(recipe, config: Config) -> list[str]:
    """Optimizer groups named in train.optimizers must exist in the recipe; the recipe checks its own options
    (``Recipe.check``)."""
    return [f"train.optimizers.{group}: recipe {recipe.name} has no optimizer group '{group}' "
            f"(its groups: {', '.join(recipe.groups)})"
            for group in config.train.optimizers if group not in recipe.groups] + recipe.check(config)
