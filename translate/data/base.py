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

from translate.data.scan import DatasetError, check_files, find_images
from translate.data.transforms import Transform
from translate.imageio import BadImageError, parse_color, read_image
from translate.networks import GENERATORS

log = logging.getLogger(__name__)


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
    """Base class: subclasses set ``self.layout`` (for messages), list their files and implement ``load``."""

    layout = ""

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
        self.mode_A = "L" if config.model.input_nc == 1 else "RGB"
        self.mode_B = "L" if config.model.output_nc == 1 else "RGB"
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
        """The bad files among ``paths`` (skip), or a DatasetError listing them all (error); see ``check_files``."""
        return check_files(paths, max_pixels=self.max_pixels, on_bad_file=self.on_bad_file, verify=self.verify,
                           num_workers=self.num_workers, progress=self.progress)

    def read(self, path: Path, mode: str | None = "RGB") -> np.ndarray:
        return read_image(path, mode=mode, background=self.background, max_pixels=self.max_pixels)

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
