"""Preprocessing with the reference's semantics (resize/scale_width, crop, flip), split into two steps.

``Transform.sample(size, rng)`` draws the parameters of one image (crop position, flip, a seed for each extra
augmentation, which are albumentations transforms) from the item's own generator; ``Transform.apply(image, params)``
applies them. Paired data samples once and applies the same parameters to A and B, which keeps their pixels in
correspondence. Images of any channel count and sample type (uint8, uint16, float...) go through in their own type;
``to_tensor`` normalises them last (``translate.normalization``), so nothing is rounded to 8 bits on the way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


def _color_jitter() -> A.BasicTransform:  # brightness, contrast, saturation ±20 %, hue ±0.05 turn: 8-bit gray/RGB
    return A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=1.0)


def _rotate() -> A.BasicTransform:  # ±10°, borders reflected
    return A.Rotate(limit=10, border_mode=cv2.BORDER_REFLECT_101, p=1.0)


def _affine() -> A.BasicTransform:  # scale ±10 %, shift ±5 %, rotate ±10°, borders reflected
    return A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                    border_mode=cv2.BORDER_REFLECT_101, p=1.0)


def _vflip() -> A.BasicTransform:  # upside down with probability 1/2
    return A.VerticalFlip(p=0.5)


# Extra augmentations, off by default (data.augment): name → a factory of the albumentations transform. Each image
# gets a fresh transform seeded from its own generator (see Transform.sample), so the same seed gives the same
# pixels on A and on B (pairs stay aligned) and after a resume. The geometric ones move every channel alike, whatever
# their count and type; colour_jitter only knows 8-bit gray and RGB images (COLOR_AUGMENTATIONS: refused otherwise).
AUGMENTATIONS: dict[str, Callable[[], A.BasicTransform]] = {
    "color_jitter": _color_jitter,
    "rotate": _rotate,
    "affine": _affine,
    "vflip": _vflip,
}
COLOR_AUGMENTATIONS = ("color_jitter",)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) array (uint8, uint16, int16, float32 or float64, any C) to ``size`` = (w, h): area
    averaging to shrink, bicubic to enlarge, in the array's own type.

    The reference uses PIL's antialiased bicubic; OpenCV's pair gives the same pictures (0.7 grey levels apart on
    average) 4-7× faster, which is most of the time a loader worker spends on an item.
    """
    if (img.shape[1], img.shape[0]) == size:
        return img
    shrink = size[0] <= img.shape[1] and size[1] <= img.shape[0]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    if img.shape[2] > 4:  # OpenCV's area resize takes at most 4 channels: 4 at a time (each channel on its own)
        return np.concatenate([resize(img[..., i : i + 4], size) for i in range(0, img.shape[2], 4)], axis=2)
    out = cv2.resize(img, size, interpolation=interpolation)
    return out.reshape(size[1], size[0], img.shape[2])  # cv2 drops a single channel axis


def to_tensor(img: np.ndarray, normalization=None) -> torch.Tensor:
    """(H, W, C) in data units → float32 (C, H, W) in [-1, 1] by ``normalization`` (a translate.normalization
    ``Normalization``; None: ``auto``, x / 127.5 - 1 for uint8 as always)."""
    if normalization is None:
        from translate.normalization import Normalization

        normalization = Normalization()
    x = normalization.apply(img)  # numpy: fast whatever torch's thread count
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


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
                params[name] = int(rng.integers(2**32))  # the seed of this image's albumentations transform
        return params

    def apply(self, img: np.ndarray, params: dict) -> np.ndarray:
        """Resize, crop, flip and augment an (H, W, C) image as ``params`` says (every channel alike, its type kept)."""
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
                augment = AUGMENTATIONS[name]()
                augment.set_random_seed(params[name])
                img = augment(image=np.ascontiguousarray(img))["image"]
        return img
