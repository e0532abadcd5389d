"""Decode one image file into a uint8 array, the same way for training and inference.

``read_image`` applies EXIF orientation, composites alpha onto a background, scales 16-bit data to 8 bits (PIL's own
``convert("L")`` clips it), converts palette/CMYK/gray as asked and refuses decompression bombs; every failure is a
``BadImageError`` that names the file. ``check_image`` reads only the header, for checking a whole dataset quickly.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

# The file extensions a dataset scan picks up (compared in lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# The decoders PIL may try (JPEG also opens multi-picture MPO files): a short list keeps rarely used (and rarely
# hardened) parsers away from untrusted files.
FORMATS = ("JPEG", "PNG", "BMP", "DIB", "TIFF", "WEBP", "GIF", "PPM")
DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own refusal limit (2 × Image.MAX_IMAGE_PIXELS), = data.max_pixels default

# Modes read_image understands; everything else (LAB, HSV, ...) is reported as unsupported.
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SUPPORTED_MODES = _GRAY_MODES | {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
_NAMED_COLORS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}

_ORIENTATION = 0x0112  # the EXIF tag
_pil_limit_lock = threading.Lock()


class BadImageError(ValueError):
    """A file that cannot be used as an image; ``str()`` names the file and the problem."""

    def __init__(self, path: str | Path, reason: str = ""):
        # ``reason`` is optional because DataLoader workers and pickle rebuild exceptions from one message argument.
        super().__init__(f"{path}: {reason}" if reason else str(path))
        self.path = str(path)
        self.reason = reason


def parse_color(value: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """``"white"``, ``"black"``, ``"gray"``, ``"#rrggbb"`` or an (r, g, b) tuple → (r, g, b) in 0..255."""
    if isinstance(value, tuple | list):
        rgb = tuple(int(v) for v in value)
        if len(rgb) == 3 and all(0 <= v <= 255 for v in rgb):
            return rgb
    elif value.lower() in _NAMED_COLORS:
        return _NAMED_COLORS[value.lower()]
    elif len(value) == 7 and value.startswith("#"):
        try:
            return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
    raise ValueError(f"background colour {value!r} is not white, black, gray or #rrggbb")


def _open(path: Path) -> Image.Image:
    # Image.open refuses anything above PIL's global MAX_IMAGE_PIXELS before we can apply our own max_pixels, which
    # may be set higher; so the global is lifted while the header is parsed (a lock, because it is process-wide) and
    # the caller checks the size itself right after.
    with _pil_limit_lock:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path, formats=FORMATS)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _header_problem(im: Image.Image, max_pixels: int | None) -> str | None:
    w, h = im.size
    if w < 1 or h < 1:
        return f"empty image ({w}×{h})"
    if max_pixels is not None and w * h > max_pixels:
        return (
            f"{w}×{h} = {w * h:,} pixels is more than data.max_pixels={max_pixels:,} (a guard against decompression "
            f"bombs); raise data.max_pixels if you trust this file"
        )
    if im.mode not in _SUPPORTED_MODES:
        return f"unsupported pixel mode {im.mode!r}"
    return None


def _describe(e: Exception) -> str:
    if isinstance(e, FileNotFoundError):
        return "file not found"
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image in a supported format (JPEG, PNG, BMP, TIFF, WebP, GIF)"
    return f"cannot decode ({type(e).__name__}: {e})"


def check_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
    """Read only the header of ``path``: None if it looks usable, else the reason (without the path)."""
    try:
        with _open(Path(path)) as im:
            return _header_problem(im, max_pixels)
    except Exception as e:  # PIL's plugins raise many types (SyntaxError, struct.error, ...) on malformed headers
        return _describe(e)


def _to_uint8(im: Image.Image) -> np.ndarray:
    """A gray image of any bit depth → (H, W) uint8, scaling the full range instead of clipping it."""
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit data (32-bit "I" is how some decoders hand out 16-bit samples): 0..65535 → 0..255
        a = np.asarray(im).astype(np.int64)
        return ((np.clip(a, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    if im.mode == "F":  # float TIFF: taken to be in [0, 1]
        a = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0)
        return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
    return np.asarray(im.convert("L"))


def _gray(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 → luma with PIL's exact integer ITU-R 601-2 weights (so results equal ``convert("L")``)."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).astype(np.uint8)


def to_mode(img: np.ndarray, mode: str) -> np.ndarray:
    """Convert a uint8 (H, W, 1|3) array to ``mode`` "L" (1 channel, luma) or "RGB" (3 channels)."""
    if mode == "RGB" and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if mode == "L" and img.shape[2] == 3:
        return _gray(img)[..., None]
    return img


def _pixels(im: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Any supported mode → (H, W, 1) gray or (H, W, 3) RGB uint8, alpha composited onto ``background``."""
    mode = im.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in im.info else "RGB"
        im = im.convert(mode)
    elif mode in ("PA", "RGBa"):
        mode, im = "RGBA", im.convert("RGBA")
    elif mode == "La":
        mode, im = "LA", im.convert("LA")
    if mode in ("LA", "RGBA"):
        a = np.asarray(im)
        color, alpha = a[..., :-1].astype(np.uint32), a[..., -1:].astype(np.uint32)
        bg = np.array([_gray(np.array(background, np.uint8))] if mode == "LA" else background, np.uint32)
        return ((color * alpha + bg * (255 - alpha) + 127) // 255).astype(np.uint8)
    if mode in _GRAY_MODES:
        return _to_uint8(im)[..., None]
    return np.asarray(im if mode == "RGB" else im.convert("RGB"))


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, C) array, as ``ImageOps.exif_transpose`` does to an image."""
    if orientation in (5, 6, 7, 8):  # the four that swap width and height
        a = a.transpose(1, 0, 2)
    if orientation in (2, 3, 6, 7):
        a = a[:, ::-1]
    if orientation in (3, 4, 7, 8):
        a = a[::-1]
    return a


def read_image(
    path: str | Path,
    *,
    mode: str | None = "RGB",
    background: str | tuple[int, int, int] = (255, 255, 255),
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode ``path`` into a uint8 array of shape (H, W, C), upright (EXIF orientation applied).

    ``mode``: "RGB" → C = 3, "L" → C = 1 (ITU-R 601-2 luma), None → C = 1 for gray sources and 3 for the rest.
    Transparent pixels are composited onto ``background`` (a colour name, "#rrggbb" or an (r, g, b) tuple); 16-bit
    samples are scaled to 8 bits; an animated file gives its first frame and a warning. Raises ``BadImageError``
    (naming the file) for a missing, truncated, unsupported or too large (> ``max_pixels``) file.
    """
    if mode not in ("RGB", "L", None):
        raise ValueError(f"mode must be 'RGB', 'L' or None, not {mode!r}")
    background = parse_color(background)
    path = Path(path)
    try:
        with _open(path) as im:
            problem = _header_problem(im, max_pixels)
            if problem:
                raise BadImageError(path, problem)
            if getattr(im, "n_frames", 1) > 1:
                warnings.warn(f"{path}: has {im.n_frames} frames; using the first", stacklevel=2)
            im.load()
            arr = _orient(_pixels(im, background), im.getexif().get(_ORIENTATION, 1))
    except BadImageError:
        raise
    except Exception as e:  # truncated data and malformed files surface as many exception types from PIL
        raise BadImageError(path, _describe(e)) from e
    return np.ascontiguousarray(to_mode(arr, mode) if mode else arr)
