"""Image files, the rules training and inference share: which files are images, how they decode (EXIF orientation,
palette, CMYK, gray, 16-bit, alpha, decompression bombs, one ``BadImageError``) and how outputs are written so that
Pillow, OpenCV and tifffile all read them back with the mode, size and bit depth they had. Imports no torch code.

``read_image`` gives uint8 ``(H, W, 1 | 3)`` arrays with alpha composited; training reads any data file with
``decode_data`` (any channel count, multi-page TIFF, ``.npy`` / ``.npz``, the sample type kept: 16-bit stays 16-bit,
float stays float) and ``conform`` (a model side's channel count, with ``read_image``'s rules for 8-bit images);
conversion reads everything a copy must keep (``read_image_file``): pixels as ``(H, W, C)`` uint8 or uint16, C = 1
gray, 2 gray + alpha, 3 RGB, 4 RGBA, plus the ICC profile and EXIF.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from translate.fileio import write_bytes

# Warnings about a file (its first frame used, read at 8 bits) are logged, not ``warnings.warn``ed: Python would print
# the source line of whatever called the decoder (a thread pool's, a DataLoader's), which tells a user nothing.
log = logging.getLogger(__name__)
_warned: set[str] = set()  # each message once per process (training reads a file every epoch)
_warned_lock = threading.Lock()

# The file extensions a folder scan picks up (compared in lower case): datasets, ``translate convert`` and downloads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
# Videos ``translate convert`` translates frame by frame (translate.inference.video, PyAV). Not dataset images.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
# Image formats that may hold several frames (animated GIF, animated WebP, APNG): converted frame by frame into an
# animated output where the output format animates (PNG → APNG, WebP → animated WebP; a GIF's output is a PNG).
ANIMATED_SUFFIXES = (".gif", ".webp", ".png")
# The decoders PIL may try (JPEG also opens multi-picture MPO files): a short list keeps rarely used (and rarely
# hardened) parsers away from untrusted files.
DECODERS = ("JPEG", "PNG", "BMP", "DIB", "TIFF", "WEBP", "GIF", "PPM")
DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own refusal limit (2 × Image.MAX_IMAGE_PIXELS), = data.max_pixels default
# --format choice → (PIL format, file suffix). "same" keeps the input's suffix, except the formats in _SAME_SUFFIX.
OUTPUT_FORMATS = {"png": ("PNG", ".png"), "jpg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}
# GIF is a 256-colour palette format and PPM/PGM are rarely read by other programs: their outputs are PNGs.
_SAME_SUFFIX = {".gif": ".png", ".ppm": ".png", ".pgm": ".png"}
_SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Modes the decoders understand; everything else (LAB, HSV, ...) is reported as unsupported.
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SUPPORTED_MODES = _GRAY_MODES | {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
_NAMED_COLORS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}

_ORIENTATION = 0x0112  # the EXIF tag
# TIFF tags that describe a file's pixel layout. PIL's getexif() of a TIFF returns its whole first IFD: written
# into another file they would override the new layout (a gray header on 3-sample strips that no reader opens).
_LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325,
                338, 339, 340, 341, 347, 529, 530, 531, 532, 34675}
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


# ---- opening and checking -------------------------------------------------------------------------------------------


def _open(path: Path) -> Image.Image:
    # Image.open refuses anything above PIL's global MAX_IMAGE_PIXELS before we can apply our own max_pixels, which
    # may be set higher; so the global is lifted while the header is parsed (a lock, because it is process-wide) and
    # the caller checks the size itself right after.
    with _pil_limit_lock:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path, formats=DECODERS)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def _loaded(path: Path, max_pixels: int | None, warn: bool, **where):
    """``path`` opened, refused (``BadImageError`` naming it) when its header is bad or too large, warned about when
    animated (``warn``) and its first frame loaded. ``where``: the setting named in the too-large message."""
    with _open(path) as im:
        problem = _header_problem(im, max_pixels, **where)
        if problem:
            raise BadImageError(path, problem)
        _warn_frames(im, path, warn)
        im.load()
        yield im


def _header_problem(im: Image.Image, max_pixels: int | None, setting: str = "data.max_pixels",
                    option: str | None = None) -> str | None:
    w, h = im.size
    if w < 1 or h < 1:
        return f"empty image ({w}×{h})"
    if max_pixels is not None and w * h > max_pixels:
        return (f"{w}×{h} = {w * h:,} pixels is more than {setting}={max_pixels:,} (a guard against decompression "
                f"bombs); raise {option or setting} if you trust this file")
    if im.mode not in _SUPPORTED_MODES:
        return f"unsupported pixel mode {im.mode!r}"
    return None


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun: "1 file", "2 files" (``nouns``: the plural when it is not ``noun`` + "s")."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def _describe(e: Exception, path: Path | None = None) -> str:
    if isinstance(e, FileNotFoundError):
        return "file not found"
    if isinstance(e, Image.UnidentifiedImageError):
        try:
            if path is not None and path.stat().st_size == 0:
                return "empty file (0 bytes)"
        except OSError:
            pass
        return "not an image in a supported format (JPEG, PNG, BMP, TIFF, WebP, GIF, PPM)"
    return f"cannot decode ({type(e).__name__}: {e})"


def warn_once(message: str) -> None:
    """Log a warning about a file (``translate.imageio``'s logger) the first time this process sees it."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)


def _warn_frames(im: Image.Image, path: Path, warn: bool) -> None:
    if warn and getattr(im, "n_frames", 1) > 1:
        warn_once(f"{path}: has {im.n_frames} frames; using the first")


def check_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
    """Read only the header of ``path``: None if it looks usable, else the reason (without the path)."""
    try:
        with _open(Path(path)) as im:
            return _header_problem(im, max_pixels)
    except Exception as e:  # PIL's plugins raise many types (SyntaxError, struct.error, ...) on malformed headers
        return _describe(e, Path(path))


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, C) array, as ``ImageOps.exif_transpose`` does to an image."""
    if orientation in (5, 6, 7, 8):  # the four that swap width and height
        a = a.transpose(1, 0, 2)
    if orientation in (2, 3, 6, 7):
        a = a[:, ::-1]
    if orientation in (3, 4, 7, 8):
        a = a[::-1]
    return a


# ---- decoding for training: uint8, alpha composited --------------------------------------------------------------


def _gray_to_uint8(im: Image.Image) -> np.ndarray:
    """A gray image of any bit depth → (H, W) uint8, scaling the full range instead of clipping it."""
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit data (32-bit "I" is how some decoders hand out 16-bit samples): 0..65535 → 0..255
        a = np.asarray(im).astype(np.int64)
        return ((np.clip(a, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    if im.mode == "F":  # float TIFF: taken to be in [0, 1]
        a = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0)
        return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
    return np.asarray(im.convert("L"))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 → luma with PIL's exact integer ITU-R 601-2 weights (so results equal ``convert("L")``)."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).astype(np.uint8)


def to_mode(img: np.ndarray, mode: str) -> np.ndarray:
    """Convert a uint8 (H, W, 1|3) array to ``mode`` "L" (1 channel, luma) or "RGB" (3 channels)."""
    if mode == "RGB" and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if mode == "L" and img.shape[2] == 3:
        return _luma(img)[..., None]
    return img


def _composited(im: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
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
        bg = np.array([_luma(np.array(background, np.uint8))] if mode == "LA" else background, np.uint32)
        return ((color * alpha + bg * (255 - alpha) + 127) // 255).astype(np.uint8)
    if mode in _GRAY_MODES:
        return _gray_to_uint8(im)[..., None]
    return np.asarray(im if mode == "RGB" else im.convert("RGB"))


def read_image(path: str | Path, *, mode: str | None = "RGB",
               background: str | tuple[int, int, int] = (255, 255, 255),
               max_pixels: int | None = DEFAULT_MAX_PIXELS, warn: bool = True) -> np.ndarray:
    """Decode ``path`` into a uint8 array of shape (H, W, C), upright (EXIF orientation applied), for training.

    ``mode``: "RGB" → C = 3, "L" → C = 1 (ITU-R 601-2 luma), None → C = 1 for gray sources and 3 for the rest.
    Transparent pixels are composited onto ``background`` (a colour name, "#rrggbb" or an (r, g, b) tuple); 16-bit
    samples are scaled to 8 bits; an animated file gives its first frame and a warning (logged once per file and
    process; ``warn=False``: none). Raises ``BadImageError`` (naming the file) for a missing, empty, truncated,
    unsupported or too large (> ``max_pixels``) file.
    """
    if mode not in ("RGB", "L", None):
        raise ValueError(f"mode must be 'RGB', 'L' or None, not {mode!r}")
    background = parse_color(background)
    path = Path(path)
    try:
        with _loaded(path, max_pixels, warn) as im:
            arr = _orient(_composited(im, background), im.getexif().get(_ORIENTATION, 1))
    except BadImageError:
        raise
    except Exception as e:  # truncated data and malformed files surface as many exception types from PIL
        raise BadImageError(path, _describe(e, path)) from e
    return np.ascontiguousarray(to_mode(arr, mode) if mode else arr)


# ---- decoding data for training: any channel count, the sample type kept ----------------------------------------
# Arrays saved with numpy, next to the image formats; a folder scan for a dataset picks up both (DATA_EXTENSIONS).
ARRAY_EXTENSIONS = (".npy", ".npz")
DATA_EXTENSIONS = IMAGE_EXTENSIONS + ARRAY_EXTENSIONS
# How a 3-D array's axes are read (data.array_layout): height × width × channels (numpy's and scikit-image's channel
# last), channels × height × width (torch's), or auto: the smallest axis is the channels.
ARRAY_LAYOUTS = ("auto", "hwc", "chw")
_TIFF_SUFFIXES = (".tif", ".tiff")
_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
# Sample types the transforms (OpenCV) take as they are; the others are widened without loss: bool → uint8,
# int8 → int16, float16 → float32, 32/64-bit integers → float64 (exact below 2^53). ``DataInfo.dtype`` keeps the
# file's own type.
_KEPT = {"uint8", "uint16", "int16", "float32", "float64"}
_WIDER = {"bool": np.uint8, "int8": np.int16, "float16": np.float32}


@dataclass(frozen=True)
class DataInfo:
    """What a data file holds: ``channels`` (alpha included), whether the last one is ``alpha``, its ``kind`` ("gray"
    and "rgb" images convert to each other as they always did, 1 ↔ 3 channels; "data" channels are taken as they
    are), its sample type and, where the file was decoded in full, the range of its values (float data)."""

    channels: int
    alpha: bool = False
    kind: str = "data"  # gray | rgb | data
    dtype: str = "uint8"
    low: float | None = None
    high: float | None = None

    def to_json(self) -> list:
        return [self.channels, self.alpha, self.kind, self.dtype, self.low, self.high]

    @classmethod
    def from_json(cls, value: list) -> DataInfo:
        channels, alpha, kind, dtype, low, high = value
        return cls(int(channels), bool(alpha), str(kind), str(dtype), low, high)


def channel_problem(info: DataInfo, channels: int) -> str | None:
    """Why a file described by ``info`` cannot give ``channels`` channels (None: it can). See ``conform``."""
    if channels in (info.channels, info.channels - info.alpha):
        return None
    if info.kind in ("gray", "rgb") and channels in (1, 3):
        return None
    what = f"{info.channels} channels" + (" (the last one alpha)" if info.alpha else "")
    return f"has {what}, not {channels}"


def conform(pixels: np.ndarray, info: DataInfo, channels: int,
            background: str | tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """The (H, W, ``channels``) array a model side reads from a decoded file. Alpha stays a channel where the side
    counts it (4 for RGBA, 2 for gray + alpha) and is composited onto ``background`` otherwise; gray and RGB images
    convert to each other (ITU-R 601-2 luma, or the gray repeated), as ``read_image`` does; data channels must match.
    For 8-bit images the result equals ``read_image``'s. ValueError (``channel_problem``) when it cannot."""
    c = pixels.shape[2]
    if channels == c:
        return pixels
    if info.alpha:
        pixels, c = _composite(pixels, parse_color(background)), c - 1
    if channels == c:
        return pixels
    problem = channel_problem(info, channels)
    if problem:
        raise ValueError(problem)
    return np.repeat(pixels, 3, axis=2) if channels == 3 else _luma_any(pixels)[..., None]


def _composite(a: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Colour channels over the last (alpha) channel onto ``background``, in the array's own sample type: integers
    with ``_composited``'s rounding (so 8-bit results are the same), floats with alpha in [0, 1]."""
    color, alpha = a[..., :-1], a[..., -1:]
    bg8 = np.array(background, np.uint8)
    bg = np.array([_luma(bg8)] if color.shape[2] == 1 else background, np.float64)
    if np.issubdtype(a.dtype, np.integer):
        top = int(np.iinfo(a.dtype).max)
        bg = np.round(bg * top / 255).astype(np.uint64)
        c, al = color.astype(np.uint64), alpha.astype(np.uint64)
        return ((c * al + bg * (top - al) + top // 2) // top).astype(a.dtype)
    al = alpha.astype(np.float64)
    return (color * al + bg / 255 * (1 - al)).astype(a.dtype)


def _luma_any(rgb: np.ndarray) -> np.ndarray:
    """RGB → luma in the array's sample type: PIL's integer weights for integers (``_luma`` for 8 bits), the same
    weights in floating point for floats."""
    if rgb.dtype == np.uint8:
        return _luma(rgb)
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = (r * 19595 + g * 38470 + b * 7471) / 65536
    return np.rint(y).astype(rgb.dtype) if np.issubdtype(rgb.dtype, np.integer) else y.astype(rgb.dtype)


def _working(a: np.ndarray) -> np.ndarray:
    """``a`` in native byte order, widened where the transforms cannot take its sample type (see ``_KEPT``)."""
    name = a.dtype.name
    if name in _WIDER:
        return a.astype(_WIDER[name])
    if name not in _KEPT:
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise ValueError(f"unsupported sample type {a.dtype} (numbers only)")
        return a.astype(np.float64)
    return a.astype(a.dtype.newbyteorder("="), copy=False)


def _array_header(fp) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fp)
    reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if reader is None:
        raise ValueError(f".npy format version {version} is not supported")
    shape, _, dtype = reader(fp)
    return shape, dtype


def _array_layout(shape: tuple[int, ...], layout: str) -> str:
    """"hwc" or "chw" for a 3-D array's ``shape``; ValueError where ``auto`` cannot tell."""
    if len(shape) == 2:
        return "hwc"
    if len(shape) != 3:
        raise ValueError(f"a {len(shape)}-D array {tuple(shape)}: expected H×W, H×W×C or C×H×W")
    if layout != "auto":
        return layout
    smallest = min(shape)
    if shape.count(smallest) == 1 and shape.index(smallest) in (0, 2):
        return "chw" if shape.index(smallest) == 0 else "hwc"
    raise ValueError(f"cannot tell the channel axis of a {shape[0]}×{shape[1]}×{shape[2]} array (the smallest axis, "
                     f"first or last, is taken for the channels); set data.array_layout=hwc or chw")


def _hw(shape: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    """(height, width, channels) of an array of ``shape`` read as ``layout``."""
    layout = _array_layout(shape, layout)
    if len(shape) == 2:
        return shape[0], shape[1], 1
    return (shape[1], shape[2], shape[0]) if layout == "chw" else (shape[0], shape[1], shape[2])


def _npz_member(z, path: Path) -> str:
    names = [n for n in z.namelist() if n.endswith(".npy")]
    if len(names) != 1:
        listed = ", ".join(n[:-4] for n in names) or "none"
        raise ValueError(f"an .npz of a dataset holds one array, this one {len(names)} ({listed})")
    return names[0]


def _array_info(path: Path, max_pixels: int | None, layout: str) -> tuple[DataInfo, tuple[int, int, int]]:
    """The header of an .npy / .npz file, without reading its data."""
    import zipfile

    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as z, z.open(_npz_member(z, path)) as f:
            shape, dtype = _array_header(f)
    else:
        with open(path, "rb") as f:
            shape, dtype = _array_header(f)
    if dtype.hasobject:
        raise ValueError("holds Python objects, not numbers (arrays are read without pickle)")
    h, w, c = _hw(shape, layout)
    _check_size(w, h, max_pixels)
    return DataInfo(c, False, "data", dtype.name), (h, w, c)


def _check_size(w: int, h: int, max_pixels: int | None) -> None:
    if w < 1 or h < 1:
        raise ValueError(f"empty image ({w}×{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise ValueError(f"{w}×{h} = {w * h:,} pixels is more than data.max_pixels={max_pixels:,} (a guard against "
                         f"decompression bombs); raise data.max_pixels if you trust this file")


def _read_array(path: Path, max_pixels: int | None, layout: str) -> tuple[np.ndarray, DataInfo]:
    info, _ = _array_info(path, max_pixels, layout)
    if path.suffix.lower() == ".npz":
        import zipfile

        with zipfile.ZipFile(path) as z:
            key = _npz_member(z, path)[:-4]
        with np.load(path, allow_pickle=False) as z:
            a = z[key]
    else:
        a = np.load(path, allow_pickle=False)
    if a.ndim == 2:
        a = a[..., None]
    elif _array_layout(a.shape, layout) == "chw":
        a = np.moveaxis(a, 0, -1)
    return _working(a), info


def _tiff_layout(axes: str, shape: tuple[int, ...], layout: str) -> str:
    """How the first series of a TIFF maps to (H, W, C): "hwc" or "chw" for 3-D data ("YXS": samples last; "CYX"
    or "SYX": channels first; pages of any other name, e.g. what ``tifffile.imwrite`` of an H×W×C array with more than
    4 channels writes, by ``layout`` as for arrays), "fold" for more axes (every one but Y and X becomes channels)."""
    if len(shape) == 2:
        return "hwc"
    if len(shape) > 3:
        if "Y" not in axes or "X" not in axes:
            raise ValueError(f"a TIFF series of axes {axes!r}: expected Y and X")
        return "fold"
    if axes[2] == "S":
        return "hwc"
    if axes[0] in "SC":
        return "chw"
    return _array_layout(shape, layout)


def _tiff_info(tif, layout: str) -> tuple[DataInfo, tuple[int, int], str]:
    """What the first series of an open ``tifffile.TiffFile`` holds, its (height, width) and ``_tiff_layout``."""
    import tifffile

    series = tif.series[0]
    axes, shape = series.axes, tuple(series.shape)
    how = _tiff_layout(axes, shape, layout)
    if how == "fold":
        h, w = shape[axes.index("Y")], shape[axes.index("X")]
        channels = int(np.prod([n for a, n in zip(axes, shape) if a not in "YX"], dtype=np.int64))
    else:
        h, w, channels = _hw(shape, how)
    page = tif.pages[0]
    extras = tuple(int(e) for e in (page.extrasamples or ()))
    alpha = len(extras) == 1 and extras[0] in (1, 2)  # associated or unassociated alpha
    kind = "data"
    if axes in ("YX", "YXS"):  # one page: its photometric interpretation says what the samples are
        colors = channels - alpha
        photometric = int(page.photometric)
        if photometric in (int(tifffile.PHOTOMETRIC.MINISBLACK), int(tifffile.PHOTOMETRIC.MINISWHITE)) and colors == 1:
            kind = "gray"
        elif photometric == int(tifffile.PHOTOMETRIC.RGB) and colors == 3:
            kind = "rgb"
    return DataInfo(channels, alpha and kind != "data", kind, np.dtype(series.dtype).name), (h, w), how


def _read_tiff(path: Path, max_pixels: int | None, layout: str, warn: bool) -> tuple[np.ndarray, DataInfo]:
    """Any TIFF through tifffile: the first series as (H, W, C) (see ``_tiff_layout``: a multi-page file's pages
    become channels), the sample type kept, the orientation tag applied."""
    import tifffile  # late: only TIFF data needs it

    with tifffile.TiffFile(path) as tif:
        info, (h, w), how = _tiff_info(tif, layout)
        _check_size(w, h, max_pixels)
        if warn and len(tif.series) > 1:
            warn_once(f"{path}: holds {len(tif.series)} series of different shapes; using the first")
        axes = tif.series[0].axes
        a = tif.series[0].asarray()
        tag = tif.pages[0].tags.get("Orientation")
        orientation = int(tag.value) if tag is not None else 1
    if how == "fold":
        a = np.moveaxis(a, (axes.index("Y"), axes.index("X")), (0, 1)).reshape(h, w, -1)
    elif a.ndim == 2:
        a = a[..., None]
    elif how == "chw":
        a = np.moveaxis(a, 0, -1)
    return _working(np.ascontiguousarray(_orient(a, orientation))), info


def _plain_mode(im: Image.Image) -> Image.Image:
    """Palette, premultiplied and 1-bit images in the plain mode of their samples (alpha kept)."""
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("PA", "RGBa"):
        return im.convert("RGBA")
    return im.convert({"La": "LA", "1": "L"}[im.mode]) if im.mode in ("La", "1") else im


def _pil_data(im: Image.Image, path: Path) -> tuple[np.ndarray, DataInfo]:
    """A PIL image → (H, W, C) with alpha kept and its sample type: 8-bit modes as uint8 (converted as
    ``_composited`` does, without compositing), 16-bit gray as uint16, "F" as float32, 32-bit "I" as int32."""
    im = _plain_mode(im)
    if im.mode in ("CMYK", "YCbCr", "RGBX"):
        im = im.convert("RGB")
    mode = im.mode
    a = np.asarray(im)
    if mode.startswith("I;16") or (mode == "I" and im.format in ("PNG", "PPM")):  # PNG and PGM hold ≤ 16 bits
        a = a.astype(np.uint16)
    elif mode == "I":
        a = a.astype(np.int32)
    elif mode == "F":
        a = a.astype(np.float32)
    a = a[..., None] if a.ndim == 2 else a  # read-only for 8 bits, as read_image's: the transforms copy
    kind = "rgb" if mode in ("RGB", "RGBA") else "gray"
    return a, DataInfo(a.shape[2], mode in ("LA", "RGBA"), kind, a.dtype.name)


def _tiff_by_pil(path: Path, fallback: bool = False) -> bool:
    """Whether PIL decodes this TIFF, as training always did: one page of 8-bit samples. The rest (several pages,
    16-bit or float samples, more than 4 samples) goes to tifffile; ``fallback``: whether PIL can read it without
    losing anything where tifffile cannot (one page of 16-bit or float gray)."""
    try:
        with _open(path) as im:
            modes = _EIGHT_BIT_MODES | ({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"} if fallback else set())
            # PIL reads 2 samples without an alpha tag as gray, dropping the second: those go to tifffile.
            samples = int(im.tag_v2.get(277, 1))
            return (getattr(im, "n_frames", 1) == 1 and im.mode in modes and not _tiff_16bit_colour(im)
                    and len(im.getbands()) == samples)
    except Exception:
        return False  # e.g. 5 samples a pixel: PIL cannot open it, tifffile can


def decode_data(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, array_layout: str = "auto",
                warn: bool = True) -> tuple[np.ndarray, DataInfo]:
    """Decode any data file into an (H, W, C) array of its own sample type (alpha kept; ``conform`` makes it a model
    side's channels) and its ``DataInfo``:

    - images PIL reads (JPEG, PNG, BMP, WebP, GIF, PPM, 8-bit TIFF): upright, as ``read_image`` but not reduced to 8
      bits or composited: 16-bit PNG (colour too) stays uint16, float TIFF float32;
    - other TIFFs through tifffile: several pages or any number of samples become channels, the type is kept;
    - ``.npy`` / ``.npz`` (one array; read without pickle): H×W, or H×W×C / C×H×W as ``array_layout`` says.

    ``BadImageError`` names the file for anything unusable."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in ARRAY_EXTENSIONS:
            return _read_array(path, max_pixels, array_layout)
        if suffix in _TIFF_SUFFIXES and not _tiff_by_pil(path):
            try:
                return _read_tiff(path, max_pixels, array_layout, warn)
            except ValueError:
                raise
            except Exception as e:  # a codec tifffile lacks (LZW needs imagecodecs): PIL reads one page of gray
                if not _tiff_by_pil(path, fallback=True):
                    raise BadImageError(path, f"cannot decode ({type(e).__name__}: {e})") from e
        with _loaded(path, max_pixels, warn) as im:
            orientation = im.getexif().get(_ORIENTATION, 1)
            if im.format == "PNG" and _png_16bit(path):
                from torchvision.io import ImageReadMode, decode_png, read_file  # late: a heavy import

                a = decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED).permute(1, 2, 0).numpy()
                info = DataInfo(a.shape[2], a.shape[2] in (2, 4), "rgb" if a.shape[2] >= 3 else "gray", "uint16")
            else:
                a, info = _pil_data(im, path)
        return np.ascontiguousarray(_orient(_working(a), orientation)), info
    except BadImageError:
        raise
    except ValueError as e:
        raise BadImageError(path, str(e)) from e
    except Exception as e:  # truncated data and malformed files surface as many exception types
        raise BadImageError(path, _describe(e, path)) from e


def probe_data(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               array_layout: str = "auto") -> DataInfo:
    """``decode_data``'s ``DataInfo`` from the header alone (``data.verify=header``); BadImageError names the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in ARRAY_EXTENSIONS:
            return _array_info(path, max_pixels, array_layout)[0]
        if suffix in _TIFF_SUFFIXES and not _tiff_by_pil(path):
            import tifffile

            try:
                with tifffile.TiffFile(path) as tif:
                    info, (h, w), _ = _tiff_info(tif, array_layout)
            except Exception:
                if not _tiff_by_pil(path, fallback=True):
                    raise
            else:
                _check_size(w, h, max_pixels)
                return info
        with _open(path) as im:
            problem = _header_problem(im, max_pixels)
            if problem:
                raise BadImageError(path, problem)
            if im.format == "PNG" and _png_16bit(path):
                bands = len(im.getbands())
                return DataInfo(bands, bands in (2, 4), "rgb" if bands >= 3 else "gray", "uint16")
            mode = {"P": "RGBA" if "transparency" in im.info else "RGB", "PA": "RGBA", "RGBa": "RGBA", "La": "LA",
                    "1": "L", "CMYK": "RGB", "YCbCr": "RGB", "RGBX": "RGB"}.get(im.mode, im.mode)
            dtype = {"F": "float32", "I": "uint16" if im.format in ("PNG", "PPM") else "int32"}.get(
                mode, "uint16" if mode.startswith("I;16") else "uint8")
            return DataInfo({"LA": 2, "RGB": 3, "RGBA": 4}.get(mode, 1), mode in ("LA", "RGBA"),
                            "rgb" if mode in ("RGB", "RGBA") else "gray", dtype)
    except BadImageError:
        raise
    except ValueError as e:
        raise BadImageError(path, str(e)) from e
    except Exception as e:
        raise BadImageError(path, _describe(e, path)) from e


# ---- decoding for conversion: alpha, 16 bits and metadata kept ---------------------------------------------------


@dataclass
class ImageFile:
    """A decoded file: upright ``pixels`` and the metadata a converted copy keeps."""

    pixels: np.ndarray
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already applied to ``pixels`` and reset to 1 here


def pil_to_array(im: Image.Image) -> np.ndarray:
    """A PIL image of any supported mode → (H, W, C) uint8 or uint16 array, alpha kept, 16-bit kept."""
    im = _plain_mode(im)
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im)
        if mode == "F":  # float samples: taken to be in [0, 1], as for training
            a = np.round(np.clip(np.nan_to_num(a.astype(np.float32)), 0, 1) * 65535)
        return np.clip(a, 0, 65535).astype(np.uint16)[..., None]
    if mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, RGBX without colour management (see _colour_managed)
    a = np.array(im)  # a writable copy (np.asarray of a PIL image is read-only, which torch.from_numpy warns about)
    return a[..., None] if a.ndim == 2 else a


def array_to_pil(a: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 → PIL L/LA/RGB/RGBA; uint16 gray → PIL "I;16" (PIL has no 16-bit colour modes: colour
    uint16 is reduced to 8 bits)."""
    if a.dtype == np.uint16 and a.shape[2] > 1:
        a = to_uint8(a)
    # PIL infers L / LA / RGB / RGBA / I;16 from the shape and dtype.
    return Image.fromarray(np.ascontiguousarray(a if a.shape[2] > 1 else a[..., 0]))


def to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _png_16bit(path: Path) -> bool:
    # PIL silently reduces 16-bit colour PNGs to 8 bits (16-bit gray it keeps): those go to torchvision.
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == _PNG_SIGNATURE and head[24] == 16 and head[25] in (2, 4, 6)


def _tiff_16bit_colour(im: Image.Image) -> bool:
    # PIL reads 16-bit RGB(A) TIFFs as 8-bit RGB(A): tifffile keeps the samples.
    if im.format != "TIFF" or im.mode not in ("RGB", "RGBA"):
        return False
    bits = im.tag_v2.get(258, 8)
    return (bits[0] if isinstance(bits, tuple) else bits) == 16


def _read_tiff16(path: Path) -> np.ndarray | None:
    """The first page's (H, W, C) uint16 samples, or None (with a warning) where tifffile cannot decode them: LZW,
    JPEG and other codecs need its optional imagecodecs package, while PIL reads them, if only at 8 bits."""
    import tifffile  # late: only 16-bit colour TIFFs need it

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            a = page.asarray()
            return np.moveaxis(a, 0, -1) if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE else a
    except Exception as e:
        warn_once(f"{path}: read at 8 bits, tifffile cannot decode its 16 bits ({e})")
        return None


def _colour_managed(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK with an embedded profile → sRGB through that profile (and an sRGB profile to go with it); without one,
    PIL's naive conversion happens in ``pil_to_array`` and the profile (of the wrong colour space) is dropped."""
    if im.mode != "CMYK":
        return im, icc
    if icc:
        try:
            from PIL import ImageCms

            srgb = ImageCms.createProfile("sRGB")
            im = ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb, outputMode="RGB")
            return im, ImageCms.ImageCmsProfile(srgb).tobytes()
        except Exception:  # no littlecms, or a broken profile: fall back to the naive conversion
            pass
    return im.convert("RGB"), None


def _decode_pixels(im: Image.Image, path: Path, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    if im.format == "PNG" and _png_16bit(path):
        from torchvision.io import ImageReadMode, decode_png, read_file  # late: torchvision is a heavy import

        return decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED).permute(1, 2, 0).numpy(), icc
    if _tiff_16bit_colour(im) and (pixels := _read_tiff16(path)) is not None:
        return pixels, icc
    im, icc = _colour_managed(im, icc)
    return pil_to_array(im), icc


def read_image_file(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageFile:
    """Decode ``path`` upright with alpha, 16-bit samples, ICC profile and EXIF, for conversion; an animated file
    (GIF) gives its first frame and a warning (logged once per file and process). ``BadImageError`` names the file
    for anything unusable (missing, empty, corrupt, not an image, more than ``max_pixels``)."""
    path = Path(path)
    try:
        with _loaded(path, max_pixels, True, setting="max_pixels", option="--max-pixels") as im:
            exif = im.getexif()
            orientation = exif.get(_ORIENTATION, 1)
            pixels, icc = _decode_pixels(im, path, im.info.get("icc_profile") or None)
    except BadImageError:
        raise
    except Exception as e:  # truncated data and malformed files surface as many exception types from PIL
        raise BadImageError(path, _describe(e, path)) from e
    for tag in _LAYOUT_TAGS & set(exif):
        del exif[tag]
    if orientation != 1:
        exif[_ORIENTATION] = 1
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if icc and not icc_fits(icc, pixels.shape[2]):
        icc = None
    pixels = np.ascontiguousarray(_orient(pixels, orientation) if orientation in range(2, 9) else pixels)
    return ImageFile(pixels, icc, exif.tobytes() if len(exif) else None)


def icc_fits(icc: bytes, channels: int) -> bool:
    """Whether an ICC profile describes images with this many colour channels (its header's colour space field)."""
    space = icc[16:20]
    return (space == b"GRAY" and channels in (1, 2)) or (space == b"RGB " and channels in (3, 4))


# ---- animations: every frame of a GIF, WebP or APNG ---------------------------------------------------------------


def frame_count(path: str | Path) -> int:
    """How many frames an image file holds (1 for a still, or for a file that cannot be opened: decoding it later
    reports the problem). GIF frames are counted by skimming the file, the others from the header."""
    path = Path(path)
    if path.suffix.lower() not in ANIMATED_SUFFIXES:
        return 1
    try:
        with _open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except Exception:
        return 1


@dataclass
class Animation:
    """The frames of an animated file, each (H, W, C) uint8 with C 3 or 4 (alpha when any frame is transparent), each
    frame's duration in ms and the loop count (0: for ever)."""

    frames: list[np.ndarray]
    durations: list[int]
    loop: int = 0


def read_animation(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Animation:
    """Every frame of an animated GIF, WebP or PNG, composed as a viewer shows it (Pillow applies each frame's
    disposal and blending), with its duration. ``max_pixels`` bounds the frames' pixels together (all frames are
    held in memory; videos are streamed instead). ``BadImageError`` names the file and the frame for a broken one."""
    from PIL import ImageSequence

    path = Path(path)
    frames, durations, index = [], [], 0
    try:
        with _open(path) as im:
            problem = _header_problem(im, None)
            if problem:
                raise BadImageError(path, problem)
            w, h = im.size
            n = getattr(im, "n_frames", 1)
            if max_pixels is not None and n * w * h > max_pixels:
                raise BadImageError(path, f"{n} frames of {w}×{h} = {n * w * h:,} pixels is more than "
                                          f"max_pixels={max_pixels:,}; raise --max-pixels if you trust this file")
            alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            loop = int(im.info.get("loop", 0) or 0)
            for frame in ImageSequence.Iterator(im):
                index = len(frames)
                durations.append(int(frame.info.get("duration", 100) or 100))
                frames.append(np.array(frame.convert("RGBA" if alpha else "RGB")))
    except BadImageError:
        raise
    except Exception as e:
        where = f"frame {index}: " if index else ""
        raise BadImageError(path, where + _describe(e, path)) from e
    return Animation(frames, durations, loop)


def write_animation(path: str | Path, frames: list[np.ndarray], durations: list[int], *, loop: int = 0,
                    quality: int = 95) -> None:
    """An animated PNG (APNG: lossless, full colour) or WebP (``quality``) of ``frames``, atomically."""
    path = Path(path)
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt not in ("PNG", "WEBP"):
        raise ValueError(f"cannot write an animation to {path}: PNG (APNG) or WebP")
    images = [array_to_pil(to_uint8(f)) for f in frames]
    options = {"quality": quality} if fmt == "WEBP" else {}
    buffer = io.BytesIO()
    images[0].save(buffer, fmt, save_all=True, append_images=images[1:], duration=list(durations), loop=loop,
                   **options)
    write_bytes(path, buffer.getvalue())


# ---- writing ---------------------------------------------------------------------------------------------------------


# --format choices for results of any channel count and sample type: TIFF through tifffile, numpy's .npy.
DATA_FORMATS = {"tiff": ".tif", "npy": ".npy"}


def holds(suffix: str, channels: int, dtype: str | None = None) -> bool:
    """Whether ``write_image`` keeps results of ``channels`` channels and sample type ``dtype`` (None: the input's,
    as for image models) in a file of ``suffix`` as they are: PNG 1-4 channels of 8 or 16 bits, JPEG / WebP / BMP
    8-bit gray or colour, TIFF and arrays anything."""
    suffix = suffix.lower()
    if suffix in ARRAY_EXTENSIONS + _TIFF_SUFFIXES:
        return True
    if suffix == ".png":
        return channels <= 4 and dtype in (None, "uint8", "uint16")
    return channels in (1, 3) and dtype in (None, "uint8")


def output_suffix(src: Path, fmt: str, channels: int | None = None, dtype: str | None = None) -> str:
    """The output file's suffix for ``--format`` ``fmt`` ("same", "png", "jpg", "webp", "tiff", "npy"). "same"
    keeps the input's (GIF, PPM and PGM become PNG) where it ``holds`` results of ``channels`` and ``dtype`` (when
    given), else TIFF."""
    if fmt in DATA_FORMATS:
        return DATA_FORMATS[fmt]
    if fmt == "same":
        suffix = src.suffix
        suffix = _SAME_SUFFIX.get(suffix.lower(), suffix)
        return suffix if channels is None or holds(suffix, channels, dtype) else ".tif"
    return OUTPUT_FORMATS[fmt][1]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png16(a: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A 16-bit PNG of an (H, W, C) uint16 array (PIL cannot write 16-bit colour), with iCCP and eXIf chunks."""
    h, w, c = a.shape
    rows = a.astype(">u2").reshape(h, w * c).view(np.uint8)
    # Filter type 2 ("Up", each byte minus the one above): photos compress far better than unfiltered.
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[:, 1:] = rows
    filtered[1:, 1:] -= rows[:-1]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))]
    if icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    chunks += [_png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)), _png_chunk(b"IEND", b"")]
    return _PNG_SIGNATURE + b"".join(chunks)


def _encode_tiff16(a: np.ndarray, icc_profile: bytes | None) -> bytes:
    """A 16-bit RGB or RGBA TIFF (PIL has no such modes), deflate-compressed: libtiff (OpenCV) and tifffile decode
    deflate on their own, where LZW needs tifffile's optional imagecodecs."""
    import tifffile  # late: only 16-bit colour TIFFs need it

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, a, photometric="rgb", compression="zlib",
                     extrasamples=("unassalpha",) if a.shape[2] == 4 else None, iccprofile=icc_profile, metadata=None)
    return buffer.getvalue()


def encode_image(pixels: np.ndarray, fmt: str, *, quality: int = 95, icc_profile: bytes | None = None,
                 exif: bytes | None = None) -> bytes:
    """The bytes of ``pixels`` ((H, W, C) uint8 or uint16) in PIL format ``fmt``, by one rule for every format:
    gray stays gray, alpha stays and 16 bits stay 16 where the format can hold them: JPEG and BMP (for the readers
    of BMP) drop alpha, WebP stores gray as RGB, only PNG and TIFF keep 16 bits; a 16-bit gray + alpha TIFF becomes
    RGBA (Pillow and OpenCV cannot read the 2-sample kind), and 16-bit colour TIFFs (written by tifffile) keep the
    ICC profile but not the EXIF. A profile that does not fit the output's colour channels is dropped."""
    if fmt in ("JPEG", "BMP") and pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1]
    if pixels.dtype == np.uint16 and fmt not in ("PNG", "TIFF"):
        pixels = to_uint8(pixels)
    if fmt == "TIFF" and pixels.dtype == np.uint16 and pixels.shape[2] == 2:
        pixels = pixels[..., [0, 0, 0, 1]]
    if icc_profile and not icc_fits(icc_profile, pixels.shape[2]):
        icc_profile = None
    if pixels.dtype == np.uint16 and pixels.shape[2] > 1:
        return encode_png16(pixels, icc_profile, exif) if fmt == "PNG" else _encode_tiff16(pixels, icc_profile)
    options = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif and fmt != "BMP":
        options["exif"] = exif
    if fmt == "JPEG":
        # 4:4:4 chroma at high quality: the default 4:2:0 halves colour resolution, visible on translated edges.
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        options.update(quality=quality)
    elif fmt == "TIFF":
        options.update(compression="tiff_adobe_deflate")
    buffer = io.BytesIO()
    array_to_pil(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def encode_data(pixels: np.ndarray, suffix: str) -> bytes:
    """The bytes of (H, W, C) results of any channel count and sample type in a file of ``suffix``: ``.npy`` /
    ``.npz`` (one array, channels last, H×W for one channel) or TIFF (tifffile: one page of C samples, minisblack,
    deflate, no metadata), which ``decode_data`` and tifffile read back as they were."""
    a = np.ascontiguousarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    suffix = suffix.lower()
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, a, allow_pickle=False)
    elif suffix == ".npz":
        np.savez_compressed(buffer, image=a)
    elif suffix in _TIFF_SUFFIXES:
        import tifffile  # late: only data outputs need it

        tifffile.imwrite(buffer, a, photometric="minisblack", planarconfig="contig" if a.ndim == 3 else None,
                         compression="zlib", metadata=None)
    else:
        raise ValueError(f"cannot write data of {pixels.shape[2]} channels ({pixels.dtype}) to a {suffix} file: "
                         f".tif or .npy")
    return buffer.getvalue()


def write_image(path: str | Path, pixels: np.ndarray, *, quality: int = 95, icc_profile: bytes | None = None,
                exif: bytes | None = None, data: bool = False) -> None:
    """Write ``pixels`` in the format of ``path``'s suffix (see ``encode_image``), atomically: the path never holds
    half a file. Arrays (.npy, .npz), and TIFFs of ``data`` (a model's results in the data's units) or of more than
    4 channels or other sample types than uint8 / uint16, are written by ``encode_data``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ARRAY_EXTENSIONS or (suffix in _TIFF_SUFFIXES and (
            data or pixels.shape[2] > 4 or pixels.dtype not in (np.uint8, np.uint16))):
        write_bytes(path, encode_data(pixels, suffix))
        return
    fmt = _SUFFIX_FORMAT.get(suffix)
    if fmt is None:
        raise ValueError(f"cannot write {path}: unknown suffix (png, jpg, webp, bmp, tif, npy, npz)")
    if pixels.shape[2] > 4 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write {pixels.shape[2]}-channel {pixels.dtype} results to {path}: .tif or .npy hold "
                         f"them")
    write_bytes(path, encode_image(pixels, fmt, quality=quality, icc_profile=icc_profile, exif=exif))
