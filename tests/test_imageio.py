"""translate.imageio: every file `convert` writes opens in Pillow, OpenCV and tifffile with the expected mode, size and
bit depth; gray stays gray; TIFF layout tags are not copied; GIF is an image everywhere (first frame; converted to
an animated PNG when it animates)."""

from __future__ import annotations

import logging
import os
import stat

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from translate.data import download
from translate.data.scan import list_images
from translate.fileio import atomic_directory, atomic_write, write_text
from translate.imageio import IMAGE_EXTENSIONS, encode_png16, read_image, read_image_file, write_image
from translate.inference.convert import convert_folder
from translate.networks import create_generator
from translate.networks.pretrained import generator_spec, save_pretrained

H, W = 12, 10
# mode name → (channels, dtype)
MODES = {"L8": (1, np.uint8), "L16": (1, np.uint16), "LA8": (2, np.uint8), "LA16": (2, np.uint16),
         "RGB8": (3, np.uint8), "RGB16": (3, np.uint16), "RGBA8": (4, np.uint8), "RGBA16": (4, np.uint16)}
# What each format keeps: the Pillow mode it reads back (Pillow reads 16-bit colour as 8-bit, and 16-bit gray +
# alpha as RGBA), the channels it holds, and whether 16 bits survive.
PIL_MODE = {
    "png": {"L8": "L", "L16": "I;16", "LA8": "LA", "LA16": "RGBA", "RGB8": "RGB", "RGB16": "RGB", "RGBA8": "RGBA",
            "RGBA16": "RGBA"},
    "tif": {"L8": "L", "L16": "I;16", "LA8": "LA", "LA16": "RGBA", "RGB8": "RGB", "RGB16": "RGB", "RGBA8": "RGBA",
            "RGBA16": "RGBA"},
    "jpg": {"L8": "L", "L16": "L", "LA8": "L", "LA16": "L", "RGB8": "RGB", "RGB16": "RGB", "RGBA8": "RGB",
            "RGBA16": "RGB"},
    "webp": {"L8": "RGB", "L16": "RGB", "LA8": "RGBA", "LA16": "RGBA", "RGB8": "RGB", "RGB16": "RGB",
             "RGBA8": "RGBA", "RGBA16": "RGBA"},
    "bmp": {"L8": "L", "L16": "L", "LA8": "L", "LA16": "L", "RGB8": "RGB", "RGB16": "RGB", "RGBA8": "RGB",
            "RGBA16": "RGB"},
}
_CHANNELS = {"L": 1, "I;16": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def expected(fmt: str, mode: str) -> tuple[str, int, type]:
    """(Pillow mode, channels in the file, sample dtype in the file)."""
    pil = PIL_MODE[fmt][mode]
    deep = fmt in ("png", "tif") and MODES[mode][1] == np.uint16
    return pil, _CHANNELS[pil], np.uint16 if deep else np.uint8


def cv2_channels(fmt: str, channels: int) -> int:
    # OpenCV has no 2-channel images: gray + alpha PNGs become BGRA, gray + alpha TIFFs gray.
    if channels == 2:
        return 4 if fmt == "png" else 1
    return channels


def check_readers(path, fmt: str, mode: str) -> None:
    pil_mode, channels, dtype = expected(fmt, mode)
    with Image.open(path) as im:
        im.load()
        assert (im.mode, im.size) == (pil_mode, (W, H)), path.name
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert a is not None, f"OpenCV cannot read {path.name}"
    c = cv2_channels(fmt, channels)
    assert a.shape == ((H, W) if c == 1 else (H, W, c)) and a.dtype == dtype, (path.name, a.shape, a.dtype)
    if fmt == "tif":
        t = tifffile.imread(path)
        assert t.shape == ((H, W) if channels == 1 else (H, W, channels)) and t.dtype == dtype, path.name


def pixels(mode: str, seed: int = 0) -> np.ndarray:
    c, dtype = MODES[mode]
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, (H, W, c)).astype(dtype)


@pytest.mark.parametrize("fmt", list(PIL_MODE))
@pytest.mark.parametrize("mode", list(MODES))
def test_written_files_open_in_every_reader(tmp_path, fmt, mode):
    a = pixels(mode)
    path = tmp_path / f"out.{fmt}"
    write_image(path, a)
    check_readers(path, fmt, mode)
    if fmt == "tif" and mode != "LA16":  # lossless and unconverted: the very samples
        np.testing.assert_array_equal(tifffile.imread(path).reshape(a.shape), a)
    if fmt == "png" and MODES[mode][0] != 2:  # (OpenCV premultiplies 8-bit TIFF alpha as it reads: PNG here)
        back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        back = back[..., None] if back.ndim == 2 else back
        order = {1: [0], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[a.shape[2]]  # OpenCV reads BGR(A)
        np.testing.assert_array_equal(back[..., order], a)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    nets = {"G": create_generator("resnet_6blocks", ngf=8, norm="instance")}
    meta = {"recipe": "pix2pix", "directions": {"AtoB": "G"},
            "generators": {"G": generator_spec("resnet_6blocks", 8, "instance", False, 3, 3)}}
    return save_pretrained(tmp_path_factory.mktemp("model") / "model", nets, meta)


def _write_input(path, a: np.ndarray) -> None:
    """Inputs come from other writers than ours: tifffile for TIFF (uncompressed, as in the bug report), OpenCV for
    16-bit PNG, Pillow for the rest."""
    if path.suffix == ".tif":
        c = a.shape[2]
        tifffile.imwrite(path, a if c > 1 else a[..., 0], photometric="rgb" if c >= 3 else "minisblack",
                         extrasamples=("unassalpha",) if c in (2, 4) else None)
    elif a.dtype == np.uint16 and a.shape[2] == 2:
        path.write_bytes(encode_png16(a))  # no other writer here makes 16-bit gray + alpha PNGs
    elif a.dtype == np.uint16:
        order = {1: [0], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[a.shape[2]]
        cv2.imwrite(str(path), a[..., order])
    else:
        Image.fromarray(a if a.shape[2] > 1 else a[..., 0]).save(path, **({"lossless": True}
                                                                          if path.suffix == ".webp" else {}))


# Every (input format, mode) `convert` meets; the output keeps the format. 16-bit gray + alpha TIFFs are not
# inputs: Pillow cannot open them.
CONVERT_CASES = [(fmt, mode) for fmt in ("png", "tif") for mode in MODES if (fmt, mode) != ("tif", "LA16")]
CONVERT_CASES += [("jpg", "L8"), ("jpg", "RGB8"), ("webp", "RGB8"), ("webp", "RGBA8"), ("bmp", "L8"), ("bmp", "RGB8")]


@pytest.fixture(scope="module")
def converted(model_dir, tmp_path_factory):
    src, out = tmp_path_factory.mktemp("in"), tmp_path_factory.mktemp("out")
    for k, (fmt, mode) in enumerate(CONVERT_CASES):
        _write_input(src / f"{mode}.{fmt}", pixels(mode, seed=k))
    summary = convert_folder(model_dir, src, out, device="cpu", progress=False)
    assert summary["converted"] == len(CONVERT_CASES), summary["failures"]
    return out


@pytest.mark.parametrize("fmt, mode", CONVERT_CASES)
def test_converted_files_open_in_every_reader(converted, fmt, mode):
    # Gray through an RGB model comes back gray, 16 bits stay 16 bits (PNG, TIFF).
    check_readers(converted / f"{mode}.{fmt}", fmt, mode)


def test_tiff_layout_tags_are_not_copied_into_the_output(tmp_path):
    # tifffile's gray TIFF: PIL's getexif() of it is the whole IFD (BitsPerSample, SamplesPerPixel, ...).
    tifffile.imwrite(tmp_path / "g.tif", pixels("L16")[..., 0], metadata=None, description="scan 7")
    image = read_image_file(tmp_path / "g.tif")
    write_image(tmp_path / "rgb.tif", np.repeat((image.pixels >> 8).astype(np.uint8), 3, 2), exif=image.exif)
    with Image.open(tmp_path / "rgb.tif") as im:
        assert im.mode == "RGB" and im.getexif()[270] == "scan 7"  # the description kept, the layout new
    assert tifffile.imread(tmp_path / "rgb.tif").shape == (H, W, 3)


def test_16_bit_colour_tiff_keeps_its_samples(tmp_path, monkeypatch, caplog):
    a = pixels("RGB16")
    tifffile.imwrite(tmp_path / "c.tif", a, photometric="rgb")
    np.testing.assert_array_equal(read_image_file(tmp_path / "c.tif").pixels, a)
    tifffile.imwrite(tmp_path / "planes.tif", np.moveaxis(a, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image_file(tmp_path / "planes.tif").pixels, a)

    def needs_imagecodecs(*args, **kwargs):  # as for LZW without tifffile's optional codecs
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile, "TiffFile", needs_imagecodecs)
    with caplog.at_level(logging.WARNING, logger="translate.imageio"):
        eight = read_image_file(tmp_path / "c.tif").pixels
    assert [r.getMessage() for r in caplog.records if "c.tif: read at 8 bits" in r.getMessage()]
    assert eight.dtype == np.uint8 and np.abs(eight.astype(int) - a // 257).max() <= 1


def _animated_gif(path) -> None:
    frames = [Image.new("RGB", (W, H), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])


def test_gif_is_read_as_its_first_frame_with_a_warning(tmp_path, caplog):
    """The warning is logged (a warnings.warn would show a source line inside the caller's thread pool), once per file
    and process: training reads a file every epoch."""
    _animated_gif(tmp_path / "anim.gif")
    with caplog.at_level(logging.WARNING, logger="translate.imageio"):
        image = read_image_file(tmp_path / "anim.gif")
        assert image.pixels.shape == (H, W, 3) and tuple(image.pixels[0, 0]) == (255, 0, 0)
        assert tuple(read_image(tmp_path / "anim.gif")[0, 0]) == (255, 0, 0)
    said = [r.getMessage() for r in caplog.records if "anim.gif" in r.getMessage()]
    assert said == [f"{tmp_path / 'anim.gif'}: has 2 frames; using the first"]


def test_gif_is_an_image_for_scans_downloads_and_conversion(model_dir, tmp_path, caplog):
    src = tmp_path / "in"
    src.mkdir()
    _animated_gif(src / "anim.gif")
    Image.new("RGB", (W, H)).save(src / "still.png")
    assert [p.name for p in list_images(src)] == ["anim.gif", "still.png"]
    assert download.IMAGE_EXTENSIONS is IMAGE_EXTENSIONS  # one list
    with caplog.at_level(logging.WARNING, logger="translate.imageio"):
        summary = convert_folder(model_dir, src, tmp_path / "out", device="cpu", progress=False)
    assert summary["converted"] == 2
    with Image.open(tmp_path / "out" / "anim.png") as im:  # a GIF's output is a PNG: animated, every frame (#30)
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (W, H) and im.n_frames == 2
    with caplog.at_level(logging.WARNING, logger="translate.imageio"):  # a format that cannot animate: frame 0
        convert_folder(model_dir, src, tmp_path / "jpg", fmt="jpg", device="cpu", progress=False)
    assert any("anim.gif: has 2 frames" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writes_get_the_umask_modes(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_image(tmp_path / "out.png", pixels("RGB8"))
        write_text(tmp_path / "summary.json", "{}\n")
        with atomic_directory(tmp_path / "folder") as folder:
            (folder / "sub").mkdir()
            (folder / "sub" / "file.txt").write_text("x")
    finally:
        os.umask(old)
    for path in (tmp_path / "out.png", tmp_path / "summary.json", tmp_path / "folder" / "sub" / "file.txt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.png", "summary.json"]


def test_atomic_writes_leave_the_old_content_on_errors(tmp_path):
    write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "a.txt") as f:
        f.write("half of the new")
        raise RuntimeError("disk full")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "kept").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "d") as d:
        (d / "new").write_text("half")
        raise RuntimeError("killed")
    assert (tmp_path / "a.txt").read_text() == "old" and [p.name for p in (tmp_path / "d").iterdir()] == ["kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "d"]  # no temp files left
