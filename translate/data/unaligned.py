"""Unpaired domains in two folders, ``root/trainA/`` and ``root/trainB/`` (``testA/``, ``testB/`` for the test split).

An epoch has max(|A|, |B|) items: A walks through its folder in order, B is drawn at random from the item's generator
(or walks in order with data.serial_batches, and always outside training, so that evaluation is repeatable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from translate.data.base import ImageDataset


class UnalignedDataset(ImageDataset):
    layout = "root/<split>A/ and root/<split>B/ with unpaired images of each domain, e.g. horse2zebra/trainA/"

    def __init__(self, config, split: str, root: Path):
        super().__init__(config, split, root)
        self.random_B = split == "train" and not config.data.serial_batches
        # With BtoA the folder ...B plays the role of A: "A" is always the side the network translates from.
        name_A, name_B = (f"{split}B", f"{split}A") if self.swap else (f"{split}A", f"{split}B")
        self.paths_A = self.find(self.root / name_A)
        self.paths_B = self.find(self.root / name_B)

    def __len__(self) -> int:
        return max(len(self.paths_A), len(self.paths_B))

    def sides(self):
        return {"A": [(p, None) for p in self.paths_A], "B": [(p, None) for p in self.paths_B]}

    def load(self, index: int, rng: np.random.Generator) -> dict:
        path_A = self.paths_A[index % len(self.paths_A)]
        path_B = self.paths_B[int(rng.integers(len(self.paths_B))) if self.random_B else index % len(self.paths_B)]
        a, b = self.read(path_A, "A"), self.read(path_B, "B")
        # Independent crops and flips: the two images show different scenes.
        A = self.transform.apply(a, self.transform.sample((a.shape[1], a.shape[0]), rng))
        B = self.transform.apply(b, self.transform.sample((b.shape[1], b.shape[0]), rng))
        return {"A": self.to_tensor(A, "A"), "B": self.to_tensor(B, "B"), "A_path": str(path_A), "B_path": str(path_B)}
