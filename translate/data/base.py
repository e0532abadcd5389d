"""What every dataset layout shares: per-item seeded randomness, decoding with the config's rules, bad-file handling.

All randomness of item ``i`` in epoch ``e`` comes from ``np.random.default_rng((seed, e, i))``, never from a global
generator: Accelerate's loader prefetches a batch ahead, so global-RNG augmentation would break bit-exact resume.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from translate.config import ConfigError
from translate.data.scan import DatasetError, check_channels, find_images, part_of, scan_files
from translate.data.transforms import COLOR_AUGMENTATIONS, Transform, to_tensor
from translate.imageio import BadImageError, DataInfo, conform, decode_data, parse_color
from translate.networks import GENERATORS
from translate.normalization import Normalization

log = logging.getLogger(__name__)


def evenly_spaced(n: int, count: int) -> list[int]:
    """Up to ``count`` indices of ``range(n)``, evenly spaced, the first and (from two on) the last among them: the
    items a measurement or a picture reads from a dataset or a run too long to read whole."""
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int)).tolist()


class BadFileDuringTraining(BadImageError):
    """A file that passed the dataset scan but failed to decode when loaded (changed on disk since?), raised with
    data.on_bad_file=error; ``str()`` is one line naming the file, for the trainer to stop with.

    A DataLoader worker's exception reaches the main process as ``type(e)(its whole formatted traceback)``, and pickle
    rebuilds one from its message too; both one-argument forms recover the path, the reason and the one-line message.
    """

    hint = "changed since the dataset scan? data.on_bad_file=skip leaves such files out"

    def __init__(self, path: str | Path, reason: str | None = None):
        if reason is None:
            # The exception's own line is the last of a traceback: "<module>.BadFileDuringTraining: <message>".
            line = (str(path).strip().splitlines() or [""])[-1]
            message = line.partition(f"{type(self).__qualname__}: ")[2] or line
            path, _, reason = message.removesuffix(f" ({self.hint})").partition(": ")
        reason = " ".join(reason.split())  # one line, whatever the decoder said
        super().__init__(path, f"{reason} ({self.hint})")
        self.reason = reason


def make_transform(config, split: str) -> Transform:
    d = config.data
    netG = GENERATORS.get(config.model.netG)
    return Transform(
        preprocess=d.preprocess,
        load_size=d.load_size,
        crop_size=d.crop_size,
        train=split == "train",
        flip=not d.no_flip,
        stride=netG.stride if netG else 4,
        augment=tuple(d.augment),
    )


class ImageDataset(Dataset):
    """Base class: subclasses set ``self.layout`` (for messages), list their files and implement ``load`` and
    ``sides``. ``build_dataset`` then checks each side's channels against the data (``check_sides``) and sets its
    normalisation (``normalization``: data units → [-1, 1] per side; ``auto`` until then)."""

    layout = ""
    normalized = True  # its images go through data.normalize (colorization scales its Lab channels itself)

    def __init__(self, config, split: str, root: Path):
        d = config.data
        self.root, self.split = Path(root), split
        self.seed = config.train.seed
        # In shared memory, so that persistent DataLoader workers (which keep their own copy of the dataset) see
        # set_epoch() calls made in the main process; a plain int would freeze them at the epoch they started in.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.transform = make_transform(config, split)
        self.background = parse_color(d.background)
        self.max_pixels, self.on_bad_file, self.max_dataset_size = d.max_pixels, d.on_bad_file, d.max_dataset_size
        self.verify, self.num_workers, self.progress = d.verify, d.num_workers, config.train.progress
        # The network input is always "A" (direction already applied), so it has input_nc channels, "B" output_nc.
        self.channels = {"A": config.model.input_nc, "B": config.model.output_nc}
        self.array_layout = d.array_layout
        self.augment = tuple(d.augment)
        self.normalization = {"A": Normalization(), "B": Normalization()}
        self.infos: dict[Path, DataInfo] = {}  # what each scanned file holds (channels, sample type)
        self.swap = d.direction == "BtoA"
        self.failed: dict[str, str] = {}  # files that failed to decode when loaded (skip mode; this process only)

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def find(self, folder: Path) -> list[Path]:
        """The images under ``folder``, max_dataset_size applied, bad ones dropped (skip) or reported (error)."""
        paths = find_images(folder, self.layout, self.max_dataset_size)
        bad = self.check(paths)
        paths = [p for p in paths if p not in bad]
        if not paths:
            raise DatasetError(f"no usable images left under {folder} after skipping {len(bad)} bad files")
        return paths

    def check(self, paths: list[Path]) -> set[Path]:
        """The bad files among ``paths`` (skip), or a DatasetError listing them all (error); see ``check_files``.
        What the good ones hold is kept in ``self.infos``."""
        bad, infos = scan_files(paths, max_pixels=self.max_pixels, on_bad_file=self.on_bad_file, verify=self.verify,
                                num_workers=self.num_workers, progress=self.progress, array_layout=self.array_layout)
        self.infos.update(infos)
        return bad

    def sides(self) -> dict[str, list[tuple[Path, str | None]]]:
        """The files of each side ("A", "B"), each with the part of it that side reads (an aligned file's "left" or
        "right" half, or None for the whole file)."""
        raise NotImplementedError

    def side_key(self, side: str) -> str:
        """The setting that gives ``side``'s channel count, for messages."""
        return "model.input_nc" if side == "A" else "model.output_nc"

    def check_sides(self) -> None:
        """One line naming a file whose channel count a side cannot use (``scan.check_channels``), and a ConfigError
        for a colour augmentation of data that is not 8-bit gray or RGB images."""
        for side, parts in self.sides().items():
            paths = [p for p, _ in parts]
            check_channels(self.infos, paths, self.channels[side], self.side_key(side))
            for name in set(self.augment) & set(COLOR_AUGMENTATIONS):
                nc = self.channels[side]
                odd = next((p for p in paths if p in self.infos and not (
                    self.infos[p].dtype == "uint8" and self.infos[p].kind in ("gray", "rgb"))), None)
                if nc not in (1, 3) or odd is not None:
                    what = (f"{self.side_key(side)}={nc}" if nc not in (1, 3) else
                            f"{odd} holds {self.infos[odd].channels}-channel {self.infos[odd].dtype} "
                            f"{self.infos[odd].kind}")
                    raise ConfigError(f"data.augment={name} changes the colours of 8-bit gray or RGB images, but "
                                      f"{what}: leave {name} out of data.augment (the geometric ones work on any data)")

    def decode(self, path: Path) -> tuple[np.ndarray, DataInfo]:
        return decode_data(path, max_pixels=self.max_pixels, array_layout=self.array_layout)

    def conform(self, path: Path, pixels: np.ndarray, info: DataInfo, side: str) -> np.ndarray:
        """``pixels`` (decoded from ``path``) as ``side`` reads them: its channel count, alpha composited or kept."""
        try:
            return conform(pixels, info, self.channels[side], self.background)
        except ValueError as e:  # changed since the scan
            raise BadImageError(path, f"{e} ({self.side_key(side)}={self.channels[side]})") from e

    def read(self, path: Path, side: str, part: str | None = None) -> np.ndarray:
        """The (H, W, C) array ``side`` reads from ``path`` (or from its ``part``), in the data's own type."""
        pixels, info = self.decode(path)
        return self.conform(path, part_of(pixels, part), info, side)

    def to_tensor(self, image: np.ndarray, side: str):
        """A transformed image of ``side`` → a float32 (C, H, W) tensor in [-1, 1], by the side's normalisation."""
        return to_tensor(image, self.normalization[side])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        for k in range(len(self)):
            # A file that passed the scan can still fail to decode: it changed on disk since, or data.verify=header
            # missed truncated data. With skip, the next item stands in for it; that choice depends only on the
            # index, so resumed runs see the same substitute.
            j = (index + k) % len(self)
            try:
                return self.load(j, self.rng(j))
            except BadImageError as e:
                if self.on_bad_file == "error":
                    raise BadFileDuringTraining(e.path, e.reason) from e
                if e.path not in self.failed:
                    self.failed[e.path] = e.reason
                    log.warning("skipping %s (%d unreadable files so far in this process)", e, len(self.failed))
        raise DatasetError(f"no file of the dataset under {self.root} could be decoded")
