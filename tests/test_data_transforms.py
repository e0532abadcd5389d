"""Preprocessing semantics (the reference's get_params/get_transform) and the seeded, shared parameters, including the
albumentations augmentations (data.augment)."""

from __future__ import annotations

import numpy as np
import pytest

from translate.data.transforms import AUGMENTATIONS, Transform, to_tensor


def rng(i=0):
    return np.random.default_rng((0, 0, i))


@pytest.mark.parametrize(
    "preprocess, size, expected",
    [
        ("resize_and_crop", (50, 30), (16, 16)),
        ("crop", (50, 30), (16, 16)),
        ("scale_width", (50, 30), (32, 19)),  # width to load_size, aspect kept
        ("scale_width", (50, 10), (32, 16)),  # ... but never shorter than a crop
        ("scale_width_and_crop", (50, 30), (16, 16)),
        ("none", (51, 29), (52, 28)),  # rounded to the nearest multiple of the stride (4)
        ("none", (1, 1), (4, 4)),
    ],
)
def test_output_sizes(preprocess, size, expected):
    t = Transform(preprocess, load_size=32, crop_size=16, stride=4)
    img = np.zeros((size[1], size[0], 3), np.uint8)
    out = t.apply(img, t.sample(size, rng()))
    assert (out.shape[1], out.shape[0]) == expected


def test_crop_smaller_image_is_padded_with_black():
    t = Transform("crop", crop_size=16)
    img = np.full((10, 20, 1), 200, np.uint8)
    out = t.apply(img, t.sample((20, 10), rng()))
    assert out.shape == (16, 16, 1) and out[12:].max() == 0


def test_eval_is_a_centre_crop_without_flip():
    t = Transform("crop", crop_size=4, train=False)
    img = np.arange(10 * 10, dtype=np.uint8).reshape(10, 10, 1)
    for i in range(5):
        assert np.array_equal(t.apply(img, t.sample((10, 10), rng(i))), img[3:7, 3:7])


def test_train_draws_crops_and_flips_from_the_generator():
    t = Transform("crop", crop_size=4)
    params = [t.sample((10, 10), rng(i)) for i in range(40)]
    assert len({p["crop"] for p in params}) > 10
    assert {p["flip"] for p in params} == {True, False}
    assert t.sample((10, 10), rng(3)) == t.sample((10, 10), rng(3))
    assert not any(Transform("crop", crop_size=4, flip=False).sample((10, 10), rng(i))["flip"] for i in range(20))


@pytest.mark.parametrize("names", [(name,) for name in AUGMENTATIONS] + [tuple(AUGMENTATIONS)])
@pytest.mark.parametrize("channels", [1, 3])
def test_augmentations_keep_shape_and_are_shared(names, channels):
    t = Transform("resize_and_crop", load_size=20, crop_size=16, augment=names)
    img = np.random.default_rng(0).integers(0, 256, (24, 30, channels), dtype=np.uint8)
    params = t.sample((30, 24), rng())
    a, b = t.apply(img, params), t.apply(img.copy(), params)
    assert a.shape == (16, 16, channels) and a.dtype == np.uint8
    assert np.array_equal(a, b)  # the same parameters give the same pixels: paired data stays aligned
    assert not np.array_equal(a, Transform("resize_and_crop", 20, 16).apply(img, params))


def test_augmentations_are_off_outside_training_and_unknown_names_fail():
    t = Transform(train=False, augment=("rotate",))
    assert "rotate" not in t.sample((300, 300), rng())
    with pytest.raises(ValueError, match="unknown augmentation blur"):
        Transform(augment=("blur",))


@pytest.mark.parametrize("name", ["rotate", "affine", "vflip"])
def test_geometric_augmentations_move_gray_and_colour_partners_alike(name):
    # A gray A and a colour B of one pair share the parameters: the gray result is the colour result's channel.
    t = Transform("crop", crop_size=24, augment=(name,))
    rgb = np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    for i in range(4):
        params = t.sample((24, 24), rng(i))
        assert np.array_equal(t.apply(rgb[..., :1].copy(), params), t.apply(rgb, params)[..., :1])


def test_augmentations_follow_the_item_seed():
    # Item i of epoch e draws from default_rng((seed, e, i)): the same (epoch, index) gives the same pixels (an
    # interrupted and resumed run sees what an uninterrupted one saw), another index other pixels.
    t = Transform("crop", crop_size=24, flip=False, augment=("color_jitter", "affine"))
    img = np.random.default_rng(2).integers(0, 256, (24, 24, 3), dtype=np.uint8)

    def item(epoch, index):
        return t.apply(img, t.sample((24, 24), np.random.default_rng((0, epoch, index))))

    assert np.array_equal(item(3, 5), item(3, 5))
    assert not np.array_equal(item(3, 5), item(3, 6)) and not np.array_equal(item(3, 5), item(4, 5))


def test_vflip_flips_half_the_images_upside_down():
    t = Transform("crop", crop_size=8, flip=False, augment=("vflip",))
    img = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    outs = [t.apply(img, t.sample((8, 8), rng(i))) for i in range(40)]
    flipped = sum(np.array_equal(o, img[::-1]) for o in outs)
    assert all(np.array_equal(o, img) or np.array_equal(o, img[::-1]) for o in outs) and 10 < flipped < 30


def test_color_jitter_stays_within_its_ranges():
    # ±20 % brightness and contrast cannot move a mid-gray image's mean by more than ~20 % of its level.
    t = Transform("crop", crop_size=16, flip=False, augment=("color_jitter",))
    img = np.full((16, 16, 3), 128, np.uint8)
    means = [t.apply(img, t.sample((16, 16), rng(i))).mean() for i in range(20)]
    assert all(128 * 0.75 <= m <= 128 * 1.25 for m in means) and np.std(means) > 1


def test_to_tensor_range():
    x = to_tensor(np.array([[[0, 255, 128]]], np.uint8))
    assert x.shape == (3, 1, 1) and x.dtype.is_floating_point
    assert x.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
