"""train.temporal: the equivariance term |G(T(x)) − T(G(x))| of Eilertsen et al. 2019 (translate.methods.equivariance)
on hand-worked generators, in every image recipe's generator loss, and across a resume."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import default_collate

from translate.config import ConfigError, load_config
from translate.data import build_dataset
from translate.engine.trainer import train
from translate.methods import RECIPES, Role
from translate.methods.equivariance import equivariance_loss, random_motion


def motion(shift_x=0.0, shift_y=0.0, angle=0.0, zoom=1.0, n=2) -> torch.Tensor:
    return torch.tensor([[shift_x, shift_y, angle, zoom]]).repeat(n, 1)


def images(n=2, channels=3, size=16, seed=0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class AddPattern(nn.Module):
    """G(x) = x + a · column index: a pattern fixed to the image grid, which no motion moves with the content."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a

    def forward(self, x):
        return x + self.a * torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x)


# --- the term on hand-worked generators --------------------------------------------------------------------------
def test_the_identity_motion_gives_zero_for_any_generator():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 5, padding=2))
    x = images()
    loss = equivariance_loss(G, x, G(x), motion=motion())
    assert loss.item() < 1e-6


@pytest.mark.parametrize("move", [dict(shift_x=3, shift_y=-2), dict(angle=2.0, zoom=1.03), dict(shift_x=1.5)])
def test_a_pointwise_generator_commutes_with_every_motion(move):
    G = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        G.weight.copy_(torch.eye(3)[:, :, None, None] * 0.5)  # G(x) = x / 2
    x = images()
    assert equivariance_loss(G, x, G(x), motion=motion(**move)).item() < 1e-6


def test_a_pattern_fixed_to_the_grid_costs_its_slope_times_the_shift():
    # G(x) = x + 0.1 · j. Shifted right by 2 px: G(T(x)) − T(G(x)) = 0.1 · j − 0.1 · (j − 2) = 0.2 on every pixel that
    # T fills from inside the image (columns 2..15); the two columns it fills from outside are left out.
    G, x = AddPattern(0.1), images()
    loss = equivariance_loss(G, x, G(x), motion=motion(shift_x=2))
    assert loss.item() == pytest.approx(0.2, abs=1e-5)
    # A vertical shift moves nothing across columns: 0.
    assert equivariance_loss(G, x, G(x), motion=motion(shift_y=3)).item() < 1e-5


def test_the_output_motion_is_scaled_for_super_resolution():
    # Nearest ×4 upsampling commutes with a shift of s input pixels when the output moves by 4s, not by s.
    def G(x):
        return F.interpolate(x, scale_factor=4, mode="nearest")

    x, shift = images(size=8), motion(shift_x=2, shift_y=1)
    assert equivariance_loss(G, x, G(x), scale=4, motion=shift).item() < 1e-6
    assert equivariance_loss(G, x, G(x), scale=1, motion=shift).item() > 0.1


def test_motions_come_from_the_global_generator():
    torch.manual_seed(3)
    first = random_motion(4)
    torch.manual_seed(3)
    assert torch.equal(first, random_motion(4))
    assert not torch.equal(first, random_motion(4))
    assert first[:, :2].abs().max() <= 4 and first[:, 2].abs().max() <= 2 and (first[:, 3] - 1).abs().max() <= 0.03


# --- in every image recipe ---------------------------------------------------------------------------------------
IMAGE_RECIPES = {"pix2pix": ["loss_temporal"], "cyclegan": ["loss_temporal_A", "loss_temporal_B"],
                 "cut": ["loss_temporal"], "fastcut": ["loss_temporal"], "sr": ["loss_temporal"]}


@pytest.fixture
def config_of(tiny_config, paired_root, tmp_path):
    def make(recipe: str, *overrides: str):
        if recipe == "sr":
            return load_config(None, ["model.recipe=sr", f"data.root={paired_root}", "data.dataset_mode=single",
                                      "data.load_size=32", "data.crop_size=32", "data.batch_size=2", "model.ngf=8",
                                      "model.ndf=8", "model.sr.n_blocks=1", "data.num_workers=0",
                                      "train.progress=false", "train.mixed_precision=no", "train.log_every=2",
                                      "train.checkpoint_every=2", "train.report=false",
                                      f"train.output_dir={tmp_path / 'run'}", *overrides])
        return tiny_config(recipe, "data.batch_size=2", "train.report=false", *overrides)

    return make


def generator_step(config):
    """One G loss of the recipe on the first batch, from seed 0: its terms, the gradient of their sum on each
    exported generator, and how many times each of those ran."""
    dataset = build_dataset(config, "train")
    dataset.set_epoch(0)
    batch = default_collate([dataset[i] for i in range(2)])
    recipe = RECIPES[config.model.recipe](config)
    torch.manual_seed(0)
    nets = recipe.build()
    if recipe.names(Role.auxiliary):
        nets.update(recipe.build_after_first_batch(nets, batch))
    calls = dict.fromkeys(recipe.names(Role.exported), 0)
    for name in calls:
        nets[name].register_forward_hook(lambda m, a, out, name=name: calls.__setitem__(name, calls[name] + 1))
    torch.manual_seed(1)
    terms = recipe.generator_loss(nets, batch, {})
    sum(terms.values()).backward()
    grads = {name: torch.cat([p.grad.flatten() for p in nets[name].parameters()]) for name in calls}
    return terms, grads, calls


@pytest.mark.parametrize("recipe", list(IMAGE_RECIPES))
def test_every_image_recipe_adds_the_term_when_on_and_only_then(recipe, config_of):
    names = IMAGE_RECIPES[recipe]
    off, grads_off, calls_off = generator_step(config_of(recipe))
    on, grads_on, calls_on = generator_step(config_of(recipe, "train.temporal=0.5"))
    double, _, _ = generator_step(config_of(recipe, "train.temporal=1.0"))
    assert not [k for k in off if "temporal" in k] and [k for k in on if "temporal" in k] == names
    for name in names:
        assert on[name].item() > 0 and double[name].item() == pytest.approx(2 * on[name].item(), rel=1e-5)
    for G in grads_on:
        assert not torch.allclose(grads_on[G], grads_off[G])
        # G(x) is the loss's own forward: the term costs one more, of T(x).
        assert calls_on[G] == calls_off[G] + 1


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "logs" / "losses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("recipe", ["pix2pix", "sr"])  # sr: the output moves 4× as far
def test_resume_with_the_term_equals_an_uninterrupted_run(recipe, config_of, tmp_path):
    steps = ("train.temporal=0.5", "train.checkpoint_every=2", "train.log_every=2")
    full = train(config_of(recipe, f"train.output_dir={tmp_path / 'full'}", "train.max_steps=4", *steps))
    part = tmp_path / "part"
    train(config_of(recipe, f"train.output_dir={part}", "train.max_steps=2", *steps))
    train(config_of(recipe, f"train.output_dir={part}", "train.max_steps=4", *steps), resume=True)
    full_log, part_log = read_log(full), read_log(part)
    assert [k for k in full_log[-1] if "temporal" in k] == IMAGE_RECIPES[recipe]
    assert full_log[-1] == part_log[-1]
    for path in sorted((full / "model").glob("*.safetensors")):
        a, b = load_file(path), load_file(part / "model" / path.name)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_weight_is_zero_or_positive(config_of):
    with pytest.raises(ConfigError, match=r"^train.temporal=-0.5 must be 0 \(off\) or positive$"):
        config_of("pix2pix", "train.temporal=-0.5")
