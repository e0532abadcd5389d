"""Images of one domain, e.g. to translate at test time: ``root/<split>/`` if it exists, else ``root/`` itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from translate.data.base import ImageDataset


def split_folder(root: Path, split: str) -> Path:
    """``root/<split>`` when there is one, else ``root``: a plain folder of images serves every split."""
    return root / split if (root / split).is_dir() else root


class SingleDataset(ImageDataset):
    layout = "root/<split>/*.jpg or root/*.jpg (one domain, any nesting)"

    def __init__(self, config, split: str, root: Path):
        super().__init__(config, split, root)
        self.paths = self.find(split_folder(self.root, split))

    def __len__(self) -> int:
        return len(self.paths)

    def sides(self):
        return {"A": [(p, None) for p in self.paths]}

    def load(self, index: int, rng: np.random.Generator) -> dict:
        path = self.paths[index]
        a = self.read(path, "A")
        A = self.transform.apply(a, self.transform.sample((a.shape[1], a.shape[0]), rng))
        return {"A": self.to_tensor(A, "A"), "A_path": str(path)}
