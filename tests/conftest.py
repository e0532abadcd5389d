"""Shared fixtures: tiny image folders made in a temp dir and tiny configs that train in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from translate.config import load_config


def _smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field: upsampled noise, easy for tiny networks."""
    small = rng.random((4, 4, 3))
    return np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR))


@pytest.fixture
def paired_root(tmp_path_factory):
    """Aligned A|B images where B = 255 - A (a task any generator learns fast): train/ and test/."""
    root = tmp_path_factory.mktemp("paired")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        (root / split).mkdir()
        for i in range(n):
            a = _smooth_image(rng, 32)
            Image.fromarray(np.concatenate([a, 255 - a], 1)).save(root / split / f"{i:03d}.png")
    return root


@pytest.fixture
def unpaired_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("unpaired")
    rng = np.random.default_rng(1)
    for folder, n in (("trainA", 6), ("trainB", 5), ("testA", 2), ("testB", 2)):
        (root / folder).mkdir()
        for i in range(n):
            image = _smooth_image(rng, 32)
            Image.fromarray(image if folder.endswith("A") else 255 - image).save(root / folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory):
    """16 built-in-style 28² gray digits (two of each but 6-9 once more), one folder."""
    from PIL import ImageFont

    from translate.data.builtin import _digit

    root = tmp_path_factory.mktemp("digits")
    font, rng = ImageFont.load_default(80), np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(_digit(i % 10, rng, font)).save(root / f"{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def dcgan_config(digits_root):
    """dcgan_config(out, *overrides) -> a Config of a tiny DCGAN (ngf 8, 16-d latent) on ``digits_root``, 2 steps,
    writing into ``out``."""

    def make(out, *overrides: str):
        return load_config(None, ["model.recipe=dcgan", f"data.root={digits_root}", "model.input_nc=1",
                                  "model.output_nc=1", "data.load_size=28", "data.crop_size=28", "model.ngf=8",
                                  "model.ndf=8", "model.dcgan.nz=16", "data.batch_size=8", "data.num_workers=0",
                                  "train.max_steps=2", "train.log_every=1", "train.sample_every=2",
                                  "train.report=false", "train.progress=false", "train.mixed_precision=no",
                                  f"train.output_dir={out}", *overrides])

    return make


TINY = ["model.ngf=8", "model.ndf=8", "model.netG=resnet_6blocks", "data.load_size=32", "data.crop_size=32",
        "data.num_workers=0", "train.log_every=2", "train.sample_every=4", "train.checkpoint_every=4",
        "train.progress=false", "train.mixed_precision=no"]  # fp32: exact on any CPU (auto is bf16 on some)


@pytest.fixture
def tiny_config(paired_root, unpaired_root, tmp_path):
    """tiny_config("pix2pix" | "cyclegan" | "cut" | "fastcut", *overrides) -> Config writing into tmp_path/run: the
    recipe's own defaults, tiny networks and images."""

    def make(recipe: str, *overrides: str):
        if recipe == "pix2pix":
            base = ["model.recipe=pix2pix", "model.norm=batch", "model.gan_mode=vanilla",
                    "data.dataset_mode=aligned", f"data.root={paired_root}"]
        else:
            base = [f"model.recipe={recipe}", "model.norm=instance", "model.no_dropout=true",
                    "data.dataset_mode=unaligned", f"data.root={unpaired_root}"]
            if recipe == "cyclegan":
                base.append("model.cyclegan.pool_size=4")
        return load_config(None, [*base, *TINY, "train.n_epochs=2", "train.n_epochs_decay=1",
                                  f"train.output_dir={tmp_path / 'run'}", *overrides])

    return make


@pytest.fixture(autouse=True)
def _auto_precision_is_fp32(monkeypatch):
    """train.mixed_precision=auto and dtype="auto" resolve to fp32 in every test, so results stay exact on CPUs with
    bf16 too; tests of the choice mock the hardware themselves (test_devices.py imports the real detection)."""
    monkeypatch.setattr("translate.devices.cpu_bf16_unit", lambda cpuinfo=None: None)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny exported translation model (pix2pix's resnet_6blocks at ngf 8, seed 0): a model directory as training
    writes it. Modules that need another model define their own ``model_dir``."""
    from translate.networks import create_generator
    from translate.networks.pretrained import generator_spec, save_pretrained

    torch.manual_seed(0)
    net = create_generator("resnet_6blocks", ngf=8, norm="instance")
    meta = {"recipe": "pix2pix", "directions": {"AtoB": "G"},
            "generators": {"G": generator_spec("resnet_6blocks", 8, "instance", False, 3, 3)}}
    return save_pretrained(tmp_path_factory.mktemp("model") / "model", {"G": net}, meta)
