"""translate.imageio decoding for training: orientation, alpha, 16-bit, palette, CMYK, animation, bombs, bad bytes."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from translate.imageio import BadImageError, check_image, parse_color, read_image


def noise(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[..., 0] if c == 1 else a


def test_rgb_gray_and_modes(tmp_path):
    rgb = noise(5, 7)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    assert np.array_equal(read_image(tmp_path / "c.png"), rgb)
    gray = read_image(tmp_path / "c.png", mode="L")
    assert gray.shape == (5, 7, 1)
    assert np.array_equal(gray[..., 0], np.asarray(Image.fromarray(rgb).convert("L")))  # PIL's exact luma
    assert read_image(tmp_path / "g.png", mode=None).shape == (5, 7, 1)
    assert np.array_equal(read_image(tmp_path / "g.png"), np.repeat(rgb[..., :1], 3, 2))
    assert read_image(tmp_path / "c.png", mode=None).shape == (5, 7, 3)


@pytest.mark.parametrize("background, expected", [("white", (255, 127, 127)), ("black", (128, 0, 0)),
                                                  ("#00ff00", (128, 127, 0)), ((0, 0, 255), (128, 0, 127))])
def test_alpha_is_composited_onto_the_background(tmp_path, background, expected):
    Image.new("RGBA", (3, 2), (255, 0, 0, 128)).save(tmp_path / "a.png")
    assert tuple(read_image(tmp_path / "a.png", background=background)[1, 2]) == expected


def test_gray_alpha_and_palette_transparency(tmp_path):
    Image.new("LA", (4, 4), (0, 0)).save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png", mode=None, background="black").shape == (4, 4, 1)
    assert read_image(tmp_path / "la.png", mode=None, background="white").max() == 255
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.save(tmp_path / "p.png")
    assert tuple(read_image(tmp_path / "p.png")[0, 0]) == (10, 200, 30)
    p.save(tmp_path / "pt.png", transparency=1)
    assert tuple(read_image(tmp_path / "pt.png", background="#102030")[0, 0]) == (16, 32, 48)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    for name in ("g16.png", "g16.tif"):
        Image.fromarray(values).save(tmp_path / name)
        assert Image.open(tmp_path / name).mode.startswith("I;16")
        assert read_image(tmp_path / name, mode="L")[0, :, 0].tolist() == [0, 1, 128, 255]
        assert read_image(tmp_path / name, mode="RGB").shape == (1, 4, 3)
    rgb16 = np.random.default_rng(0).integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])  # cv2 writes BGR
    out = read_image(tmp_path / "c16.png").astype(int)
    assert np.abs(out - rgb16 / 257).max() <= 1


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "k.jpg")
    r, g, b = read_image(tmp_path / "k.jpg")[4, 4].tolist()
    assert r > 200 and g < 50 and b < 50  # cyan 0, magenta and yellow full: red


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation):
    im = Image.fromarray(noise(5, 7))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.png", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")).convert("RGB"))
    out = read_image(tmp_path / "o.png")
    assert out.shape == ((7, 5, 3) if orientation >= 5 else (5, 7, 3))
    assert np.array_equal(out, expected)


def test_animated_gives_first_frame_and_warns(tmp_path, caplog):
    first, second = Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))
    first.save(tmp_path / "anim.png", save_all=True, append_images=[second])
    with caplog.at_level(logging.WARNING, logger="translate.imageio"):
        out = read_image(tmp_path / "anim.png")
    assert "anim.png: has 2 frames" in caplog.text
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_decompression_bomb_is_refused_with_the_setting_named(tmp_path):
    Image.new("L", (100, 60)).save(tmp_path / "big.png")
    reason = check_image(tmp_path / "big.png", max_pixels=5000)
    assert "6,000 pixels" in reason and "data.max_pixels" in reason
    with pytest.raises(BadImageError, match=r"big\.png: 100×60 = 6,000 pixels .*data\.max_pixels=5,000"):
        read_image(tmp_path / "big.png", max_pixels=5000)
    assert read_image(tmp_path / "big.png", max_pixels=6000).shape == (60, 100, 3)


def test_max_pixels_may_exceed_pils_global_limit(tmp_path, monkeypatch):
    Image.new("L", (30, 30)).save(tmp_path / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL would refuse 900 pixels as a bomb
    assert read_image(tmp_path / "x.png", max_pixels=None).shape == (30, 30, 3)
    assert check_image(tmp_path / "x.png", max_pixels=1000) is None
    assert Image.MAX_IMAGE_PIXELS == 100  # the global is restored


def test_bad_files_raise_bad_image_error_naming_the_file(tmp_path):
    Image.fromarray(noise(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    assert check_image(tmp_path / "trunc.png") is None  # the header is fine: only decoding finds it
    for name in ("trunc.png", "text.jpg", "empty.png", "missing.png"):
        with pytest.raises(BadImageError, match=name) as info:
            read_image(tmp_path / name)
        assert info.value.path == str(tmp_path / name) and info.value.reason
    assert "not an image" in check_image(tmp_path / "text.jpg")
    assert check_image(tmp_path / "missing.png") == "file not found"


def test_bad_image_error_survives_one_argument_rebuilds():
    # DataLoader workers and pickle rebuild exceptions as type(e)(message).
    e = BadImageError("a.png", "truncated")
    assert str(BadImageError(str(e))) == "a.png: truncated"


def test_parse_color():
    assert parse_color("white") == (255, 255, 255)
    assert parse_color("#0a0B0c") == (10, 11, 12)
    for bad in ("#12345", "blue", "#gggggg"):
        with pytest.raises(ValueError):
            parse_color(bad)


# Random bytes alone rarely get past format detection: these prefixes send them into each decoder.
_MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"GIF89a", b"RIFF\0\0\0\0WEBP"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hypothesis")  # module scope: hypothesis reruns the test body many times


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(_MAGIC), body=st.binary(max_size=600))
def test_random_bytes_are_an_image_or_a_clean_error(scratch, prefix, body):
    path = scratch / "random.png"
    path.write_bytes(prefix + body)
    reason = check_image(path, max_pixels=10**6)  # never raises
    assert reason is None or isinstance(reason, str)
    try:
        out = read_image(path, max_pixels=10**6)  # bounded: a header may claim a huge size
    except BadImageError as e:
        assert str(path) in str(e)
    else:
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 19), w=st.integers(1, 19), seed=st.integers(0, 2**16),
    mode=st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "I;16", "1"]),
    fmt=st.sampled_from(["PNG", "BMP", "TIFF", "WEBP", "JPEG"]),
)
def test_random_small_images_decode(scratch, h, w, seed, mode, fmt):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    except (OSError, ValueError, KeyError):
        return  # a mode this format cannot store
    path = scratch / f"small.{fmt.lower()}"
    path.write_bytes(buf.getvalue())
    out = read_image(path, mode=None)
    assert out.shape[:2] == (h, w) and out.dtype == np.uint8
    assert read_image(path, mode="L").shape == (h, w, 1)
    if fmt in ("PNG", "TIFF") and mode in ("L", "RGB"):
        assert np.array_equal(out.reshape(np.asarray(im).shape), np.asarray(im))  # lossless: exact
