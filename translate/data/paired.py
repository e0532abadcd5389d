"""Pairs stored in two folders, matched by relative path without extension: ``root/<split>/A/x.jpg`` ↔ ``B/x.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from translate.data.base import ImageDataset
from translate.data.scan import DatasetError, find_images
from translate.data.transforms import resize

SPLITS = ("train", "val", "test")


def _by_name(folder: Path, layout: str) -> tuple[dict[str, Path], list[str]]:
    """{relative path without extension: path} of the images under ``folder``, and the names found twice."""
    named: dict[str, Path] = {}
    duplicates = []
    for p in find_images(folder, layout):
        key = p.relative_to(folder).with_suffix("").as_posix()
        if key in named:
            duplicates.append(f"{named[key]} and {p}")
        named[key] = p
    return named, duplicates


class PairedDataset(ImageDataset):
    layout = "root/<split>/A/ and root/<split>/B/ (or root/A/ and root/B/) holding files of the same names"

    def __init__(self, config, split: str, root: Path):
        super().__init__(config, split, root)
        base = self.root / split
        # A folder without split level (root/A, root/B) serves every split; a split layout must have the one asked.
        if not base.is_dir() and (self.root / "A").is_dir() and not any((self.root / s).is_dir() for s in SPLITS):
            base = self.root
        a, dup_a = _by_name(base / "A", self.layout)
        b, dup_b = _by_name(base / "B", self.layout)
        problems = [f"same name twice: {d}" for d in dup_a + dup_b]
        problems += [f"no partner in {base / 'B'} for {a[k]}" for k in sorted(a.keys() - b.keys())]
        problems += [f"no partner in {base / 'A'} for {b[k]}" for k in sorted(b.keys() - a.keys())]
        if problems:
            raise DatasetError(f"{len(problems)} problems matching A and B files by name:\n  " + "\n  ".join(problems))
        pairs = [(a[k], b[k]) for k in sorted(a)][: self.max_dataset_size]
        bad = self.check([p for pair in pairs for p in pair])
        self.pairs = [(pa, pb) for pa, pb in pairs if pa not in bad and pb not in bad]
        if not self.pairs:
            raise DatasetError(f"no usable pairs left under {base} after skipping {len(bad)} bad files")
        if self.swap:
            self.pairs = [(pb, pa) for pa, pb in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def sides(self):
        return {"A": [(pa, None) for pa, _ in self.pairs], "B": [(pb, None) for _, pb in self.pairs]}

    def load(self, index: int, rng: np.random.Generator) -> dict:
        path_A, path_B = self.pairs[index]
        a, b = self.read(path_A, "A"), self.read(path_B, "B")
        size = (a.shape[1], a.shape[0])
        # B is brought to A's size first, so that one crop position means the same pixels in both.
        b = resize(b, size)
        params = self.transform.sample(size, rng)
        A, B = self.transform.apply(a, params), self.transform.apply(b, params)
        return {"A": self.to_tensor(A, "A"), "B": self.to_tensor(B, "B"), "A_path": str(path_A), "B_path": str(path_B)}
