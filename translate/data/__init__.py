"""Datasets over image folders, built from the config: ``build_dataset(config, split)``.

Every item is a dict: "A" (the network input, input_nc channels) and, except for single, "B" (output_nc channels),
float32 (C, H, W) tensors in [-1, 1], plus "A_path" / "B_path". ``set_epoch(e)`` reseeds the augmentation: item i of
epoch e draws all its randomness from ``np.random.default_rng((train.seed, e, i))``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from translate.config import ConfigError
from translate.data.aligned import AlignedDataset
from translate.data.base import BadFileDuringTraining, ImageDataset
from translate.data.builtin import BUILTINS, ensure_builtin, holds_other_data
from translate.data.colorization import ColorizationDataset, lab_to_rgb
from translate.data.paired import PairedDataset
from translate.data.scan import DatasetError, DatasetNotFoundError, list_images
from translate.data.single import SingleDataset
from translate.data.transforms import AUGMENTATIONS
from translate.data.unaligned import UnalignedDataset
from translate.imageio import BadImageError, check_image, parse_color, read_image

log = logging.getLogger(__name__)

DATASETS: dict[str, type[ImageDataset]] = {
    "aligned": AlignedDataset,
    "paired": PairedDataset,
    "unaligned": UnalignedDataset,
    "single": SingleDataset,
    "colorization": ColorizationDataset,
}
SPLITS = ("train", "val", "test")

__all__ = [
    "AUGMENTATIONS", "BUILTINS", "DATASETS", "BadFileDuringTraining", "BadImageError", "DatasetError",
    "DatasetNotFoundError", "ImageDataset",
    "build_dataset", "builtin_name", "check_image", "dataset_root", "detect_dataset_mode", "ensure_builtin",
    "lab_to_rgb", "list_images", "parse_color", "read_image",
]


def builtin_name(config) -> str | None:
    """``data.builtin``, or None for "" and "none" (which let a built-in config, e.g. configs/demo_*.yaml, train on
    the folder data.root)."""
    name = config.data.builtin
    return None if name.lower() in ("", "none") else name


def dataset_root(config) -> Path:
    """``data.root``; with ``data.builtin`` the built-in dataset is generated first (into data.root if given, else
    into the cache), unless data.root already holds images of its own: then those are the dataset (with a warning
    that names data.builtin=none, which says so without one)."""
    d = config.data
    name = builtin_name(config)
    root = Path(d.root).expanduser() if d.root else None
    if name is None:
        return root
    if root is not None and holds_other_data(root):
        log.warning("data.root=%s holds images of your own, not the built-in dataset %s: training on them "
                    "(data.builtin=none says so without this warning)", d.root, name)
        return root
    return ensure_builtin(name, root)


def detect_dataset_mode(root: str | Path) -> str | None:
    """The layout of the folder ``root`` when its subfolders tell: ``trainA/``, ``testA/`` ... → "unaligned";
    ``A/`` + ``B/`` (at the top or under a split) → "paired"; None otherwise (aligned and single look alike)."""
    root = Path(root).expanduser()
    if any((root / f"{split}A").is_dir() for split in SPLITS):
        return "unaligned"
    if any((base / "A").is_dir() and (base / "B").is_dir() for base in (root, *(root / s for s in SPLITS))):
        return "paired"
    return None


def _check(config, split: str) -> None:
    d, m = config.data, config.model
    problems = []
    if split not in SPLITS:
        problems.append(f"split={split!r} is not one of {', '.join(SPLITS)}")
    if d.dataset_mode not in DATASETS:
        problems.append(f"data.dataset_mode={d.dataset_mode!r} is not one of {', '.join(DATASETS)}")
    name = builtin_name(config)
    if name and name not in BUILTINS:
        problems.append(f"data.builtin={name!r} is not one of {', '.join(BUILTINS)} (or none)")
    if name is None and not d.root:
        problems.append("data.root is required without a built-in dataset (data.builtin=none)")
    if 2 in (m.input_nc, m.output_nc) and d.dataset_mode != "colorization":
        problems.append("model.input_nc/output_nc=2 (ab channels) only go with data.dataset_mode=colorization")
    unknown = [a for a in d.augment if a not in AUGMENTATIONS]
    if unknown:
        problems.append(f"data.augment: unknown {', '.join(unknown)}; known: {', '.join(AUGMENTATIONS)}")
    try:
        parse_color(d.background)
    except ValueError as e:
        problems.append(f"data.background: {e}")
    if config.train.seed < 0:
        problems.append(f"train.seed={config.train.seed} must be 0 or more (it seeds numpy generators)")
    if d.max_pixels is not None and d.max_pixels < 1:
        problems.append(f"data.max_pixels={d.max_pixels} must be at least 1")
    if problems:
        raise ConfigError("invalid data config:\n  - " + "\n  - ".join(problems))


def build_dataset(config, split: str = "train") -> ImageDataset:
    """The dataset of ``split`` ("train", "val" or "test") for ``config``: files listed and checked, ready to index.

    Raises ConfigError for settings that cannot work, DatasetNotFoundError for a missing folder (e.g. no val split)
    and DatasetError for empty folders, unmatched pairs or bad files (all of them listed at once).
    """
    _check(config, split)
    return DATASETS[config.data.dataset_mode](config, split, dataset_root(config))
