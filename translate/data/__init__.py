"""Datasets over image folders, built from the config: ``build_dataset(config, split)``.

Every item is a dict: "A" (the network input, input_nc channels) and, except for single, "B" (output_nc channels),
float32 (C, H, W) tensors in [-1, 1] (each side normalised by data.normalize: ``dataset.normalization``), plus
"A_path" / "B_path". ``set_epoch(e)`` reseeds the augmentation: item i of epoch e draws all its randomness from
``np.random.default_rng((train.seed, e, i))``.

Building a dataset scans its files, checks each side's channel count against them and fits each side's normalisation
from the training split's statistics, which it writes into ``config.data.normalize_stats`` ({"A": ..., "B": ...},
plain dicts of ``translate.normalization``): the run's config.yaml keeps them, and so can an exported model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from translate.config import ConfigError
from translate.data.aligned import AlignedDataset
from translate.data.base import BadFileDuringTraining, ImageDataset, evenly_spaced
from translate.data.builtin import BUILTINS, ensure_builtin, holds_other_data
from translate.data.colorization import ColorizationDataset, lab_to_rgb
from translate.data.paired import PairedDataset
from translate.data.scan import DatasetError, DatasetNotFoundError, fit_normalization, list_images
from translate.data.single import SingleDataset
from translate.data.transforms import AUGMENTATIONS
from translate.data.unaligned import UnalignedDataset
from translate.imageio import BadImageError, check_image, parse_color, read_image
from translate.normalization import Normalization

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
    "evenly_spaced",
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
    d = config.data
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
    dataset = DATASETS[config.data.dataset_mode](config, split, dataset_root(config))
    dataset.check_sides()
    if dataset.normalized:
        fit_sides(config, dataset, split)
    return dataset


def _wanted(config, side: str) -> dict:
    """What a side's normalisation must have been fitted with: the method and its setting."""
    d = config.data
    wanted = {"method": d.normalize}
    if d.normalize == "percentile":
        wanted["percentiles"] = [float(p) for p in d.normalize_percentiles]
    elif d.normalize == "fixed":
        low, high = d.normalize_range_B if side == "B" and d.normalize_range_B else d.normalize_range
        wanted.update(low=float(low), high=float(high))
    return wanted


def _fits(entry, wanted: dict, channels: int) -> bool:
    """Whether a normalisation given in data.normalize_stats is one the config asks for (else it is fitted again)."""
    if not isinstance(entry, dict) or entry.get("method") != wanted["method"] or entry.get("channels") != channels:
        return False
    if "percentiles" in wanted:
        return entry.get("percentiles") == wanted["percentiles"]
    if "low" in wanted:
        return set(entry.get("low") or []) == {wanted["low"]} and set(entry.get("high") or []) == {wanted["high"]}
    return True


def fit_sides(config, dataset: ImageDataset, split: str) -> None:
    """Set ``dataset.normalization`` for each side: the normalisations in data.normalize_stats where they are the
    ones asked for (a run's config.yaml, a model's), else fitted from the training split's files (cached with the
    scan) and written into data.normalize_stats. Another split without them measures the train split; without one,
    its own files (with a warning)."""
    d = config.data
    stats = dict(d.normalize_stats or {})
    sides = dataset.sides()
    missing = [s for s in sides if not _fits(stats.get(s), _wanted(config, s), dataset.channels[s])]
    if missing:
        source = dataset
        if split != "train":
            try:
                source = DATASETS[d.dataset_mode](config, "train", dataset_root(config))
                source.check_sides()
            except DatasetNotFoundError:
                log.warning("no train split under %s: data.normalize=%s measures the %s split instead", dataset.root,
                            d.normalize, split)
        source_sides = source.sides()
        for side in missing:
            range_ = _wanted(config, side)
            stats[side] = fit_normalization(
                source_sides[side], source.channels[side], source.infos, method=d.normalize,
                percentiles=tuple(d.normalize_percentiles),
                value_range=(range_["low"], range_["high"]) if d.normalize == "fixed" else None,
                background=dataset.background, max_pixels=d.max_pixels, array_layout=d.array_layout,
                num_workers=d.num_workers, progress=config.train.progress)
        d.normalize_stats = stats
    for side in sides:
        dataset.normalization[side] = Normalization.from_dict(stats[side])
