"""Aligned pairs stored as one image with A on the left half and B on the right: ``root/<split>/*.jpg``."""

from __future__ import annotations

from pathlib import Path

from translate.data.base import ImageDataset
from translate.data.transforms import to_tensor
from translate.imageio import to_mode


class AlignedDataset(ImageDataset):
    layout = "root/<split>/*.jpg, each image A|B side by side (A left, B right), e.g. facades/train/1.jpg"

    def __init__(self, config, split: str, root: Path):
        super().__init__(config, split, root)
        self.paths = self.find(self.root / split)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index, rng):
        path = self.paths[index]
        ab = self.read(path)
        # Split at the middle; an odd width loses its last column so that both halves have the same size.
        w2 = ab.shape[1] // 2
        a, b = ab[:, :w2], ab[:, w2 : 2 * w2]
        if self.swap:
            a, b = b, a
        params = self.transform.sample((w2, ab.shape[0]), rng)
        A = self.transform.apply(to_mode(a, self.mode_A), params)
        B = self.transform.apply(to_mode(b, self.mode_B), params)
        return {"A": to_tensor(A), "B": to_tensor(B), "A_path": str(path), "B_path": str(path)}
