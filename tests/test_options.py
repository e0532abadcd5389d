"""Every setting does what it says. Each key of the config schema (translate.config and every recipe's options) and
each flag of the ``translate`` subcommands is listed here with the observable it must change: a row of a table below,
a test of this file, or a named test elsewhere. The inventory tests fail when an option is added without an entry.

The defects these tests are for change no shape and raise nothing: a setting silently ignored (n_layers_D,
init_gain, JPEG quality, DiffAugment's per-step draws, a per-group lr), an output that loses quality at the same
size (aliasing from a bilinear shrink, a blocky ×4 alpha, sample grids drawn in training mode), and bookkeeping
that goes stale (a shard summary of another job merged as done). Observables stay cheap: networks built, datasets
indexed, a Trainer constructed, a few steps of a tiny run.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import default_collate

from translate.cli import build_parser, main
from translate.config import ConfigError, GroupOptimizer, all_keys, load_config, recipe_class, schema
from translate.data import build_dataset
from translate.engine.trainer import Trainer, run_directory, train
from translate.methods import RECIPES, Role
from translate.networks import create_discriminator, create_generator, init_weights
from translate.networks.pretrained import save_pretrained

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# --- how the rows below build their configs -------------------------------------------------------------------
def as_override(key: str, value) -> str:
    if isinstance(value, bool):
        value = str(value).lower()
    elif value is None:
        value = "null"
    elif isinstance(value, list):
        value = "[" + ",".join(map(str, value)) + "]"
    return f"{key}={value}"


@pytest.fixture
def make(tiny_config, dcgan_config, paired_root, tmp_path):
    """make(recipe, *overrides) -> a tiny Config: pix2pix/cyclegan/cut/fastcut as conftest's tiny_config, dcgan on
    the digits, sr on the paired images as one folder (32² crops, one residual block)."""

    def build(recipe: str, *overrides: str):
        if recipe == "dcgan":
            return dcgan_config(tmp_path / "run", *overrides)
        if recipe == "sr":
            return load_config(None, ["model.recipe=sr", f"data.root={paired_root}", "data.dataset_mode=single",
                                      "data.load_size=32", "data.crop_size=32", "data.batch_size=2", "model.ngf=8",
                                      "model.ndf=8", "model.sr.n_blocks=1", "data.num_workers=0",
                                      "train.progress=false", "train.mixed_precision=no",
                                      f"train.output_dir={tmp_path / 'run'}", *overrides])
        return tiny_config(recipe, *overrides)

    return build


def first_batch(config, n: int = 2) -> dict:
    dataset = build_dataset(config, "train")
    dataset.set_epoch(0)
    return default_collate([dataset[i] for i in range(min(n, len(dataset)))])


def built(config):
    """The recipe and its networks from seed 0 (networks sized from data, CUT's F, from the first batch)."""
    recipe = recipe_class(config.model.recipe)(config)
    torch.manual_seed(0)
    nets = recipe.build()
    if recipe.names(Role.auxiliary):
        nets.update(recipe.build_after_first_batch(nets, first_batch(config)))
    return recipe, nets


# --- observables: each maps a Config to something comparable ----------------------------------------------------
def architecture(config) -> dict:
    """Every module of every network: its name, type and its own parameters' shapes."""
    _, nets = built(config)
    return {name: [(n, type(m).__name__, [tuple(p.shape) for p in m.parameters(recurse=False)])
                   for n, m in net.named_modules()] for name, net in nets.items()}


def init_scale(config) -> dict:
    """The standard deviation of each network's convolution and linear weights as initialised."""
    _, nets = built(config)
    return {name: round(torch.cat([m.weight.detach().flatten() for m in net.modules()
                                   if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)]).std().item(), 4)
            for name, net in nets.items()}


def generator_output(config) -> tuple:
    """The first exported generator (eval mode) on a fixed input: how far its output is from the input."""
    recipe, nets = built(config)
    G = nets[recipe.names(Role.exported)[0]].eval()
    x = torch.rand(1, config.model.input_nc, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        return round((G(x) - x).abs().mean().item(), 4),


def losses(config) -> tuple:
    """Every loss term of one pass over the recipe's phases on the first batch, from seed 0 (CUT's first draw,
    0.496, flips its input when flip_equivariance asks), and the image pools' sizes after it. Cheap: 16² crops and
    the pixel discriminator (no loss row is about D's layout)."""
    config.data.load_size = config.data.crop_size = 16
    config.model.netD = "pixel"
    batch = first_batch(config)
    recipe, nets = built(config)
    torch.manual_seed(0)
    terms, ctx = {}, {}
    for phase in recipe.phases():
        terms.update(getattr(recipe, phase.loss)(nets, batch, ctx))
    pools = {k: len(v["images"]) for k, v in recipe.state_dict().items()}
    return {k: round(v.item(), 5) for k, v in terms.items()}, pools


def phases(config) -> list:
    recipe = recipe_class(config.model.recipe)(config)
    return [(p.group, p.loss, p.every, p.repeat) for p in recipe.phases()]


def fixed_samples(config) -> tuple:
    """What a noise recipe shows in its sample grids: how many images, and their sums."""
    recipe, nets = built(config)
    visuals = recipe.visuals(first_batch(config), {"G": nets["G"]})
    return len(visuals), [round(v.sum().item(), 3) for v in visuals]


def items(config) -> tuple:
    """The training dataset's length and its first items: keys, shapes, pixel sums."""
    dataset = build_dataset(config, "train")
    dataset.set_epoch(0)
    rows = []
    for item in (dataset[i] for i in range(3)):
        images = [item[k] for k in ("A", "B") if k in item]
        rows.append((sorted(item), [tuple(x.shape) for x in images], [round(x.sum().item(), 3) for x in images]))
    return len(dataset), rows


def variety(config) -> int:
    """How many different versions of item 0 eight epochs give (random flips and augmentations)."""
    dataset = build_dataset(config, "train")
    seen = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        seen.add(dataset[0]["A"].numpy().tobytes())
    return len(seen)


def loader(config) -> tuple:
    from translate.data.loader import build_loader

    built_loader = build_loader(build_dataset(config, "train"), config, "cpu")
    return built_loader.batch_size, built_loader.num_workers


def order(config) -> list:
    """The files of one epoch's batches, in order."""
    from translate.data.loader import build_loader

    dataset = build_dataset(config, "train")
    return [path for batch in build_loader(dataset, config, "cpu") for path in batch["A_path"]]


def run_dir(config) -> str:
    return str(run_directory(config))


def optimizers(config) -> dict:
    """Each optimizer group's Adam settings, per parameter group, and how many tensors it steps."""
    trainer = Trainer(config)
    return {group: [(pg["lr"], pg["betas"], len(pg["params"])) for pg in opt.optimizer.param_groups]
            for group, opt in trainer.optimizers.items()}


def memory_format(config) -> dict:
    trainer = Trainer(config)
    return {name: all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.dim() == 4)
            for name, net in trainer.nets.items()}


# --- the table: (option, recipe, value a, value b, observable that must differ, other overrides) ----------------
CUT_ROWS = []
for _recipe in ("cut", "fastcut"):
    CUT_ROWS += [
        (f"model.{_recipe}.lambda_GAN", _recipe, 1.0, 2.0, losses, ()),
        (f"model.{_recipe}.lambda_NCE", _recipe, 1.0, 3.0, losses, ()),
        (f"model.{_recipe}.nce_idt", _recipe, True, False, losses, ()),
        (f"model.{_recipe}.nce_layers", _recipe, [0, 4, 8, 12, 16], [0, 4], architecture, ()),
        (f"model.{_recipe}.nce_T", _recipe, 0.07, 0.5, losses, ()),
        (f"model.{_recipe}.num_patches", _recipe, 256, 4, losses, ()),
        (f"model.{_recipe}.netF_nc", _recipe, 256, 32, architecture, ()),
        (f"model.{_recipe}.flip_equivariance", _recipe, False, True, losses, ()),
    ]

ROWS = [
    ("name", "pix2pix", "a", "b", run_dir, ("train.output_dir=''",)),
    ("model.recipe", "pix2pix", "pix2pix", "cyclegan", architecture, ()),
    ("model.netG", "pix2pix", "resnet_6blocks", "resnet_9blocks", architecture, ()),
    ("model.netD", "pix2pix", "basic", "pixel", architecture, ()),
    ("model.ngf", "pix2pix", 8, 4, architecture, ()),
    ("model.ndf", "pix2pix", 8, 4, architecture, ()),
    ("model.n_layers_D", "pix2pix", 2, 4, architecture, ("model.netD=n_layers",)),
    ("model.norm", "pix2pix", "batch", "instance", architecture, ()),
    ("model.init_type", "pix2pix", "normal", "xavier", init_scale, ()),
    # (orthogonal: test_init_scale_follows_each_init_types_formula; kaiming ignores the gain, as the reference does.)
    ("model.init_gain", "pix2pix", 0.02, 0.5, init_scale, ("model.init_type=normal",)),
    ("model.init_gain", "pix2pix", 0.02, 0.5, init_scale, ("model.init_type=xavier",)),
    ("model.no_dropout", "pix2pix", False, True, architecture, ()),
    ("model.input_nc", "pix2pix", 3, 1, architecture, ()),
    ("model.output_nc", "pix2pix", 3, 1, architecture, ()),
    ("model.gan_mode", "pix2pix", "vanilla", "lsgan", losses, ()),
    ("model.lambda_gp", "pix2pix", 10.0, 1.0, losses, ("model.gan_mode=wgangp",)),
    ("model.n_critic", "pix2pix", 1, 3, phases, ()),
    ("model.r1_gamma", "pix2pix", 0.0, 1.0, phases, ()),
    ("model.r1_every", "pix2pix", 16, 4, phases, ("model.r1_gamma=1",)),
    ("model.spectral_norm", "pix2pix", False, True, architecture, ()),
    ("model.minibatch_stddev", "pix2pix", False, True, architecture, ()),
    ("model.upsample", "pix2pix", "transpose", "resize_conv", architecture, ()),
    ("model.residual", "pix2pix", False, True, generator_output, ()),
    ("model.pix2pix.lambda_L1", "pix2pix", 100.0, 10.0, losses, ()),
    ("model.pix2pix.pool_size", "pix2pix", 0, 4, losses, ()),
    ("model.cyclegan.lambda_A", "cyclegan", 10.0, 5.0, losses, ()),
    ("model.cyclegan.lambda_B", "cyclegan", 10.0, 5.0, losses, ()),
    ("model.cyclegan.lambda_identity", "cyclegan", 0.5, 0.0, losses, ()),
    ("model.cyclegan.pool_size", "cyclegan", 4, 0, losses, ()),
    ("model.cyclegan.smooth_l1_beta", "cyclegan", 0.0, 0.5, losses, ()),
    *CUT_ROWS,
    ("model.dcgan.nz", "dcgan", 16, 8, architecture, ()),
    ("model.dcgan.n_samples", "dcgan", 32, 8, fixed_samples, ()),
    ("model.dcgan.sample_seed", "dcgan", 1234, 1, fixed_samples, ()),
    ("model.sr.n_blocks", "sr", 1, 2, architecture, ()),
    ("model.sr.lambda_L1", "sr", 1.0, 2.0, losses, ()),
    ("model.sr.lambda_GAN", "sr", 0.005, 0.5, losses, ()),
    ("data.root", "pix2pix", "{paired_root}", "{unpaired_root}", items, ("data.dataset_mode=single",)),
    ("data.dataset_mode", "pix2pix", "aligned", "single", items, ()),
    ("data.direction", "pix2pix", "AtoB", "BtoA", items, ()),
    ("data.load_size", "pix2pix", 32, 40, items, ()),
    ("data.crop_size", "pix2pix", 32, 16, items, ()),
    ("data.preprocess", "pix2pix", "resize_and_crop", "none", items, ("data.crop_size=16",)),
    ("data.no_flip", "pix2pix", False, True, variety, ()),
    ("data.max_dataset_size", "pix2pix", None, 3, items, ()),
    ("data.serial_batches", "pix2pix", False, True, order, ()),
    ("data.batch_size", "pix2pix", 1, 2, loader, ()),
    ("data.num_workers", "pix2pix", 0, 2, loader, ()),
    ("data.augment", "pix2pix", [], ["rotate"], variety, ("data.no_flip=true",)),
    ("train.lr", "pix2pix", 0.0002, 0.001, optimizers, ()),
    ("train.beta1", "pix2pix", 0.5, 0.9, optimizers, ()),
    ("train.beta2", "pix2pix", 0.999, 0.99, optimizers, ()),
    ("train.optimizers.<group>.lr", "pix2pix", 0.0002, 0.001, optimizers, ("group=D",)),
    ("train.optimizers.<group>.beta1", "pix2pix", 0.5, 0.0, optimizers, ("group=G",)),
    ("train.optimizers.<group>.beta2", "pix2pix", 0.999, 0.9, optimizers, ("group=D",)),
    ("train.seed", "pix2pix", 0, 1, items, ("data.load_size=40",)),
    ("train.output_dir", "pix2pix", "{tmp_path}/x", "{tmp_path}/y", run_dir, ()),
    ("train.channels_last", "pix2pix", False, True, memory_format, ()),
    # The term's value and its motion by hand: tests/test_temporal_training.py.
    ("train.temporal", "pix2pix", 0.0, 0.5, losses, ()),
]


def row_id(row) -> str:
    option, recipe, *_, extra = row
    return f"{option}[{recipe}{''.join(',' + e for e in extra)}]"


@pytest.mark.parametrize("row", ROWS, ids=[row_id(r) for r in ROWS])
def test_the_option_changes_its_observable(row, make, paired_root, unpaired_root, tmp_path):
    option, recipe, a, b, observe, extra = row
    places = {"paired_root": paired_root, "unpaired_root": unpaired_root, "tmp_path": tmp_path}
    extra = list(extra)
    group = next((e.split("=")[1] for e in extra if e.startswith("group=")), None)
    extra = [e for e in extra if not e.startswith("group=")]
    key = option.replace("<group>", group) if group else option
    seen = []
    for value in (a, b):
        value = value.format(**places) if isinstance(value, str) else value
        config = make(recipe, f"train.output_dir={tmp_path / f'run_{len(seen)}'}", *extra, as_override(key, value))
        seen.append(observe(config))
    assert seen[0] != seen[1], f"{key}: {a!r} and {b!r} give the same {observe.__name__}: {seen[0]}"


# --- model.n_layers_D and model.init_gain: the structure and the scale by hand ------------------------------------
@pytest.mark.parametrize("n_layers", [1, 2, 4, 5])
def test_n_layers_discriminator_has_the_depth_asked_for(n_layers, make):
    net = create_discriminator("n_layers", input_nc=3, ndf=4, n_layers=n_layers, norm="batch")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # The reference's NLayerDiscriminator: n_layers stride-2 4×4 convolutions (widths ndf · min(2^n, 8)), then a
    # stride-1 one and the 1-channel output.
    assert [c.stride[0] for c in convs] == [2] * n_layers + [1, 1]
    assert [c.out_channels for c in convs] == [4] + [4 * min(2**n, 8) for n in range(1, n_layers + 1)] + [1]
    side = 128
    for conv in convs:  # kernel 4, padding 1
        side = (side + 2 - 4) // conv.stride[0] + 1
    assert net(torch.randn(1, 3, 128, 128)).shape == (1, 1, side, side)
    # The same through the config: model.n_layers_D reaches the discriminator of a recipe.
    _, nets = built(make("pix2pix", "model.netD=n_layers", f"model.n_layers_D={n_layers}"))
    assert sum(isinstance(m, nn.Conv2d) for m in nets["D"].modules()) == n_layers + 2


@pytest.mark.parametrize("gain", [0.02, 0.5])
@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_scale_follows_each_init_types_formula(init_type, gain):
    conv, norm = nn.Conv2d(64, 128, 3), nn.BatchNorm2d(4096)
    fan_in, fan_out = 64 * 9, 128 * 9
    torch.manual_seed(0)
    init_weights(nn.Sequential(conv, norm), init_type, gain)
    w = conv.weight.detach().double().flatten(1)  # 73,728 weights: the sample std is within 1 % of the true one
    if init_type == "orthogonal":  # rows orthonormal, times the gain: W Wᵀ = gain² I
        torch.testing.assert_close(w @ w.T, gain**2 * torch.eye(128, dtype=torch.double), atol=1e-5 * gain**2,
                                   rtol=0)
    else:
        std = {"normal": gain, "xavier": gain * math.sqrt(2 / (fan_in + fan_out)),
               "kaiming": math.sqrt(2 / fan_in)}[init_type]  # kaiming: gain-free, as in the reference
        assert w.std().item() == pytest.approx(std, rel=0.03)
        assert abs(w.mean().item()) < 0.03 * std
    assert torch.equal(conv.bias.detach(), torch.zeros(128))
    # Batch norm's scale: N(1, gain), its shift 0 (the reference's init_weights).
    assert norm.weight.detach().std().item() == pytest.approx(gain, rel=0.05)
    assert norm.weight.detach().mean().item() == pytest.approx(1, abs=0.05 * gain)


# --- translate convert: --quality, the ×4 alpha, --shard bookkeeping ----------------------------------------------
def noise_folder(root: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / f"img_{i}.png")
    return root


def convert(*args) -> int:
    return main(["convert", *map(str, args), "--device", "cpu", "--dtype", "fp32", "--workers", "1", "--quiet"])


def pillow_tables(pixels: np.ndarray, quality: int) -> dict:
    """The quantisation tables Pillow's own encoder writes at ``quality``."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).quantization


def test_convert_quality_sets_the_jpeg_quantisation(model_dir, tmp_path):
    src = noise_folder(tmp_path / "in", 1, size=64)
    assert convert(model_dir, src, tmp_path / "q30", "--format", "jpg", "--quality", "30") == 0
    assert convert(model_dir, src, tmp_path / "default", "--format", "jpg") == 0
    q30, default = (Image.open(tmp_path / name / "img_0.jpg") for name in ("q30", "default"))
    pixels = np.asarray(default.convert("RGB"))
    # The tables set by quality (libjpeg's standard tables scaled), independent of the pixels: the file says
    # which quality it was written at.
    assert q30.quantization == pillow_tables(pixels, 30)
    assert default.quantization == pillow_tables(pixels, 95) != pillow_tables(pixels, 30)
    assert (tmp_path / "q30" / "img_0.jpg").stat().st_size < (tmp_path / "default" / "img_0.jpg").stat().st_size


@pytest.fixture(scope="module")
def sr_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    spec = {"netG": "sr_resnet_x4", "input_nc": 3, "output_nc": 3, "ngf": 8, "n_blocks": 1}
    net = create_generator("sr_resnet_x4", **{k: v for k, v in spec.items() if k != "netG"})
    return save_pretrained(tmp_path_factory.mktemp("sr") / "model", {"G": net},
                           {"generators": {"G": spec}, "directions": {"AtoB": "G"}})


@pytest.mark.parametrize("tile", ["0", "16"])  # whole, and in tiles (another code path to the alpha)
def test_x4_conversion_upscales_alpha_smoothly(sr_model_dir, tmp_path, tile):
    # A horizontal ramp (8 grey levels a column) with an edge across its lower half.
    alpha = np.tile(np.arange(32, dtype=np.uint8) * 8, (24, 1))
    alpha[12:, 16:] = 0
    rgba = np.dstack([np.full((24, 32, 3), 128, np.uint8), alpha])
    (tmp_path / "in").mkdir()
    Image.fromarray(rgba).save(tmp_path / "in" / "a.png")
    assert convert(sr_model_dir, tmp_path / "in", tmp_path / "out", "--tile", tile) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert out.shape == (96, 128, 4)
    # Pillow's bilinear ×4 (pixel centres at half-pixel offsets, edges clamped), independent of torch.
    expected = np.asarray(Image.fromarray(alpha).resize((128, 96), Image.BILINEAR)).astype(int)
    assert np.abs(out[..., 3].astype(int) - expected).max() <= 1
    # Not blocky: along the ramp the 4 output pixels of an input pixel differ (nearest-neighbour ×4 repeats one).
    row = out[0, 2:-2, 3].astype(int)
    assert len(np.unique(row)) > 100


def shard_summary(out: Path, index: int, count: int) -> dict:
    return json.loads((out / f"convert_summary.shard-{index}-of-{count}.json").read_text())


def test_shard_summaries_of_another_job_are_not_merged(model_dir, tmp_path, capsys):
    src, out = noise_folder(tmp_path / "in", 4), tmp_path / "out"
    assert convert(model_dir, src, out, "--shard", "1/2") == 0
    noise_folder(tmp_path / "extra", 1, seed=9).joinpath("img_0.png").rename(src / "img_9.png")  # the folder changed
    capsys.readouterr()
    assert convert(model_dir, src, out, "--shard", "0/2") == 0
    printed = capsys.readouterr().out
    assert "shard 1/2: its summary is of another job" in printed and "input folder" in printed
    assert "shards not finished yet: 1" in printed and not (out / "convert_summary.json").exists()
    assert convert(model_dir, src, out, "--shard", "1/2") == 0  # the same job now: merged
    merged = json.loads((out / "convert_summary.json").read_text())
    assert (merged["found"], merged["converted"] + merged["skipped"]) == (5, 5)

    # Options: a shard written at another JPEG quality (or with another model or direction) is another job too.
    jpg = tmp_path / "jpg"
    assert convert(model_dir, src, jpg, "--shard", "1/2", "--format", "jpg", "--quality", "30") == 0
    capsys.readouterr()
    assert convert(model_dir, src, jpg, "--shard", "0/2", "--format", "jpg") == 0
    printed = capsys.readouterr().out
    assert "quality 30, not 95" in printed and "--overwrite" in printed
    assert not (jpg / "convert_summary.json").exists()
    assert convert(model_dir, src, jpg, "--shard", "1/2", "--format", "jpg", "--overwrite") == 0
    assert json.loads((jpg / "convert_summary.json").read_text())["job"]["quality"] == 95

    # A merged summary of the old job does not outlive a change of the folder: it would report the folder done.
    (src / "img_9.png").unlink()
    assert convert(model_dir, src, out, "--shard", "0/2") == 0
    assert not (out / "convert_summary.json").exists() and shard_summary(out, 0, 2)["found"] == 2


# --- training: DiffAugment's draws, the DCGAN sample grid, the per-group optimizer settings ----------------------
def augmentation_masks(config) -> list[list[torch.Tensor]]:
    """Per training step, per discriminator call: where D's input is exactly 0 (the pixels that translation fills
    and cutout erases; an image in [-1, 1] from 8-bit files or a tanh never is)."""
    trainer = Trainer(config)
    steps = []
    # Registered after DiffAugment's hook, so it sees the augmented input.
    trainer.nets["D"].register_forward_pre_hook(lambda module, args: steps[-1].append((args[0] == 0).all(1)))
    real_step = trainer.train_step

    def step(batch):
        steps.append([])
        return real_step(batch)

    trainer.train_step = step
    trainer.fit()
    return steps


def test_diffaugment_draws_anew_every_step_and_the_seed_repeats_the_draws(tiny_config, tmp_path):
    def run(name, seed):
        return augmentation_masks(tiny_config("pix2pix", "train.diffaugment=translation,cutout", "train.max_steps=3",
                                              f"train.seed={seed}", "train.report=false", "model.netD=pixel",
                                              "data.load_size=16", "data.crop_size=16",
                                              f"train.output_dir={tmp_path / name}"))

    first, again, other = run("a", 0), run("b", 0), run("c", 1)
    assert [len(calls) for calls in first] == [3, 3, 3]  # G's fake, then D's real and fake
    for calls in first:
        assert all(mask.float().mean() > 0.2 for mask in calls)  # a quarter cut out, plus a shift's border
    for call in range(3):
        masks = [calls[call] for calls in first]
        assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2]), call
    assert all(torch.equal(a, b) for s, t in zip(first, again) for a, b in zip(s, t))  # same seed: same draws
    assert not torch.equal(first[0][0], other[0][0])


def test_dcgan_sample_grid_is_what_the_exported_model_samples(dcgan_config, tmp_path):
    from translate.inference.sampler import Sampler

    config = dcgan_config(tmp_path / "run", "train.lr=0.01")  # big steps: train and eval mode batch norm differ
    run = train(config)
    grid = np.asarray(Image.open(run / "samples" / "step_000002.png").convert("L")).astype(float)
    o = config.model.dcgan
    # The model directory's samples of the grid's latents (the first n_samples of sample_seed), in eval mode.
    samples = Sampler.from_pretrained(run / "model", device="cpu", dtype="fp32").tensor(o.n_samples, o.sample_seed)
    side = config.data.crop_size
    for k, sample in enumerate(samples):
        column, row = divmod(k, 4)  # columns of 4, with 2 px of padding
        tile = grid[2 + row * (side + 2):(row + 1) * (side + 2), 2 + column * (side + 2):(column + 1) * (side + 2)]
        assert np.abs(tile - sample[0].numpy() * 255).max() <= 1, k


def test_optimizer_settings_are_per_group_not_per_network(tiny_config):
    # CUT's networks are G, D and F; its optimizer groups G = (G, F) and D.
    with pytest.raises(ConfigError) as error:
        tiny_config("cut", "train.optimizers.F.lr=0.001")
    assert "recipe cut has no optimizer group 'F' (its groups: G, D)" in str(error.value)
    trainer = Trainer(tiny_config("cut", "train.optimizers.G.lr=0.001", "train.optimizers.G.beta1=0.1",
                                  "train.optimizers.D.beta2=0.9"))
    settings = {id(p): (group, pg["lr"], pg["betas"]) for group, opt in trainer.optimizers.items()
                for pg in opt.optimizer.param_groups for p in pg["params"]}
    for name, expected in (("G", ("G", 0.001, (0.1, 0.999))), ("F", ("G", 0.001, (0.1, 0.999))),
                           ("D", ("D", 0.0002, (0.5, 0.9)))):
        assert {settings[id(p)] for p in trainer.nets[name].parameters()} == {expected}, name
    assert len(settings) == sum(len(list(net.parameters())) for net in trainer.nets.values())


# --- data: shrinking averages areas -------------------------------------------------------------------------------
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): output pixel j averages input [j·s, (j + 1)·s), s = n_in / n_out, each input pixel weighted
    by how much of it lies inside."""
    s = n_in / n_out
    edges = np.arange(n_in + 1)
    lo, hi = np.arange(n_out)[:, None] * s, np.arange(1, n_out + 1)[:, None] * s
    return np.clip(np.minimum(edges[None, 1:], hi) - np.maximum(edges[None, :-1], lo), 0, None) / s


def area_shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    wy, wx = area_weights(image.shape[0], height), area_weights(image.shape[1], width)
    return np.einsum("yi,ijc,xj->yxc", wy, image.astype(float), wx)


@pytest.mark.parametrize("pattern", ["noise", "checkerboard"])
def test_training_images_are_shrunk_by_area_averaging(tmp_path, pattern):
    if pattern == "noise":  # 90 × 70 → 32 × 32: factors 2.8 and 2.2
        image = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    else:  # a 1-px checkerboard shrunk 3×: area averaging gives 4/9 and 5/9 grey, point sampling keeps 0 and 255
        image = (np.indices((96, 96)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    Image.fromarray(image).save(tmp_path / "a.png")
    config = load_config(None, [f"data.root={tmp_path}", "data.dataset_mode=single", "data.load_size=32",
                                "data.crop_size=32", "data.no_flip=true"])
    item = build_dataset(config, "train")[0]["A"]
    got = ((item.permute(1, 2, 0).numpy() + 1) * 127.5).round()
    expected = area_shrink(image, 32, 32)
    assert np.abs(got - expected).max() <= 1.01
    if pattern == "checkerboard":
        assert got.std() < 15  # 14.5 by hand; bilinear or nearest: 127.5


# --- the run's files: step settings, report, progress, evaluation size -------------------------------------------
@pytest.mark.parametrize(("settings", "expected"), [
    (dict(max_steps=4, checkpoint_every=1, keep_checkpoints=2, sample_every=3, log_every=2, report=False,
          progress=False, eval_max_images=1),
     dict(checkpoints=[3, 4], samples=[3, 4], logged=[2, 4], evaluated=[2, 4], images=1, report=False, printed=[])),
    (dict(max_steps=3, checkpoint_every=2, keep_checkpoints=3, sample_every=1, log_every=1, report=True,
          progress=True, eval_max_images=2),
     dict(checkpoints=[2, 3], samples=[1, 2, 3], logged=[1, 2, 3], evaluated=[2], images=2, report=True,
          printed=["1/3", "2/3", "3/3"])),
], ids=["a", "b"])
def test_run_files_follow_the_step_settings(tiny_config, capsys, settings, expected):
    # Checkpoints: every checkpoint_every steps before the last, and at the last; the newest keep_checkpoints kept.
    # Samples: every sample_every steps and at the end. Evaluations (eval_every=2) on eval_max_images test images.
    config = tiny_config("pix2pix", *(as_override(f"train.{k}", v) for k, v in settings.items()),
                         "train.eval_every=2", "train.eval_split=test", "train.eval_metrics=[l1]",
                         "data.load_size=32", "model.netD=pixel")
    capsys.readouterr()
    run = train(config)
    steps = [int(p.name.split("_")[1].split(".")[0]) for p in sorted((run / "checkpoints").iterdir())]
    samples = [int(p.stem.split("_")[1]) for p in sorted((run / "samples").glob("step_*.png"))]
    logged = [json.loads(line)["step"] for line in (run / "logs" / "losses.jsonl").read_text().splitlines()]
    metrics = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    printed = [line.split()[2] for line in capsys.readouterr().out.splitlines() if line.startswith("run step ")]
    assert dict(checkpoints=steps, samples=samples, logged=logged, evaluated=[m["step"] for m in metrics],
                images=metrics[-1]["images"], report=(run / "report" / "index.html").is_file(),
                printed=printed) == expected


def torchrun_training(config, out: Path) -> subprocess.CompletedProcess:
    """Train ``config`` in two processes (torchrun; tests/dist_worker.py writes each rank's weights and buffers)."""
    from translate.config import to_yaml

    out.mkdir()
    (out / "config.yaml").write_text(to_yaml(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(TESTS / "dist_worker.py"), str(out), str(out / "config.yaml")],
                          env=env, capture_output=True, text=True, timeout=600)


def sync_bn_config(tiny_config, sync: bool, out: Path):
    return tiny_config("pix2pix", f"model.sync_bn={str(sync).lower()}", "train.max_steps=1", "data.batch_size=1",
                       "train.report=false", "model.netD=pixel", f"train.output_dir={out / 'run'}")


@pytest.mark.slow
def test_sync_bn_on_cpu_processes_is_one_clear_error(tiny_config, tmp_path):
    # torch's SyncBatchNorm runs on GPUs only: on CPU processes the setting is refused before training, not a
    # traceback from inside torch at the first step.
    if torch.cuda.device_count() >= 2:
        pytest.skip("GPUs run SyncBatchNorm: see the next test")
    out = tmp_path / "sync"
    done = torchrun_training(sync_bn_config(tiny_config, True, out), out)
    assert done.returncode != 0 and "model.sync_bn=true needs GPUs" in done.stderr, done.stderr[-3000:]
    assert not (out / "run" / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm needs two GPUs")
def test_sync_bn_shares_batch_statistics_between_gpus(tiny_config, tmp_path):
    # One image per process: the batch-norm running statistics agree between the processes only when they are
    # computed over both processes' images (model.sync_bn); the weights agree either way (averaged gradients).
    for sync in (True, False):
        out = tmp_path / f"sync_{sync}"
        done = torchrun_training(sync_bn_config(tiny_config, sync, out), out)
        assert done.returncode == 0, done.stderr[-3000:]
        first, second = (torch.load(out / f"rank{r}.pt")["params"] for r in range(2))
        stats = [k for k in first if k.endswith(("running_mean", "running_var"))]
        assert stats and all(torch.equal(first[k], second[k]) for k in first if k.endswith("weight"))
        assert all(torch.equal(first[k], second[k]) for k in stats) == sync, sync


# --- every CLI flag reaches the library call that does its work ----------------------------------------------------
# What the library does with each argument is tested with the library (test_convert.py, test_sampler.py,
# test_export.py, test_eval*.py, test_report.py, test_reference.py, test_engine*.py) and, for --quality, --tile and
# --shard, end to end above. Here: each flag changes the argument it must, and only through the real parser.
class FakeSampler:
    def __init__(self, seen: dict):
        self.seen = seen

    def tensor(self, n, seed=None, batch_size=64):
        self.seen.update(n=n, seed=seed, batch_size=batch_size)
        return torch.zeros(n, 1, 4, 4)


@pytest.fixture
def library(monkeypatch, tmp_path):
    """Replace the functions the subcommands call by recorders; ``library(argv)`` runs the CLI and returns what
    they were called with (by parameter name), plus the files the command wrote."""
    import translate.engine.trainer
    import translate.evaluation
    import translate.imageio
    import translate.inference.convert
    import translate.inference.export
    import translate.inference.reference
    import translate.inference.sampler
    import translate.networks.pretrained
    from translate.evaluation import Evaluation

    seen: dict = {}

    def recorder(real, result):
        signature = inspect.signature(real)

        def fake(*args, **kwargs):
            for name, value in signature.bind(*args, **kwargs).arguments.items():
                kind = signature.parameters[name].kind
                seen.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
            return result(seen) if callable(result) else result

        return fake

    def train_recorder(config, resume=False):
        seen.update(name=config.name, batch_size=config.data.batch_size, resume=resume)
        return tmp_path / "run"

    def sampler(model, *, device="auto", dtype="auto"):
        seen.update(model=model, device=device, dtype=dtype)
        return FakeSampler(seen)

    patch = monkeypatch.setattr
    patch(translate.inference.convert, "convert_folder", recorder(translate.inference.convert.convert_folder,
                                                                  {"failed": 0}))
    patch(translate.inference.convert, "format_summary", lambda summary: "")
    patch(translate.inference.sampler.Sampler, "from_pretrained", sampler)
    patch(translate.imageio, "write_image", lambda path, pixels, **options: seen.setdefault("written", []).append(
        Path(path).relative_to(tmp_path).as_posix()))
    patch(translate.inference.export, "export_onnx", recorder(translate.inference.export.export_onnx, {}))
    patch(translate.evaluation, "evaluate_model", recorder(translate.evaluation.evaluate_model, lambda s: Evaluation(
        info={"split": s.get("split", "test"), "direction": s.get("direction") or "AtoB"})))
    patch(translate.evaluation, "write_report", recorder(translate.evaluation.write_report, tmp_path / "index.html"))
    patch(translate.inference.reference, "import_reference",
          recorder(translate.inference.reference.import_reference, tmp_path / "imported"))
    patch(translate.networks.pretrained, "read_config", lambda path: {"directions": {}, "generators": {},
                                                                      "norm_mode": "eval"})
    patch(translate.engine.trainer, "train", train_recorder)
    config = tmp_path / "tiny.yaml"
    config.write_text("data:\n  root: somewhere\n")

    def run(command: str, *args: str) -> dict:
        seen.clear()
        words = [w.format(tmp=tmp_path, config=config) for w in (command, *args)]
        before = set(tmp_path.rglob("*.json"))
        assert main(words) == 0, words
        seen["json"] = sorted(p.relative_to(tmp_path).as_posix() for p in set(tmp_path.rglob("*.json")) - before)
        return dict(seen)

    return run


BASE_ARGS = {
    "train": ["{config}"],
    "convert": ["model", "in", "out"],
    "sample": ["model", "{tmp}/out"],
    "import-reference": ["G.pth", "{tmp}/imported", "--netG", "resnet_6blocks"],
    "export": ["model"],
    "eval": ["{tmp}/model"],
    "report": ["run"],
}
# (command, flag as the parser names it, arguments with it (positionals: the whole argument list), what the
# library must receive, the value); without the flag the library must receive something else.
CLI_ROWS = [
    ("train", "config", ["{tmp}/other.yaml"], "name", "other"),
    ("train", "key=value", ["{config}", "data.batch_size=3"], "batch_size", 3),
    ("train", "--resume", ["--resume"], "resume", True),
    ("train", "--resume-from", ["--resume-from", "ckpt"], "resume", "ckpt"),
    ("convert", "MODEL", ["other", "in", "out"], "model", "other"),
    ("convert", "INPUT", ["model", "other", "out"], "input_dir", "other"),
    ("convert", "OUTPUT", ["model", "in", "other"], "output_dir", "other"),
    ("convert", "--video-codec", ["--video-codec", "ffv1"], "video_codec", "ffv1"),
    ("convert", "--crf", ["--crf", "30"], "crf", 30),
    ("convert", "--temporal", ["--temporal", "0.5"], "temporal", 0.5),
    ("convert", "--format", ["--format", "jpg"], "fmt", "jpg"),
    ("convert", "--format", ["--format", "npy"], "fmt", "npy"),
    ("convert", "--quality", ["--quality", "30"], "quality", 30),
    ("convert", "--direction", ["--direction", "BtoA"], "direction", "BtoA"),
    ("convert", "--batch-size", ["--batch-size", "3"], "batch_size", 3),
    ("convert", "--tile", ["--tile", "64"], "tile", 64),
    ("convert", "--tile-overlap", ["--tile-overlap", "8"], "tile_overlap", 8),
    ("convert", "--whole-pixels", ["--whole-pixels", "1000"], "whole_pixels", 1000),
    ("convert", "--device", ["--device", "cuda:1"], "device", "cuda:1"),
    ("convert", "--dtype", ["--dtype", "bf16"], "dtype", "bf16"),
    ("convert", "--backend", ["--backend", "onnxruntime"], "backend", "onnxruntime"),
    ("convert", "--overwrite", ["--overwrite"], "overwrite", True),
    ("convert", "--fail-fast", ["--fail-fast"], "fail_fast", True),
    ("convert", "--workers", ["--workers", "3"], "workers", 3),
    ("convert", "--max-pixels", ["--max-pixels", "1000"], "max_pixels", 1000),
    ("convert", "--shard", ["--shard", "1/4"], "shard", (1, 4)),
    ("convert", "--quiet", ["--quiet"], "progress", False),
    ("sample", "MODEL", ["other", "{tmp}/out"], "model", "other"),
    ("sample", "OUT_DIR", ["model", "{tmp}/other", "--n", "1"], "written", ["other/00000.png"]),
    ("sample", "--n", ["--n", "3"], "n", 3),
    ("sample", "--seed", ["--seed", "7"], "seed", 7),
    ("sample", "--grid", ["--n", "1", "--grid"], "written", ["out/00000.png", "out/grid.png"]),
    ("sample", "--batch-size", ["--batch-size", "5"], "batch_size", 5),
    ("sample", "--device", ["--device", "cpu"], "device", "cpu"),
    ("sample", "--dtype", ["--dtype", "bf16"], "dtype", "bf16"),
    ("import-reference", "CHECKPOINT.pth", ["other.pth", "{tmp}/imported", "--netG", "resnet_6blocks"],
     "checkpoint", "other.pth"),
    ("import-reference", "OUTPUT_MODEL_DIR", ["G.pth", "elsewhere", "--netG", "resnet_6blocks"], "out_dir",
     "elsewhere"),
    ("import-reference", "--netG", ["G.pth", "{tmp}/imported", "--netG", "unet_256"], "netG", "unet_256"),
    ("import-reference", "--norm", ["--norm", "batch"], "norm", "batch"),
    ("import-reference", "--ngf", ["--ngf", "8"], "ngf", 8),
    ("import-reference", "--dropout", ["--no-dropout"], "use_dropout", False),
    ("import-reference", "--dropout", ["--dropout"], "use_dropout", True),
    ("import-reference", "--G_B", ["--G_B", "G_B.pth"], "G_B", "G_B.pth"),
    ("import-reference", "--direction", ["--direction", "BtoA"], "direction", "BtoA"),
    ("import-reference", "--test-mode", ["--test-mode", "train"], "test_mode", "train"),
    ("import-reference", "--input_nc", ["--input_nc", "5"], "input_nc", 5),
    ("import-reference", "--output_nc", ["--output_nc", "1"], "output_nc", 1),
    ("export", "MODEL_DIR", ["other"], "model_dir", "other"),
    ("export", "OUT.onnx", ["model", "out.onnx"], "out", "out.onnx"),
    ("export", "--opset", ["--opset", "18"], "opset", 18),
    ("export", "--direction", ["--direction", "BtoA"], "direction", "BtoA"),
    ("export", "--no-verify", ["--no-verify"], "verify", False),
    ("eval", "MODEL", ["{tmp}/other"], "model_dir", "{tmp}/other"),
    ("eval", "DATA", ["{tmp}/model", "data"], "data", "data"),
    ("eval", "--metrics", ["--metrics", "psnr,ssim", "l1"], "metrics", ["psnr", "ssim", "l1"]),
    ("eval", "--direction", ["--direction", "BtoA"], "direction", "BtoA"),
    ("eval", "--split", ["--split", "val"], "split", "val"),
    ("eval", "--dataset-mode", ["--dataset-mode", "paired"], "dataset_mode", "paired"),
    ("eval", "--inception", ["--inception", "inception.pt"], "inception", "inception.pt"),
    ("eval", "--max-images", ["--max-images", "3"], "max_images", 3),
    ("eval", "--n", ["--n", "10"], "n", 10),
    ("eval", "--seed", ["--seed", "2"], "seed", 2),
    ("eval", "--batch-size", ["--batch-size", "4"], "batch_size", 4),
    ("eval", "--device", ["--device", "cpu"], "device", "cpu"),
    ("eval", "--out", ["--out", "{tmp}/result.json"], "json", ["result.json"]),
    ("report", "RUN_DIR", ["other"], "run_dir", "other"),
    ("report", "--gallery", ["--gallery", "2"], "gallery_size", 2),
    ("report", "--device", ["--device", "cuda"], "device", "cuda"),
]
# Flags with nothing to change, and why.
NOTHING_TO_CHANGE = {"export --format": "onnx is its only choice"}


@pytest.mark.parametrize("row", CLI_ROWS, ids=[f"{r[0]} {r[1]} {' '.join(r[2])}" for r in CLI_ROWS])
def test_each_cli_flag_reaches_the_library(row, library, tmp_path):
    command, flag, args, field, value = row
    if command == "train" and flag == "config":
        (tmp_path / "other.yaml").write_text("data:\n  root: somewhere\n")
    positional = not flag.startswith("-")
    default = library(command, *BASE_ARGS[command])
    given = library(command, *(args if positional or flag == "--netG" else [*BASE_ARGS[command], *args]))
    value = value.format(tmp=tmp_path) if isinstance(value, str) else value
    assert given.get(field) == value
    assert default.get(field) != value


def test_train_print_config_prints_and_trains_nothing(library, capsys):
    capsys.readouterr()
    assert "name" not in library("train", "{config}", "--print-config")
    assert "batch_size: 1" in capsys.readouterr().out
    assert library("train", "{config}")["name"] == "tiny"


# --- the inventory: every option has an entry, and every entry is a real test that names its option -------------
# Options checked by a test of this file other than the tables (test name -> the options it checks).
HERE = {
    "test_sync_bn_on_cpu_processes_is_one_clear_error": ["model.sync_bn"],  # and ..._between_gpus, with 2 GPUs
    "test_diffaugment_draws_anew_every_step_and_the_seed_repeats_the_draws": ["train.diffaugment"],
    "test_run_files_follow_the_step_settings": [
        "train.max_steps", "train.checkpoint_every", "train.keep_checkpoints", "train.sample_every", "train.log_every",
        "train.report", "train.progress", "train.eval_max_images"],
    "test_train_print_config_prints_and_trains_nothing": ["train --print-config"],
}
# Options whose effect another test file checks against a value of its own (read before being listed here).
ELSEWHERE = {
    "data.builtin": "tests/test_data_builtin.py::test_config_builtin_without_root_uses_the_cache",
    "data.on_bad_file": "tests/test_data_datasets.py::test_bad_files_are_all_reported_at_once",
    "data.max_pixels": "tests/test_data_datasets.py::test_bad_files_are_all_reported_at_once",
    "data.verify": "tests/test_data_datasets.py::test_truncated_file_at_load_time",
    "data.background": "tests/test_data_datasets.py::test_alpha_background_from_config",
    # issue #31 (any channels, any bit depth)
    "data.array_layout": "tests/test_nchannel.py::test_arrays_in_each_layout",
    "data.normalize": "tests/test_nchannel.py::test_statistics_per_side_at_scan_time_cached_and_in_the_config",
    "data.normalize_percentiles":
        "tests/test_nchannel.py::test_statistics_per_side_at_scan_time_cached_and_in_the_config",
    "data.normalize_range": "tests/test_nchannel.py::test_fixed_ranges_per_side_and_the_errors_that_name_a_file",
    "data.normalize_range_B": "tests/test_nchannel.py::test_fixed_ranges_per_side_and_the_errors_that_name_a_file",
    "data.normalize_stats":
        "tests/test_nchannel.py::test_other_splits_use_the_train_statistics_and_given_ones_are_kept",
    "train.sample_channels": "tests/test_nchannel.py::test_sample_grids_map_channels_to_rgb_as_stated",
    "train.n_epochs": "tests/test_engine_numerics.py::test_lr_schedule_follows_the_formula_epoch_by_epoch",
    "train.n_epochs_decay": "tests/test_engine_numerics.py::test_lr_schedule_follows_the_formula_epoch_by_epoch",
    "train.lr_policy": "tests/test_engine_numerics.py::test_lr_schedule_follows_the_formula_epoch_by_epoch",
    "train.lr_decay_iters": "tests/test_engine_numerics.py::test_lr_schedule_follows_the_formula_epoch_by_epoch",
    "train.warmup_steps": "tests/test_engine_numerics.py::test_lr_warmup_scales_each_step_on_top_of_the_epoch_schedule",
    "train.mixed_precision": "tests/test_engine_numerics.py::test_bf16_mixed_precision_runs_bf16_kernels_on_the_cpu",
    "train.gradient_accumulation_steps": "tests/test_engine.py::test_gradient_accumulation_equals_bigger_batch",
    "train.ema": "tests/test_engine_numerics.py::test_training_exports_the_ema_of_the_weights_after_each_step",
    "train.ema_decay": "tests/test_engine_numerics.py::test_training_exports_the_ema_of_the_weights_after_each_step",
    "train.ema_warmup": "tests/test_engine_numerics.py::test_training_exports_the_ema_of_the_weights_after_each_step",
    "train.init_from": "tests/test_engine.py::test_init_from_exported_model",
    "train.compile": "tests/test_engine_numerics.py::test_compiled_training_matches_eager_after_two_steps",
    "train.max_nonfinite_steps": "tests/test_engine.py::test_non_finite_steps_are_skipped_then_training_stops",
    "train.eval_every": "tests/test_engine_numerics.py::test_best_model_follows_the_lowest_l1",
    "train.eval_split": "tests/test_engine_numerics.py::test_best_model_follows_the_lowest_l1",
    "train.eval_metrics": "tests/test_engine_numerics.py::test_best_model_follows_the_lowest_l1",
    "train.best_metric": "tests/test_engine_numerics.py::test_best_model_follows_the_lowest_l1",
    # issue #32 (memory, early stop)
    "train.early_stop": "tests/test_early_stop.py::test_a_run_stops_when_its_metric_stops_improving",
    "train.early_stop_min_delta": "tests/test_early_stop.py::test_a_run_stops_when_its_metric_stops_improving",
    "train.gradient_checkpointing": "tests/test_memory.py::test_training_with_checkpointing_equals_training_without",
    "train.max_memory": "tests/test_memory.py::test_the_budget_chooses_checkpointing_then_micro_batches",
    "eval --temporal": "tests/test_video.py::test_builtin_clip_and_cli",
}


def schema_options() -> set[str]:
    """Every dotted key of every recipe's schema; per-group optimizer settings as train.optimizers.<group>.*."""
    keys = {key for name in RECIPES for key in all_keys(schema(name))}
    keys.remove("train.optimizers")
    return keys | {f"train.optimizers.<group>.{field}" for field in GroupOptimizer.__dataclass_fields__}


def cli_options() -> set[str]:
    """'<command> <flag>' for every flag and positional argument of every subcommand."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {f"{name} {action.option_strings[0] if action.option_strings else action.metavar or action.dest}"
            for name, sub in commands.items() for action in sub._actions
            if not isinstance(action, argparse._HelpAction)}


def listed() -> dict[str, list[str]]:
    """Option -> where it is checked."""
    where: dict[str, list[str]] = {}
    for row in ROWS:
        where.setdefault(row[0], []).append("test_the_option_changes_its_observable")
    for row in CLI_ROWS:
        where.setdefault(f"{row[0]} {row[1]}", []).append("test_each_cli_flag_reaches_the_library")
    for test, options in HERE.items():
        for option in options:
            where.setdefault(option, []).append(test)
    for option, test in ELSEWHERE.items():
        where.setdefault(option, []).append(test)
    for option in NOTHING_TO_CHANGE:
        where.setdefault(option, []).append("NOTHING_TO_CHANGE")
    return where


def test_every_config_option_and_cli_flag_is_listed():
    expected, where = schema_options() | cli_options(), listed()
    assert sorted(expected - set(where)) == [], "options without a test: add a row (or an entry) for each"
    assert sorted(set(where) - expected) == [], "entries for options that no longer exist"


def test_each_listed_test_exists_and_names_its_option():
    sources = {}

    def source(path: Path, name: str) -> str:
        """The source of test function ``name`` of ``path``, decorators included."""
        if path not in sources:
            text = path.read_text()
            sources[path] = {node.name: "\n".join(text.splitlines()[min([d.lineno for d in node.decorator_list]
                                                                        + [node.lineno]) - 1:node.end_lineno])
                             for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}
        assert name in sources[path], f"{path.name} has no test {name}"
        return sources[path][name]

    for option, tests in listed().items():
        leaf = option.split()[-1].split(".")[-1].lstrip("-")
        for test in tests:
            if test == "NOTHING_TO_CHANGE":
                continue
            file, _, name = test.rpartition("::")
            text = source(ROOT / file if file else Path(__file__), name)
            if name not in ("test_the_option_changes_its_observable", "test_each_cli_flag_reaches_the_library"):
                assert leaf in text, f"{test} does not mention {option}"


def test_flags_with_nothing_to_change_have_one_choice():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for option in NOTHING_TO_CHANGE:
        command, flag = option.split()
        action = next(a for a in commands[command]._actions if flag in a.option_strings)
        assert len(action.choices) == 1, option
