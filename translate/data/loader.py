"""The training DataLoader: seeded shuffling (exact resume) over a dataset of this package."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def build_loader(dataset: Dataset, config, device_type: str) -> DataLoader:
    d = config.data
    return DataLoader(
        dataset, batch_size=d.batch_size, shuffle=not d.serial_batches, num_workers=d.num_workers,
        pin_memory=device_type == "cuda", persistent_workers=d.num_workers > 0,
        generator=torch.Generator().manual_seed(config.train.seed),
    )
