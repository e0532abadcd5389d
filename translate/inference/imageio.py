"""Image files and PIL images for inference: what ``translate.data.decode`` does for training (EXIF orientation,
palette, CMYK, bomb guard, the same ``BadImageError``), plus what a converted file must keep: alpha, 16-bit samples,
the ICC profile and EXIF (orientation reset to 1 once applied).

Pixels travel as (H, W, C) numpy arrays, uint8 or uint16, C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from translate.data.decode import (
    _ORIENTATION,
    DEFAULT_MAX_PIXELS,
    BadImageError,
    _describe,
    _header_problem,
    _open,
    _orient,
)

__all__ = ["DEFAULT_MAX_PIXELS", "BadImageError", "ImageFile", "array_to_pil", "icc_fits", "output_suffix",
           "pil_to_array", "read_image", "write_image"]

# --format choice → (PIL format, file suffix). "same" keeps the input's, except GIF (a palette format) → PNG.
FORMATS = {"png": ("PNG", ".png"), "jpg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}
_SAME_SUFFIX = {".gif": ".png"}
_SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Temporary files of ``write_image`` start with this (hidden, so never taken for inputs); a killed run leaves them.
TMP_PREFIX = ".translate-tmp-"


@dataclass
class ImageFile:
    """A decoded file: upright ``pixels`` and the metadata a converted copy keeps."""

    pixels: np.ndarray
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already applied to ``pixels`` and reset to 1 here


def pil_to_array(im: Image.Image) -> np.ndarray:
    """A PIL image of any supported mode → (H, W, C) uint8 or uint16 array, alpha kept, 16-bit kept."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "1":
        im = im.convert("L")
    elif mode.startswith("I") or mode == "F":
        a = np.asarray(im)
        if mode == "F":  # float samples: taken to be in [0, 1], as decode.py does
            a = np.round(np.clip(np.nan_to_num(a.astype(np.float32)), 0, 1) * 65535)
        return np.clip(a, 0, 65535).astype(np.uint16)[..., None]
    elif mode not in ("L", "LA", "RGB", "RGBA"):
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


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageFile:
    """Decode ``path`` upright with alpha, 16-bit samples, ICC profile and EXIF; ``BadImageError`` names the file
    for anything unusable (missing, corrupt, not an image, more than ``max_pixels``)."""
    path = Path(path)
    try:
        with _open(path) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise BadImageError(path, f"{w}×{h} = {w * h:,} pixels is more than max_pixels={max_pixels:,} (a "
                                          f"guard against decompression bombs); raise --max-pixels if you trust it")
            problem = _header_problem(im, None)
            if problem:
                raise BadImageError(path, problem)
            im.load()
            exif = im.getexif()
            orientation = exif.get(_ORIENTATION, 1)
            icc = im.info.get("icc_profile") or None
            if im.format == "PNG" and _png_16bit(path):
                from torchvision.io import ImageReadMode, decode_png, read_file

                pixels = decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED).permute(1, 2, 0).numpy()
            else:
                im, icc = _colour_managed(im, icc)
                pixels = pil_to_array(im)
    except BadImageError:
        raise
    except Exception as e:  # truncated data and malformed files surface as many exception types from PIL
        raise BadImageError(path, _describe(e)) from e
    if orientation != 1:
        exif[_ORIENTATION] = 1
    if icc and not icc_fits(icc, pixels.shape[2]):
        icc = None
    pixels = np.ascontiguousarray(_orient(pixels, orientation) if orientation in range(2, 9) else pixels)
    return ImageFile(pixels, icc, exif.tobytes() if len(exif) else None)


def icc_fits(icc: bytes, channels: int) -> bool:
    """Whether an ICC profile describes images with this many colour channels (its header's colour space field)."""
    space = icc[16:20]
    return (space == b"GRAY" and channels in (1, 2)) or (space == b"RGB " and channels in (3, 4))


def output_suffix(src: Path, fmt: str) -> str:
    """The output file's suffix for ``--format`` ``fmt`` ("same", "png", "jpg", "webp")."""
    if fmt == "same":
        suffix = src.suffix
        return _SAME_SUFFIX.get(suffix.lower(), suffix)
    return FORMATS[fmt][1]


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


def write_image(path: str | Path, pixels: np.ndarray, *, quality: int = 95, icc_profile: bytes | None = None,
                exif: bytes | None = None) -> None:
    """Write ``pixels`` in the format of ``path``'s suffix, atomically: a temp file in the same folder, then
    ``os.replace``, so the path never holds half a file. 16-bit stays 16-bit in PNG (and gray TIFF); JPEG drops
    alpha; a profile that does not fit the output's colour channels is not written."""
    path = Path(path)
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {path}: unknown suffix (png, jpg, webp, bmp, tif)")
    if fmt == "JPEG" and pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1]
    if icc_profile and not icc_fits(icc_profile, pixels.shape[2]):
        icc_profile = None
    if fmt == "PNG" and pixels.dtype == np.uint16 and pixels.shape[2] > 1:
        data = encode_png16(pixels, icc_profile, exif)
    else:
        if pixels.dtype == np.uint16 and not (fmt in ("PNG", "TIFF") and pixels.shape[2] == 1):
            pixels = to_uint8(pixels)
        im = array_to_pil(pixels)
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
            options.update(compression="tiff_lzw")
        buffer = io.BytesIO()
        im.save(buffer, fmt, **options)
        data = buffer.getvalue()
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name[-120:]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
