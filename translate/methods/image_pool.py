"""The image history buffer of Shrivastava et al. (2017), used by CycleGAN: D also sees older fakes."""

from __future__ import annotations

import torch
from torch import Tensor


class ImagePool:
    """Keeps up to ``size`` generated images; ``query`` returns, per image, either it or (with probability 1/2,
    once full) a stored one that it replaces. Randomness comes from the pool's own generator, so a resumed run
    draws the same choices."""

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.images: list[Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand((), generator=self.generator) > 0.5:
                i = int(torch.randint(len(self.images), (), generator=self.generator))
                out.append(self.images[i].to(image.device))  # a resumed pool starts on the CPU
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {"images": [im.cpu() for im in self.images], "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.images = list(state["images"])
        self.generator.set_state(state["generator"])
