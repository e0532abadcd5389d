"""Aligned pairs stored as one image with A on the left half and B on the right: ``root/<split>/*.jpg``."""

from __future__ import annotations

from pathlib import Path

from translate.data.base import ImageDataset
from translate.data.scan import part_of


class AlignedDataset(ImageDataset):
    layout = "root/<split>/*.jpg, each image A|B side by side (A left, B right), e.g. facades/train/1.jpg"

    def __init__(self, config, split: str, root: Path):
        super().__init__(config, split, root)
        self.paths = self.find(self.root / split)

    def __len__(self) -> int:
        return len(self.paths)

    def parts(self) -> tuple[str, str]:
        """The halves A and B read: split at the middle (an odd width loses its last column)."""
        return ("right", "left") if self.swap else ("left", "right")

    def sides(self):
        part_A, part_B = self.parts()
        return {"A": [(p, part_A) for p in self.paths], "B": [(p, part_B) for p in self.paths]}

    def load(self, index, rng):
        path = self.paths[index]
        ab, info = self.decode(path)  # decoded once, each half conformed to its side's channels
        part_A, part_B = self.parts()
        a = self.conform(path, part_of(ab, part_A), info, "A")
        b = self.conform(path, part_of(ab, part_B), info, "B")
        params = self.transform.sample((a.shape[1], a.shape[0]), rng)
        A, B = self.transform.apply(a, params), self.transform.apply(b, params)
        return {"A": self.to_tensor(A, "A"), "B": self.to_tensor(B, "B"), "A_path": str(path), "B_path": str(path)}
