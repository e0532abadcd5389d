"""Output pixels: converted files equal ``Translator(input)`` (decoded and encoded independently, with PIL and OpenCV),
the translator's 8-bit output equals the generator's, and tiles blend to the whole-image result without seams."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from translate import Translator
from translate.inference.convert import convert_folder
from translate.inference.tiling import padded_size, tile_positions
from translate.networks import create_generator
from translate.networks.pretrained import generator_spec, save_pretrained

ROOT = Path(__file__).resolve().parents[1]


def save_model(directory: Path, netG: str, seed: int) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(seed)
    net = create_generator(netG, ngf=8, norm="instance")
    meta = {"recipe": "pix2pix", "directions": {"AtoB": "G"},
            "generators": {"G": generator_spec(netG, 8, "instance", False, 3, 3)}}
    return save_pretrained(directory, {"G": net}, meta), net


def smooth(h: int, w: int, seed: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """Photo-like content: an upsampled random colour field with a hard-edged block, (h, w, channels)."""
    rng = np.random.default_rng(seed)
    small = rng.random((5, 6, channels)).astype(np.float32)
    a = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels).clip(0, 1)
    a[h // 3: h // 2, w // 4: w // 2] = 0.1
    return np.round(a * np.iinfo(dtype).max).astype(dtype)


def worst(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def psnr(a: np.ndarray, b: np.ndarray, top: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(top**2 / mse)


def read_cv2(path: Path) -> np.ndarray:
    """A file as OpenCV decodes it (8 or 16 bits, no EXIF rotation), (H, W, C) in RGB(A) order."""
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a.ndim == 2:
        return a[..., None]
    return cv2.cvtColor(a, cv2.COLOR_BGRA2RGBA if a.shape[2] == 4 else cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    model_dir, net = save_model(tmp_path_factory.mktemp("model") / "model", "resnet_6blocks", seed=0)
    return model_dir, net, Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Input files written with PIL and OpenCV, and each one's expected pixels as read back by them."""
    root = tmp_path_factory.mktemp("inputs")
    rgb, rgba = smooth(37, 45, 1), np.dstack([smooth(30, 26, 2), smooth(30, 26, 3, 1)])
    Image.fromarray(rgb).save(root / "rgb.png")
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    Image.fromarray(smooth(28, 33, 4, 1)[..., 0], "L").save(root / "gray.png")
    Image.fromarray(smooth(24, 20, 5, 1, np.uint16)[..., 0]).save(root / "gray16.png")
    cv2.imwrite(str(root / "rgb16.png"), cv2.cvtColor(smooth(22, 30, 6, 3, np.uint16), cv2.COLOR_RGB2BGR))
    rotated = Image.fromarray(smooth(20, 36, 7))  # stored 36 wide; EXIF orientation 6: shown 20 wide, 36 high
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(root / "rotated.png", exif=exif.tobytes())
    return root


def expected_input(path: Path) -> np.ndarray:
    """The input's pixels, upright: PIL (which reduces 16-bit colour PNGs to 8 bits) except for 16-bit colour."""
    if path.name == "rgb16.png":
        return read_cv2(path)
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image))


def test_converted_files_equal_the_translator(model, inputs, tmp_path):
    _, _, translator = model
    summary = convert_folder(translator, inputs, tmp_path, progress=False, workers=2)
    assert (summary["converted"], summary["failed"]) == (6, 0)
    for src in sorted(inputs.iterdir()):
        expected = translator(expected_input(src))
        expected = expected[..., None] if expected.ndim == 2 else expected  # gray comes back HW, as it went in
        out = read_cv2(tmp_path / src.name)
        assert out.shape == expected.shape and out.dtype == expected.dtype, src.name
        assert worst(out, expected) <= 1, src.name
    assert read_cv2(tmp_path / "rotated.png").shape == (36, 20, 3)  # upright


def test_jpeg_output_is_the_translation_without_alpha(model, inputs, tmp_path):
    _, _, translator = model
    convert_folder(translator, inputs, tmp_path, fmt="jpg", quality=95, progress=False)
    for name in ("rgb", "rgba", "rotated"):
        expected = translator(expected_input(inputs / f"{name}.png"))[..., :3]
        out = read_cv2(tmp_path / f"{name}.jpg")
        assert out.shape == expected.shape and psnr(out, expected) > 35, name  # JPEG at 95 with 4:4:4 chroma


def test_tiled_conversion_equals_the_tiled_translator(model, tmp_path):
    _, _, translator = model
    (tmp_path / "in").mkdir()
    image = smooth(100, 90, 8)
    Image.fromarray(image).save(tmp_path / "in" / "big.png")
    convert_folder(translator, tmp_path / "in", tmp_path / "out", tile=48, tile_overlap=16, progress=False)
    tiled = translator(image, tile=48, tile_overlap=16)
    assert worst(tiled, translator(image, tile=0)) > 1  # tiles are visible to this check: it can tell them apart
    assert worst(read_cv2(tmp_path / "out" / "big.png"), tiled) <= 1


def test_8bit_output_is_the_generator_output_rounded(model):
    _, net, translator = model
    image = smooth(32, 40, 9)  # sides on the stride grid: no padding
    with torch.no_grad():
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
        y = net.eval()(x)[0].permute(1, 2, 0).numpy()
    expected = np.clip(np.round((y + 1) * 127.5), 0, 255).astype(np.uint8)
    assert worst(translator(image), expected) <= 1
    rgba = np.dstack([image, np.full(image.shape[:2], 77, np.uint8)])
    out = translator(rgba)
    assert worst(out[..., :3], expected) <= 1 and (out[..., 3] == 77).all()


def overlap_mask(h: int, w: int, tile: int, overlap: int, stride: int) -> np.ndarray:
    """Pixels that two or more tiles cover (the blending bands)."""
    masks = []
    for length in (h, w):
        count = np.zeros(padded_size(length, stride))
        size = min(padded_size(tile, stride), len(count))
        for p in tile_positions(len(count), size, overlap, stride):
            count[p:p + size] += 1
        masks.append(count[:length] > 1)
    return masks[0][:, None] | masks[1][None, :]


def test_tiles_blend_to_the_whole_image(tmp_path):
    # Instance norm, statistics of the whole image shared by every tile. Measured: 49.8 dB, worst error 8 in the
    # bands; blending that gives weight to tile-edge pixels (which lack context) gave 38.9 dB / 26 (a linear ramp
    # over the whole overlap) and 42.9 dB / 15 (a smoothstep over the whole overlap).
    model_dir, _ = save_model(tmp_path / "m", "resnet_9blocks", seed=3)
    translator = Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")
    image = smooth(200, 168, 4)
    whole = translator(image, tile=0)
    tiled = translator(image, tile=96, tile_overlap=48, batch_size=4)
    bands = overlap_mask(200, 168, 96, 48, 4)
    assert bands.any() and not bands.all()
    assert psnr(tiled, whole) >= 45
    assert worst(tiled[bands], whole[bands]) <= 12


@pytest.mark.slow
def test_cli_convert_writes_the_translator_output(model, tmp_path):
    model_dir, _, translator = model
    (tmp_path / "in" / "sub").mkdir(parents=True)
    images = {"a.png": smooth(40, 52, 10), "sub/b.png": smooth(70, 64, 11)}
    for name, image in images.items():
        Image.fromarray(image).save(tmp_path / "in" / name)
    done = subprocess.run([sys.executable, "-m", "translate.cli", "convert", str(model_dir), str(tmp_path / "in"),
                           str(tmp_path / "out"), "--tile", "48", "--tile-overlap", "16", "--device", "cpu",
                           "--dtype", "fp32", "--quiet"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    for name, image in images.items():
        assert worst(read_cv2(tmp_path / "out" / name), translator(image, tile=48, tile_overlap=16)) <= 1, name
