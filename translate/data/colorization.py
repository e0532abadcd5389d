"""Colorization pairs made from any folder of colour images: A = lightness L, B = the ab channels of CIE Lab.

Scaling as the reference: A = L / 50 - 1 and B = ab / 110, both about [-1, 1]; ``lab_to_rgb`` turns a network's
(L, ab) back into RGB for samples and metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2lab

from translate.config import ConfigError
from translate.data.scan import check_channels
from translate.data.single import SingleDataset


def lab_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(…, 1, H, W) L and (…, 2, H, W) ab, both scaled to [-1, 1] as in the dataset → (…, 3, H, W) RGB in [-1, 1]."""
    import kornia  # late: a heavy import that only sample and metric code needs

    lab = torch.cat([(L.float() + 1.0) * 50.0, ab.float() * 110.0], dim=-3)
    return kornia.color.lab_to_rgb(lab, clip=True) * 2.0 - 1.0


class ColorizationDataset(SingleDataset):  # the same folder scan, other items
    layout = "root/<split>/*.jpg or root/*.jpg (any colour images)"
    normalized = False  # L and ab have their own scaling

    def __init__(self, config, split: str, root: Path):
        m = config.model
        if (m.input_nc, m.output_nc) != (1, 2) or config.data.direction != "AtoB":
            raise ConfigError(
                "data.dataset_mode=colorization translates L to ab: it needs model.input_nc=1, model.output_nc=2 and "
                f"data.direction=AtoB (got {m.input_nc}, {m.output_nc}, {config.data.direction})"
            )
        if config.data.normalize != "auto":
            raise ConfigError(f"data.dataset_mode=colorization scales L and ab itself (as the reference does): "
                              f"data.normalize={config.data.normalize} does not apply; leave it auto")
        super().__init__(config, split, root)
        self.channels = {"A": 3}  # each file is read as RGB and split into L and ab

    def check_sides(self) -> None:
        check_channels(self.infos, self.paths, 3, "channels", "data.dataset_mode=colorization reads RGB images")

    def load(self, index: int, rng: np.random.Generator) -> dict:
        path = self.paths[index]
        rgb = self.read(path, "A")
        rgb = self.transform.apply(rgb, self.transform.sample((rgb.shape[1], rgb.shape[0]), rng))
        # skimage on the uint8 array, like the reference (kornia's rgb_to_lab agrees to 1e-4 but is slower on CPU).
        lab = torch.from_numpy(rgb2lab(np.ascontiguousarray(rgb)).astype(np.float32)).permute(2, 0, 1)
        return {"A": lab[:1] / 50.0 - 1.0, "B": lab[1:] / 110.0, "A_path": str(path), "B_path": str(path)}
