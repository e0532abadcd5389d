"""Far tasks: the built-in generators whose output changes texture (flat posterised colours with outlines, zebra
stripes in the warm regions), and model.residual=auto, which chooses the generator from the measured domain gap."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from translate.config import ConfigError, load_config, to_yaml
from translate.data import build_dataset
from translate.data.builtin import FAR_TASKS, PHOTO_FILTERS, _cartoon, _crops, _kept_crops, _stripes, warm_mask
from translate.data.gap import COLOUR_THRESHOLD, measure_gap, resolve_auto

RED, BLUE = (200, 40, 30), (40, 60, 160)


def two_regions(size: int = 48, square: tuple[int, int, int, int] = (12, 12, 36, 36)) -> np.ndarray:
    """A blue image with a red square (x0, y0, x1, y1), each region gently shaded so that it has some slope."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BLUE
    x0, y0, x1, y1 = square
    img[y0:y1, x0:x1] = RED
    shade = np.linspace(-12, 12, size)[None, :, None]
    return np.clip(img + shade, 0, 255).astype(np.uint8)


def test_far_tasks_are_registered():
    assert set(FAR_TASKS) <= set(PHOTO_FILTERS) and {"cartoon", "stripes", "sketch"} <= set(FAR_TASKS)


def test_cartoon_is_flat_posterised_colour_with_black_outlines():
    img = two_regions()
    out = _cartoon(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, _cartoon(img))  # deterministic
    assert set(np.unique(out)) <= {0, 85, 170, 255}  # 4 levels per channel
    # The inside of each region is one flat colour, its level the nearest to the region's mean colour.
    assert np.array_equal(out[24, 24], [170, 0, 0]) and np.array_equal(out[4, 4], [0, 85, 170])
    assert len({tuple(p) for p in out[16:32, 16:32].reshape(-1, 3)}) == 1
    # Black outlines on the square's edge, none far from it.
    assert (out[24, 10:14] == 0).all(axis=-1).any() and (out[24, 34:38] == 0).all(axis=-1).any()
    assert not (out[2:8, 2:8] == 0).all(axis=-1).any()


def test_warm_mask_finds_the_red_region_only():
    m = warm_mask(two_regions())
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1}
    assert m[14:34, 14:34].all() and not m[:10].any() and not m[:, :10].any()
    assert not warm_mask(np.full((32, 32, 3), BLUE, np.uint8)).any()


def test_stripes_change_the_warm_region_only_into_black_and_white_bands():
    img = two_regions()
    out = _stripes(img)
    assert np.array_equal(out, _stripes(img))  # deterministic
    outside = cv2.dilate(warm_mask(img), np.ones((3, 3), np.uint8)) == 0  # beyond the 1 px soft edge
    assert np.array_equal(out[outside], img[outside])  # the rest untouched
    inner = out[16:32, 16:32].astype(int)
    assert (np.ptp(inner, axis=-1) <= 1).all()  # gray bands, no colour left
    assert (inner < 60).mean() > 0.2 and (inner > 195).mean() > 0.2  # both black and white, mostly saturated


def test_stripes_are_the_same_wherever_the_crop_is_taken():
    # A function of the photo alone (no fixed phase in image coordinates), so a crop's truth does not depend on where
    # it was cut: away from the borders, shifting the input shifts the output.
    img = two_regions(64, (16, 16, 48, 48))
    shifted = np.roll(img, (5, 3), axis=(0, 1))
    a, b = _stripes(img), _stripes(shifted)
    assert np.array_equal(np.roll(a, (5, 3), axis=(0, 1))[20:44, 20:44], b[20:44, 20:44])


def test_kept_crops_skip_rejected_crops_and_leave_other_tasks_unchanged():
    photos = [np.tile(np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None], (320, 1, 3))]
    plain = list(_crops(photos, 5, False, np.random.default_rng(0)))
    same = list(_kept_crops(photos, 5, False, np.random.default_rng(0)))
    assert all(np.array_equal(a, b) for a, b in itertools.zip_longest(plain, same, fillvalue=np.zeros(0)))
    bright = _kept_crops(photos, 3, False, np.random.default_rng(0), lambda c: c.mean() > 70)
    assert len(bright) == 3 and all(c.mean() > 70 for c in bright)
    with pytest.raises(RuntimeError, match="only 0 of 150 crops were kept, 3 needed"):
        _kept_crops(photos, 3, False, np.random.default_rng(0), lambda c: False)


# ---- model.residual=auto -----------------------------------------------------------------------------------------


class Pairs(torch.utils.data.Dataset):
    """Items as the datasets give them: (C, H, W) float tensors in [-1, 1]."""

    def __init__(self, A: list[np.ndarray], B: list[np.ndarray]):
        self.A, self.B = A, B

    def __len__(self):
        return len(self.A)

    def __getitem__(self, i):
        def t(x):
            return torch.from_numpy(x).permute(2, 0, 1).float() / 127.5 - 1

        return {"A": t(self.A[i]), "B": t(self.B[i % len(self.B)])}


def photos(n: int, seed: int, size: int = 48) -> list[np.ndarray]:
    """Smooth random colour fields with some fine detail: photo-like statistics at a tiny size."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.uniform(30, 220, (6, 6, 3)).astype(np.float32)
        img = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.BICUBIC), np.float32)
        out.append(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


def near(images):  # a tone change that keeps the layout and detail: warmer, a little more contrast
    return [np.clip((x.astype(np.float32) - 128) * 1.1 + 128 + [12, 0, -10], 0, 255).astype(np.uint8) for x in images]


def far(images):  # a drawing: a white page with the dark outlines of the regions
    out = []
    for x in images:
        gray = x.mean(-1)
        edges = (np.abs(np.diff(gray, axis=0, prepend=gray[:1])) + np.abs(np.diff(gray, axis=1, prepend=gray[:, :1])))
        out.append(np.repeat(np.where(edges > 12, 40, 250)[..., None], 3, 2).astype(np.uint8))
    return out


def test_gap_is_small_for_a_tone_change_and_large_for_a_drawing():
    A = photos(12, 0)
    same = measure_gap(Pairs(A, photos(12, 1)))
    tone = measure_gap(Pairs(A, near(photos(12, 1))))
    drawing = measure_gap(Pairs(A, far(photos(12, 1))))
    assert max(same.colour, tone.colour) < COLOUR_THRESHOLD / 2 and drawing.colour > COLOUR_THRESHOLD
    assert not same.far and not tone.far and drawing.far
    assert drawing.texture > max(same.texture, tone.texture)
    assert measure_gap(Pairs(A, A)).colour == pytest.approx(0, abs=1e-6)
    # colour: a lower bound of doing nothing's mean absolute error (per channel, in units of the range), reached by a
    # tone change (monotone per channel); far below it for a drawing, whose pixels do not keep their order
    def error(A, B):
        return np.mean([np.abs(a.astype(float) - b).mean() / 255 for a, b in zip(A, B)])

    assert measure_gap(Pairs(A, near(A))).colour == pytest.approx(error(A, near(A)), rel=0.01)
    assert 0 < measure_gap(Pairs(A, far(A))).colour < 0.8 * error(A, far(A))


def test_images_gap_sees_texture_wherever_it_is_drawn_and_psnr_does_not():
    from translate.data.gap import images_gap
    from translate.evaluation.metrics import psnr

    # Stripes half a period out of place: every pixel wrong, the same colours and detail.
    stripes = torch.zeros(4, 3, 32, 32)
    stripes[..., ::8, :] = stripes[..., 1::8, :] = stripes[..., 2::8, :] = stripes[..., 3::8, :] = 1
    moved = stripes.roll(4, dims=-2)
    assert psnr(moved, stripes).mean() < 5  # dB: per-pixel, as far as a wrong image can be
    gap = images_gap(moved * 2 - 1, stripes * 2 - 1)
    assert gap.colour == pytest.approx(0, abs=1e-6) and gap.texture == pytest.approx(0, abs=1e-6)
    # A flat grey of the stripes' mean is closer pixel by pixel, and has neither their colours nor their detail.
    grey = torch.full_like(stripes, 0.5)
    assert psnr(grey, stripes).mean() > psnr(moved, stripes).mean()
    flat = images_gap(grey * 2 - 1, stripes * 2 - 1)
    assert flat.colour == pytest.approx(0.5, abs=0.01) and flat.texture > 1


def write(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(images):
        Image.fromarray(x).save(folder / f"{i:03d}.png")


@pytest.mark.parametrize("kind", ["near", "far"])
def test_residual_auto_is_resolved_from_the_data_and_recorded(tmp_path, kind):
    B = near(photos(10, 1)) if kind == "near" else far(photos(10, 1))
    write(tmp_path / "trainA", photos(10, 0))
    write(tmp_path / "trainB", B)
    config = load_config("configs/cyclegan_recommended.yaml",
                         [f"data.root={tmp_path}", "model.residual=auto", "model.netG=resnet_6blocks",
                          "data.load_size=48", "data.crop_size=48", "data.num_workers=0", "train.progress=false"])
    assert config.model.residual == "auto"
    printed = []
    gap = resolve_auto(config, build_dataset(config, "train"), printed.append)
    assert config.model.residual is (kind == "near") and gap.far is (kind == "far")
    assert f"residual: {str(kind == 'near').lower()}" in to_yaml(config)  # what config.yaml records
    assert len(printed) == 1 and f"model.residual=auto: {str(kind == 'near').lower()}" in printed[0]
    assert f"colour gap {gap.colour:.2f}" in printed[0] and str(COLOUR_THRESHOLD) in printed[0]
    assert resolve_auto(config, None, printed.append) is None and len(printed) == 1  # resolved: nothing to do


def test_residual_auto_without_a_choice_to_make():
    printed = []
    config = load_config(None, ["data.builtin=shapes_unpaired", "model.residual=auto", "model.output_nc=1",
                                "model.cyclegan.lambda_identity=0"])
    assert resolve_auto(config, Pairs(photos(2, 0), photos(2, 1)), printed.append) is None
    assert config.model.residual is False and "input_nc=3 != model.output_nc=1" in printed[0]


def test_residual_takes_only_true_false_or_auto():
    with pytest.raises(ConfigError, match="model.residual='maybe' must be true, false or auto"):
        load_config(None, ["data.builtin=shapes_unpaired", "model.residual=maybe"])


@pytest.mark.parametrize("kind", ["near", "far"])
def test_generator_auto_is_a_u_net_that_starts_as_its_input_or_the_papers_resnet(kind):
    config = load_config(None, ["data.builtin=shapes_unpaired", "model.residual=auto", "model.netG=auto",
                                "data.load_size=143", "data.crop_size=128"])
    B = near(photos(8, 1)) if kind == "near" else far(photos(8, 1))
    printed = []
    resolve_auto(config, Pairs(photos(8, 0), B), printed.append)
    expected = (True, "unet_128") if kind == "near" else (False, "resnet_9blocks")
    assert (config.model.residual, config.model.netG) == expected  # the deepest U-Net a 128 px crop allows
    assert f"model.residual=auto, model.netG=auto: {str(expected[0]).lower()}, {expected[1]}; colour gap" in printed[0]
    assert "netG: auto" not in to_yaml(config)


@pytest.mark.parametrize("residual, crop, netG", [
    ("true", 256, "unet_256"), ("true", 128, "unet_128"),
    ("true", 384, "unet_128"),  # unet_256's stride (256) does not divide 384; unet_128's does
    ("true", 96, "resnet_9blocks"),  # no U-Net takes 96 px
    ("false", 256, "resnet_9blocks"),
])
def test_generator_auto_follows_an_explicit_residual_choice(residual, crop, netG):
    config = load_config(None, ["data.builtin=shapes_unpaired", "model.netG=auto", f"model.residual={residual}",
                                f"data.load_size={crop}", f"data.crop_size={crop}"])
    printed = []
    assert resolve_auto(config, None, printed.append) is None  # nothing measured: the data decide nothing here
    assert config.model.netG == netG
    assert printed == [f"model.netG=auto: {netG} (model.residual={residual})"]


@pytest.mark.parametrize("recipe", ["pix2pix", "cut", "fastcut"])
def test_generator_auto_is_cyclegans_choice_only(recipe):
    with pytest.raises(ConfigError, match=f"model.netG=auto chooses between CycleGAN's generators.*recipe {recipe}"):
        load_config(None, ["data.builtin=shapes_unpaired", f"model.recipe={recipe}", "model.netG=auto",
                           "model.residual=auto"])


def test_generator_auto_without_a_measurement_is_the_papers_resnet():
    config = load_config(None, ["data.builtin=shapes_unpaired", "model.residual=auto", "model.netG=auto",
                                "model.output_nc=1", "model.cyclegan.lambda_identity=0"])
    resolve_auto(config, None, print)  # other channel counts: no residual generator, so no U-Net that starts as input
    assert (config.model.residual, config.model.netG) == (False, "resnet_9blocks")


@pytest.mark.parametrize("kind", ["near", "far"])
def test_training_resolves_auto_before_building_the_networks_and_records_it(tmp_path, tiny_config, kind, capsys):
    from translate.engine.trainer import Trainer

    B = near(photos(6, 1, 64)) if kind == "near" else far(photos(6, 1, 64))
    write(tmp_path / "data" / "trainA", photos(6, 0, 64))
    write(tmp_path / "data" / "trainB", B)
    config = tiny_config("cyclegan", f"data.root={tmp_path / 'data'}", "model.residual=auto", "model.netG=auto",
                         "data.load_size=128", "data.crop_size=128")  # a U-Net's smallest size
    trainer = Trainer(config)
    residual, netG = (True, "unet_128") if kind == "near" else (False, "resnet_9blocks")
    assert trainer.nets["G_A"].residual is residual and type(trainer.nets["G_A"]).__name__ == \
        ("UnetGenerator" if residual else "ResnetGenerator")
    saved = (trainer.run_dir / "config.yaml").read_text()
    assert f"residual: {str(residual).lower()}" in saved and f"netG: {netG}" in saved
    printed = capsys.readouterr().out
    assert f"model.residual=auto, model.netG=auto: {str(residual).lower()}, {netG}; colour gap" in printed
    assert config.model.residual == "auto" and config.model.netG == "auto"  # the caller's config stays as asked


def test_a_resumed_run_keeps_the_generator_it_chose(tmp_path, tiny_config, capsys):
    from translate.engine.trainer import Trainer

    write(tmp_path / "data" / "trainA", photos(6, 0, 64))
    write(tmp_path / "data" / "trainB", near(photos(6, 1, 64)))
    options = [f"data.root={tmp_path / 'data'}", "model.residual=auto", "model.netG=auto", "data.load_size=128",
               "data.crop_size=128", "train.checkpoint_every=1"]
    Trainer(tiny_config("cyclegan", *options, "train.max_steps=1")).fit()
    write(tmp_path / "data" / "trainB", far(photos(6, 1, 64)))  # the data changed: auto alone would choose the ResNet
    capsys.readouterr()
    trainer = Trainer(tiny_config("cyclegan", *options, "train.max_steps=2"), resume=True)
    assert trainer.nets["G_A"].residual is True and type(trainer.nets["G_A"]).__name__ == "UnetGenerator"
    assert "model.residual=auto" not in capsys.readouterr().out  # nothing left to choose
    trainer.fit()
