"""Preprocessing with the reference's semantics (resize/scale_width, crop, flip), split into two steps.

``Transform.sample(size, rng)`` draws the parameters of one image (crop position, flip, extra augmentations) from the
item's own generator; ``Transform.apply(image, params)`` applies them. Paired data samples once and applies the same
parameters to A and B, which keeps their pixels in correspondence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


# Extra augmentations, off by default (data.augment): name → (draw parameters from rng, apply them to uint8 HWC).
def _jitter_params(rng: np.random.Generator) -> dict:
    b, c, s = rng.uniform(0.8, 1.2, size=3)
    return {"brightness": b, "contrast": c, "saturation": s, "hue": rng.uniform(-0.05, 0.05)}


def _jitter(img: np.ndarray, p: dict) -> np.ndarray:
    # uint8 lookup tables and cv2 blends: several times faster than the same arithmetic in float numpy.
    mean = float(img.mean())
    # Brightness then contrast around the (brightened) mean fold into one affine map of the 256 levels.
    alpha = p["brightness"] * p["contrast"]
    lut = np.clip(np.round(np.arange(256) * alpha + p["brightness"] * mean * (1 - p["contrast"])), 0, 255)
    out = cv2.LUT(img, lut.astype(np.uint8)).reshape(img.shape)
    if img.shape[2] == 3:
        gray = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        out = cv2.addWeighted(out, p["saturation"], gray, 1 - p["saturation"], 0)
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV_FULL)  # hue in 0..255, so a shift wraps modulo 256
        hsv[..., 0] = cv2.LUT(hsv[..., 0], ((np.arange(256) + round(p["hue"] * 256)) % 256).astype(np.uint8))
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    return out


def _rotate(img: np.ndarray, p: dict) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), p["angle"], 1.0)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)  # cv2 drops a single channel axis


AUGMENTATIONS: dict[str, tuple[Callable[[np.random.Generator], dict], Callable[[np.ndarray, dict], np.ndarray]]] = {
    "color_jitter": (_jitter_params, _jitter),  # brightness, contrast, saturation ±20 %, hue ±0.05 turn
    "rotate": (lambda rng: {"angle": rng.uniform(-10, 10)}, _rotate),  # ±10°, borders reflected
    "vflip": (lambda rng: {"flip": rng.random() < 0.5}, lambda img, p: img[::-1] if p["flip"] else img),
}


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 (H, W, C) array to ``size`` = (w, h): area averaging to shrink, bicubic to enlarge.

    The reference uses PIL's antialiased bicubic; OpenCV's pair gives the same pictures (0.7 grey levels apart on
    average) 4-7× faster, which is most of the time a loader worker spends on an item.
    """
    if (img.shape[1], img.shape[0]) == size:
        return img
    shrink = size[0] <= img.shape[1] and size[1] <= img.shape[0]
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out.reshape(size[1], size[0], img.shape[2])  # cv2 drops a single channel axis


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) → float32 (C, H, W) in [-1, 1]."""
    x = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)  # numpy: fast whatever torch's thread count
    x /= 127.5
    x -= 1.0
    return torch.from_numpy(x)


@dataclass(frozen=True)
class Transform:
    """The preprocessing of one split. ``train`` draws random crops and flips; otherwise crops are centred, no flip."""

    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    train: bool = True
    flip: bool = True  # horizontal flips with probability 1/2 (training only)
    stride: int = 4  # preprocess="none" rounds both sides to a multiple of this (the generator's stride)
    augment: tuple[str, ...] = ()

    def __post_init__(self):
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"preprocess={self.preprocess!r} is not one of {', '.join(PREPROCESS)}")
        unknown = [a for a in self.augment if a not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation {', '.join(unknown)}; known: {', '.join(AUGMENTATIONS)}")

    def resized(self, size: tuple[int, int]) -> tuple[int, int]:
        """The (w, h) an image of ``size`` = (w, h) is resized to before cropping."""
        w, h = size
        if self.preprocess == "resize_and_crop":
            return self.load_size, self.load_size
        if self.preprocess.startswith("scale_width"):
            # Width to load_size, aspect kept, but never shorter than a crop (the reference's __scale_width).
            return self.load_size, max(int(self.load_size * h / w), self.crop_size)
        if self.preprocess == "none":
            # Round to the nearest multiple the generator accepts (the reference's __make_power_2, base 4).
            return tuple(max(self.stride, round(s / self.stride) * self.stride) for s in size)
        return w, h

    def sample(self, size: tuple[int, int], rng: np.random.Generator) -> dict:
        """Draw the parameters for an image of ``size`` = (w, h); the same dict applies to its partner."""
        w, h = self.resized(size)
        params = {"size": (w, h), "crop": None, "flip": False}
        if self.preprocess.endswith("crop"):
            dx, dy = max(0, w - self.crop_size), max(0, h - self.crop_size)
            if self.train:
                params["crop"] = (int(rng.integers(dx + 1)), int(rng.integers(dy + 1)))
            else:
                params["crop"] = (dx // 2, dy // 2)
        if self.train:
            params["flip"] = self.flip and bool(rng.random() < 0.5)
            for name in self.augment:
                params[name] = AUGMENTATIONS[name][0](rng)
        return params

    def apply(self, img: np.ndarray, params: dict) -> np.ndarray:
        """Resize, crop, flip and augment a uint8 (H, W, C) image as ``params`` says."""
        img = resize(img, params["size"])
        if params["crop"] is not None:
            x, y = params["crop"]
            s = self.crop_size
            img = img[y : y + s, x : x + s]
            if img.shape[:2] != (s, s):  # smaller than a crop: pad with black, as PIL's crop does in the reference
                img = np.pad(img, ((0, s - img.shape[0]), (0, s - img.shape[1]), (0, 0)))
        if params["flip"]:
            img = img[:, ::-1]
        for name in self.augment:
            if name in params:
                img = AUGMENTATIONS[name][1](img, params[name])
        return img
