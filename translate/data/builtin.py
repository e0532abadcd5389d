"""Small datasets generated on first use, without any download, for the demo, the docs and the tests.

- ``shapes_paired`` (aligned, 64 px per side; 200 train / 20 val / 20 test): A = black outlines of circles, squares
  and triangles on white, B = the same shapes filled with a colour that depends on the kind of shape, shaded as if lit
  from the top left. Procedural.
- ``shapes_unpaired`` (unaligned, 64 px; 200 trainA / 200 trainB / 20 testA / 20 testB): the same kind of shapes,
  domain A in warm colours on a light background, domain B in cool colours on a dark one. Procedural.
- ``edges2photos`` (aligned, 128 px per side; 210 / 21 / 21): B = crops of real photographs, A = their Canny edges
  (black on white).
- ``photo2stylized`` (unaligned, 128 px; 140 / 140 / 14 / 14): A = photo crops, B = other crops of the same photos
  passed through OpenCV's ``stylization`` (a painterly edge-preserving filter).
- ``photo2stylized_paired`` (aligned, 128 px per side; 140 / 14 / 14): photo2stylized's trainA and testA crops, each
  beside its own stylisation (A photo | B truth), plus 14 more held-out crops for val: pix2pix's training data, and
  the truth any model of photo2stylized is measured against.
- ``photo2stylized_strong``, ``photo2enhanced``, ``photo2sketch`` and their ``_paired`` forms: the same crops through
  a stronger ``stylization`` (sigma_s 60, sigma_r 0.07: flatter colours, heavier outlines), ``detailEnhance``
  (sharper detail, stronger colour: near the input, the other way from ``stylization``'s smoothing) and
  ``pencilSketch`` (a colour pencil drawing on white: far from the input). More tasks with a known truth for
  tools/quality.py, so that settings chosen on one are checked on others.
- ``photo2cartoon``, ``photo2stripes`` and their ``_paired`` forms: two more tasks far from the input, whose output
  changes texture, not only tone: flat posterised colour regions with black outlines (mean-shift segmentation,
  4 levels per channel, Canny edges), and zebra stripes inside the photo's warm-coloured regions with the rest
  unchanged (a change confined to part of the image, as horse -> zebra; only crops whose warm regions cover 15-75 %
  of them, in both domains). ``FAR_TASKS`` names the far ones.
- ``digits`` (single, 28² gray; 5000 train / 500 val / 1000 test): digits 0-9 in turn, white on black as MNIST,
  drawn with Pillow's bundled font at random stroke widths, slightly rotated, sheared, squeezed and shifted.
  Procedural: a stand-in for MNIST (DCGAN's first example), which no installed package ships.
- ``multispectral`` (paired folders ``<split>/A`` and ``<split>/B``, 64 px; 48 train / 8 val / 8 test): A = five
  spectral bands of a photo crop (blue, green, red, red edge, near infrared), each a fixed mix of the photo's RGB
  (``SPECTRAL_MIX``), 12-bit values (0-4095) in uint16 five-page TIFFs; B = a depth-like map of the same crop in a
  16-bit gray PNG (1000-61000: a heavily blurred luminance on a ramp that grows towards the bottom). Data of other
  channel counts and bit depths for the tests and the README: ``model.input_nc=5 model.output_nc=1``
  (``CHANNELS``), with ``data.normalize=fixed data.normalize_range=[0,4095] data.normalize_range_B=[0,65535]`` or
  ``minmax``.

- ``clip`` (not a dataset: a video, ``ensure_clip()``): 48 frames of 128×96 at 12 fps from two of the photos with a
  known camera path: frames 0-23 pan right across astronaut (3 px a frame), frames 24-47 zoom into chelsea (2 % a
  frame), a scene cut between them; H.264 in ``clip.mp4`` with the path in ``camera.json``. For the video tests,
  the README's video example and flicker measurements.

The photographs are the colour images shipped inside scikit-image (``skimage.data``), all public domain or CC0 as
their docstrings state: astronaut (NASA, public domain), chelsea (CC0, Stefan van der Walt), coffee (CC0, Rachel
Michetti), rocket (SpaceX, public domain), hubble_deep_field (NASA, public domain), retina (CC0, Mikael Häggström) and
immunohistochemistry (no known copyright restrictions). ``stereo_motorcycle`` is left out: it states no licence.
Training crops come from the left 60 % of each photo and val/test crops from the right 40 %, so they never overlap.

Generation is deterministic (the same bytes every time on one installation) and atomic (written to a temporary
folder, then renamed), into ``$TRANSLATE_CACHE/builtin/<name>`` (default ``~/.cache/translate/builtin/<name>``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from translate.fileio import atomic_directory

VERSION = "1"  # bump when a generator changes: caches with another version are regenerated
_STAMP = ".builtin"  # hidden, so dataset scans ignore it

_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")


def cache_dir() -> Path:
    """Where generated data goes: ``$TRANSLATE_CACHE`` or ``~/.cache/translate``."""
    return Path(os.environ.get("TRANSLATE_CACHE") or "~/.cache/translate").expanduser()


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # PNG: lossless and without timestamps; level 1 compresses twice as fast as the default for ~10 % more bytes.
    Image.fromarray(img).save(path, format="PNG", compress_level=1)


# ---- shapes -------------------------------------------------------------------------------------------------------

_KINDS = ("circle", "square", "triangle")


def _random_shapes(rng: np.random.Generator, size: int) -> list[tuple]:
    shapes = []
    for _ in range(rng.integers(1, 4)):
        r = rng.uniform(0.12, 0.3) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        shapes.append((_KINDS[rng.integers(3)], cx, cy, r, rng.uniform(0, 2 * np.pi)))
    return shapes


def _mask(shape: tuple, size: int) -> np.ndarray:
    kind, cx, cy, r, angle = shape
    m = np.zeros((size, size), np.uint8)
    if kind == "circle":
        cv2.circle(m, (round(cx), round(cy)), round(r), 255, -1)
    else:
        n = 4 if kind == "square" else 3
        t = angle + np.arange(n) * 2 * np.pi / n
        pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 255)
    return m > 0


def _render(shapes: list[tuple], size: int, colors: dict[str, tuple], background: int) -> tuple[np.ndarray, ...]:
    """(outline image, filled and shaded image) of ``shapes`` drawn in order, later ones in front."""
    outline = np.full((size, size), 255, np.uint8)
    filled = np.full((size, size, 3), background, np.float32)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    for shape in shapes:
        kind, cx, cy, r, _ = shape
        m = _mask(shape, size)
        edge = m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        outline[m] = 255
        outline[edge] = 0
        # Light from the top left: brighter towards it, darker away from it.
        shade = np.clip(0.8 - 0.35 * ((xx - cx) + (yy - cy)) / (r * np.sqrt(2)), 0.35, 1.15)
        filled[m] = np.clip(np.array(colors[kind], np.float32) * shade[m, None], 0, 255)
    return np.repeat(outline[..., None], 3, 2), np.round(filled).astype(np.uint8)


def _shapes_paired(out: Path) -> None:
    colors = {"circle": (215, 50, 45), "square": (45, 95, 215), "triangle": (55, 170, 70)}
    for split, n, seed in (("train", 200, 0), ("val", 20, 1), ("test", 20, 2)):
        rng = np.random.default_rng((11, seed))
        for i in range(n):
            a, b = _render(_random_shapes(rng, 64), 64, colors, background=235)
            _save(out / split / f"{i:04d}.png", np.concatenate([a, b], axis=1))


def _shapes_unpaired(out: Path) -> None:
    schemes = {  # (colours, background): warm on light vs cool on dark
        "A": ({"circle": (225, 60, 40), "square": (240, 150, 30), "triangle": (230, 200, 40)}, 230),
        "B": ({"circle": (40, 90, 220), "square": (40, 190, 200), "triangle": (140, 70, 210)}, 40),
    }
    for split, n, seed in (("train", 200, 0), ("test", 20, 1)):
        for domain, (colors, background) in schemes.items():
            rng = np.random.default_rng((12, seed, ord(domain)))
            for i in range(n):
                _, img = _render(_random_shapes(rng, 64), 64, colors, background)
                _save(out / f"{split}{domain}" / f"{i:04d}.png", img)


# ---- photographs --------------------------------------------------------------------------------------------------


def _photos() -> list[np.ndarray]:
    import skimage.data

    photos = []
    for name in _PHOTOS:
        img = getattr(skimage.data, name)()[..., :3]
        scale = 320 / min(img.shape[:2])  # short side 320: the right 40 % still holds a 128 px crop
        size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
        photos.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    return photos


def _crops(photos: list[np.ndarray], n: int, held_out: bool, rng: np.random.Generator, size: int = 128):
    """``n`` random square crops, cycling through the photos, from their left 60 % (train) or right 40 % (eval)."""
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        x0, x1 = (round(0.6 * w), w) if held_out else (0, round(0.6 * w))
        s = int(rng.integers(size, min(x1 - x0, h) + 1))
        x, y = x0 + int(rng.integers(x1 - x0 - s + 1)), int(rng.integers(h - s + 1))
        yield cv2.resize(photo[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA)


def _edges(photo: np.ndarray) -> np.ndarray:
    gray = cv2.GaussianBlur(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    return np.repeat(255 - cv2.Canny(gray, 60, 150)[..., None], 3, 2)  # black lines on white, as edges2shoes


def _photo_splits(out: Path, image: Callable[[np.ndarray], np.ndarray]) -> None:
    """train/val/test of ``image(crop)`` for the same 210/21/21 photo crops."""
    photos = _photos()
    for split, n, seed in (("train", 210, 0), ("val", 21, 1), ("test", 21, 2)):
        for i, crop in enumerate(_crops(photos, n, split != "train", np.random.default_rng((13, seed)))):
            _save(out / split / f"{i:04d}.png", image(crop))


def _edges2photos(out: Path) -> None:
    _photo_splits(out, lambda crop: np.concatenate([_edges(crop), crop], axis=1))


def _photo_crops(out: Path) -> None:
    # The high-res images of ×4 super-resolution (the recipe makes the low-res inputs by downscaling): edges2photos'
    # photos alone.
    _photo_splits(out, lambda crop: crop)


def _stylize(photo: np.ndarray) -> np.ndarray:
    return cv2.stylization(photo, sigma_s=30, sigma_r=0.45)


def _stylize_strong(photo: np.ndarray) -> np.ndarray:
    return cv2.stylization(photo, sigma_s=60, sigma_r=0.07)  # wider and sharper-edged: flatter, heavier outlines


def _enhance(photo: np.ndarray) -> np.ndarray:
    return cv2.detailEnhance(photo, sigma_s=10, sigma_r=0.15)


def _sketch(photo: np.ndarray) -> np.ndarray:
    return cv2.pencilSketch(photo, sigma_s=60, sigma_r=0.07, shade_factor=0.05)[1]


def _cartoon(photo: np.ndarray) -> np.ndarray:
    """Flat colour regions with black outlines: mean-shift segmentation (regions of similar colour averaged), each
    channel posterised to 4 levels (64 colours), and the segmentation's Canny edges drawn 2 px wide in black."""
    flat = cv2.pyrMeanShiftFiltering(photo, sp=8, sr=40, maxLevel=1)
    out = (np.round(flat / 85.0) * 85).astype(np.uint8)
    edges = cv2.Canny(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), 30, 90)
    out[cv2.dilate(edges, np.ones((2, 2), np.uint8)) > 0] = 0
    return out


def warm_mask(photo: np.ndarray) -> np.ndarray:
    """The saturated warm (red, orange, brown) regions of an RGB photo, uint8 0/1: OpenCV hue >= 170 or <= 22 (of
    180: crimson through red to orange), saturation >= 100, value >= 60, opened and closed with a 5 px disc so that
    it is made of regions, not specks."""
    h, s, v = cv2.split(cv2.cvtColor(photo, cv2.COLOR_RGB2HSV))
    m = (((h <= 22) | (h >= 170)) & (s >= 100) & (v >= 60)).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, disc), cv2.MORPH_CLOSE, disc)


def _stripes(photo: np.ndarray) -> np.ndarray:
    """Zebra stripes inside the warm regions (``warm_mask``), the rest unchanged: a texture change confined to part
    of the image, as horse -> zebra. Black and white bands that follow the region's outline (the distance to its
    edge, every 7 px) bent by its shading (blurred luminance, every 64 grey levels): a function of the photo alone,
    so the truth is known and the same wherever a crop is taken."""
    m = warm_mask(photo)
    distance = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    shading = cv2.GaussianBlur(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 2)
    bands = 127.5 + 110 * np.tanh(3 * np.sin(2 * np.pi * (distance / 7 + shading / 64)))
    inside = cv2.GaussianBlur(m.astype(np.float32), (3, 3), 0)[..., None]  # a 1 px soft edge
    return np.round(photo * (1 - inside) + bands[..., None] * inside).clip(0, 255).astype(np.uint8)


# photo2<name> and photo2<name>_paired for each: the same crops through another of OpenCV's photo filters, so that a
# setting chosen on one task can be checked on others with a known truth.
PHOTO_FILTERS = {"stylized": _stylize, "stylized_strong": _stylize_strong, "enhanced": _enhance, "sketch": _sketch,
                 "cartoon": _cartoon, "stripes": _stripes}
# Which of them keep the input's layout, detail and colours (near: the output is the input a little changed) and which
# change its texture (far: a drawing, flat posterised colours, stripes): the two kinds tools/quality.py reports.
FAR_TASKS = ("sketch", "cartoon", "stripes")
# Crops a task keeps (the others are skipped): stripes takes only crops whose warm regions cover 15-75 % of them, so
# that every image, in both domains, has a part to change and a part to keep (as every horse2zebra image has a horse).
_KEEP = {"stripes": lambda crop: 0.15 <= warm_mask(crop).mean() <= 0.75}


def _kept_crops(photos: list[np.ndarray], n: int, held_out: bool, rng: np.random.Generator,
                keep: Callable[[np.ndarray], bool] | None = None):
    """``n`` crops as ``_crops`` draws them, those that ``keep`` rejects skipped (none without it: the same crops)."""
    crops = _crops(photos, n if keep is None else 50 * n, held_out, rng)
    kept = list(itertools.islice(crops if keep is None else filter(keep, crops), n))
    if len(kept) < n:
        raise RuntimeError(f"only {len(kept)} of {50 * n} crops were kept, {n} needed")
    return kept


def _photo2filtered(out: Path, filtered: Callable[[np.ndarray], np.ndarray],
                    keep: Callable[[np.ndarray], bool] | None = None) -> None:
    photos = _photos()
    for split, n, seed in (("train", 140, 0), ("test", 14, 1)):  # fewer than edges2photos: stylization is slow
        for domain in "AB":
            # Different streams for A and B: the two domains show different crops, as unpaired data should.
            rng = np.random.default_rng((14, seed, ord(domain)))
            for i, crop in enumerate(_kept_crops(photos, n, split != "train", rng, keep)):
                _save(out / f"{split}{domain}" / f"{i:04d}.png", filtered(crop) if domain == "B" else crop)


def _photo2filtered_paired(out: Path, filtered: Callable[[np.ndarray], np.ndarray],
                           keep: Callable[[np.ndarray], bool] | None = None) -> None:
    # train and test hold exactly the unpaired form's trainA and testA crops (same streams), each beside its filtered
    # truth: the known answer a model trained on the unpaired form is measured against; val is extra held-out crops.
    photos = _photos()
    for split, n, seed in (("train", 140, 0), ("val", 14, 2), ("test", 14, 1)):
        rng = np.random.default_rng((14, seed, ord("A")))
        for i, crop in enumerate(_kept_crops(photos, n, split != "train", rng, keep)):
            _save(out / split / f"{i:04d}.png", np.concatenate([crop, filtered(crop)], axis=1))


_PHOTO_FORMS = {"": (_photo2filtered, "unaligned"), "_paired": (_photo2filtered_paired, "aligned")}


# ---- multispectral: other channel counts and bit depths --------------------------------------------------------

# Each band's response to the photo's R, G, B (rows: blue, green, red, red edge, near infrared): a fixed mix, so the
# bands are a function of the photo and the task has a known truth.
SPECTRAL_MIX = np.array([[0.05, 0.15, 0.80], [0.10, 0.80, 0.10], [0.85, 0.10, 0.05], [0.55, 0.40, 0.05],
                         [0.30, 0.65, 0.05]])


def _bands(crop: np.ndarray) -> np.ndarray:
    """(5, H, W) uint16 12-bit bands of an RGB uint8 crop; near infrared brightens where green dominates red (as
    vegetation reflects it), which no band mixes linearly."""
    rgb = crop.astype(np.float64) / 255
    bands = np.einsum("kc,hwc->khw", SPECTRAL_MIX, rgb)
    bands[4] += 0.3 * np.clip(rgb[..., 1] - rgb[..., 0], 0, None)
    return np.round(np.clip(bands, 0, 1) * 4095).astype(np.uint16)


def _depth(crop: np.ndarray) -> np.ndarray:
    """A depth-like (H, W) uint16 map: heavily blurred luminance on a ramp towards the bottom, 1000-61000."""
    h = crop.shape[0]
    luma = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255, (0, 0), 6)
    ramp = np.linspace(0, 1, h)[:, None]
    return np.round(1000 + 60000 * (0.6 * luma + 0.4 * ramp)).astype(np.uint16)


def _multispectral(out: Path) -> None:
    import tifffile

    photos = _photos()
    for split, n, seed in (("train", 48, 0), ("val", 8, 1), ("test", 8, 2)):
        for i, crop in enumerate(_crops(photos, n, split != "train", np.random.default_rng((16, seed)), size=64)):
            (out / split / "A").mkdir(parents=True, exist_ok=True)
            (out / split / "B").mkdir(parents=True, exist_ok=True)
            # Five pages, deflate-compressed (tifffile and libtiff decode it without extra codecs), no timestamp.
            tifffile.imwrite(out / split / "A" / f"{i:04d}.tif", _bands(crop), photometric="minisblack",
                             compression="zlib", metadata=None)
            Image.fromarray(_depth(crop)).save(out / split / "B" / f"{i:04d}.png", format="PNG", compress_level=1)


# ---- digits -------------------------------------------------------------------------------------------------------


def _digit(d: int, rng: np.random.Generator, font) -> np.ndarray:
    """One 28² gray digit, white on black as MNIST: drawn at 112² with a random stroke width, then a random small
    rotation, shear, squeeze and shift, and an area downscale (which anti-aliases it)."""
    big = 112
    im = Image.new("L", (big, big), 0)
    ImageDraw.Draw(im).text((big / 2, big / 2), str(d), fill=255, font=font, anchor="mm",
                            stroke_width=int(rng.integers(0, 4)), stroke_fill=255)
    angle, shear = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(-0.3, 0.3)
    sy = rng.uniform(0.85, 1.1)
    sx = sy * rng.uniform(0.8, 1.1)
    m = np.array([[sx * np.cos(angle), shear - sy * np.sin(angle), 0],
                  [sx * np.sin(angle), sy * np.cos(angle), 0]], np.float32)
    centre = np.full(2, big / 2, np.float32)
    m[:, 2] = centre - m[:, :2] @ centre + rng.uniform(-4, 4, 2)
    warped = cv2.warpAffine(np.asarray(im, np.float32), m, (big, big), flags=cv2.INTER_LINEAR)
    return np.clip(cv2.resize(warped, (28, 28), interpolation=cv2.INTER_AREA), 0, 255).round().astype(np.uint8)


def _digits(out: Path) -> None:
    # Pillow's own font (Aileron, bundled with every FreeType-enabled Pillow), so the data does not depend on the
    # system's fonts.
    font = ImageFont.load_default(80)
    for split, n, seed in (("train", 5000, 0), ("val", 500, 1), ("test", 1000, 2)):
        rng = np.random.default_rng((15, seed))
        for i in range(n):
            _save(out / split / f"{i:05d}.png", _digit(i % 10, rng, font))


BUILTINS: dict[str, Callable[[Path], None]] = {
    "shapes_paired": _shapes_paired,
    "shapes_unpaired": _shapes_unpaired,
    "edges2photos": _edges2photos,
    "photos": _photo_crops,
    **{f"photo2{name}{form}": partial(make, filtered=f, keep=_KEEP.get(name)) for name, f in PHOTO_FILTERS.items()
       for form, (make, _) in _PHOTO_FORMS.items()},
    "digits": _digits,
    "multispectral": _multispectral,
}
# The dataset_mode each one is laid out for.
MODES = {"shapes_paired": "aligned", "shapes_unpaired": "unaligned", "edges2photos": "aligned",
         "photos": "single",
         **{f"photo2{name}{form}": mode for name in PHOTO_FILTERS for form, (_, mode) in _PHOTO_FORMS.items()},
         "digits": "single", "multispectral": "paired"}
# (model.input_nc, model.output_nc) of the built-ins that are not RGB on both sides.
CHANNELS = {"multispectral": (5, 1)}


# ---- a video clip ---------------------------------------------------------------------------------------------------

CLIP_SIZE, CLIP_FRAMES, CLIP_FPS, CLIP_CUT = (128, 96), 48, 12, 24


def clip_frames(size: tuple[int, int] = CLIP_SIZE, frames: int = CLIP_FRAMES, cut: int = CLIP_CUT,
                photos: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], list[dict]]:
    """The built-in clip's frames ((H, W, 3) uint8, ``size`` = (W, H)) and each frame's camera: which photo, the
    top-left corner (x, y) of the window in the photo's pixels and its width. Frames before ``cut`` pan right across
    astronaut by 3 % of the window's width a frame; from ``cut`` on, the window shrinks by 2 % a frame around the
    centre of chelsea (a zoom in)."""
    photos = photos or _photos()
    w, h = size
    out, path = [], []
    for t in range(frames):
        if t < cut:
            photo, name = photos[0], _PHOTOS[0]
            width = photo.shape[0] * 0.75 * w / h
            x, y = 20 + t * 0.03 * width, 20.0
        else:
            photo, name = photos[1], _PHOTOS[1]
            width = photo.shape[0] * w / h * 0.98 ** (t - cut)
            x = (photo.shape[1] - width) / 2
            y = (photo.shape[0] - width * h / w) / 2
        s = w / width  # photo pixels → frame pixels
        m = np.array([[s, 0, -x * s], [0, s, -y * s]], np.float32)
        out.append(cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT))
        path.append({"frame": t, "photo": name, "x": round(float(x), 3), "y": round(float(y), 3),
                     "width": round(float(width), 3)})
    return out, path


def _clip(out: Path) -> None:
    import json

    import av

    frames, path = clip_frames()
    with av.open(str(out / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = *CLIP_SIZE, "yuv420p"
        stream.options = {"crf": "12", "preset": "medium", "threads": "1"}  # one thread: the same bytes every time
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    (out / "camera.json").write_text(json.dumps({"fps": CLIP_FPS, "size": list(CLIP_SIZE), "cut_before": CLIP_CUT,
                                                 "frames": path}, indent=1) + "\n")


def ensure_clip(root: str | Path | None = None) -> Path:
    """The built-in clip's video file (``clip.mp4``), generated into ``root`` (default
    ``cache_dir()/builtin/clip``) on first use."""
    target = Path(root).expanduser() if root else cache_dir() / "builtin" / "clip"
    stamp = f"clip {VERSION}\n"
    if not ((target / _STAMP).is_file() and (target / _STAMP).read_text() == stamp):
        if holds_other_data(target):
            raise FileExistsError(f"{target} is not empty and holds no built-in clip")
        try:
            with atomic_directory(target) as tmp:
                _clip(tmp)
                (tmp / _STAMP).write_text(stamp)
        except OSError:
            if not ((target / _STAMP).is_file() and (target / _STAMP).read_text() == stamp):
                raise
    return target / "clip.mp4"


def ensure_builtin(name: str, root: str | Path | None = None) -> Path:
    """Generate the built-in dataset ``name`` into ``root`` (default ``cache_dir()/builtin/<name>``) unless it is
    already there, and return that folder."""
    if name not in BUILTINS:
        raise ValueError(f"unknown built-in dataset {name!r}; known: {', '.join(BUILTINS)}")
    target = Path(root).expanduser() if root else cache_dir() / "builtin" / name
    stamp = f"{name} {VERSION}\n"
    if (target / _STAMP).is_file() and (target / _STAMP).read_text() == stamp:
        return target
    if holds_other_data(target):  # never delete a folder we did not make
        raise FileExistsError(f"{target} is not empty and holds no built-in dataset: give data.root an empty folder "
                              f"to generate {name} there, or set data.builtin=none to use the images it holds")
    try:
        # An older version or an empty folder is replaced.
        with atomic_directory(target) as tmp:
            BUILTINS[name](tmp)
            (tmp / _STAMP).write_text(stamp)
    except OSError:
        # Another process (e.g. another rank) finished first: use its copy if it is complete.
        if not ((target / _STAMP).is_file() and (target / _STAMP).read_text() == stamp):
            raise
    return target


def holds_other_data(folder: Path) -> bool:
    """Whether ``folder`` holds files but no built-in dataset (a user's own images, say)."""
    return folder.is_dir() and not (folder / _STAMP).is_file() and any(folder.iterdir())
