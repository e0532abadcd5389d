"""``Sampler``: an exported noise → image model (DCGAN) in, images out; the same seed gives the same images.

    sampler = Sampler.from_pretrained("runs/dcgan/model")
    images = sampler(64, seed=0)                     # 64 PIL images
    batch = sampler.tensor(64, seed=0)               # (64, C, H, W) float in [0, 1], on the CPU
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from torch import Tensor, nn

from translate.imageio import array_to_pil
from translate.inference.translator import resolve_device, resolve_dtype
from translate.networks.description import ModelDescription, describe
from translate.networks.pretrained import build_generator, load_pretrained


def noise_generator(description: ModelDescription) -> str:
    """The name of the model's noise → image generator; a one-line error for a model of another kind."""
    description.require("noise", " (translate sample needs a noise model, e.g. dcgan)")
    return description.generator()


def _mismatch(model_dir: Path, name: str, spec: dict, error: RuntimeError) -> str:
    """One line for weights that do not fit config.json's architecture, naming the latent size when it differs."""
    weights = model_dir / f"{name}.safetensors"
    key = getattr(build_generator(spec), "latent_key", None)
    with safe_open(str(weights), "pt") as f:
        if key in f.keys():
            nz = f.get_slice(key).get_shape()[0]
            if nz != spec.get("nz"):
                return f"{weights}: latent size mismatch: config.json says nz={spec.get('nz')}, the weights take {nz}"
    return f"{weights} does not fit the architecture in config.json: {str(error).strip().splitlines()[-1].strip()}"


class Sampler:
    """Draws images from a noise → image generator: latents from ``torch.randn`` on a CPU generator seeded with
    ``seed`` (so the same on every device), run in batches of ``batch_size`` in eval mode (batch norm on its
    running statistics), so an image depends on its latent only, not on the rest of the batch."""

    def __init__(self, net: nn.Module, spec: dict, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.spec, self.nz = spec, spec["nz"]
        self.device, self.dtype = torch.device(device), dtype
        self.net = net.eval().requires_grad_(False).to(self.device)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path | ModelDescription, *, device: str | torch.device = "auto",
                        dtype: str | torch.dtype = "auto") -> Sampler:
        description = describe(model_dir)
        name = noise_generator(description)
        spec = description.generators[name]
        try:
            _, nets = load_pretrained(description, [name])
        except RuntimeError as e:  # load_state_dict: a shape differs
            raise ValueError(_mismatch(description.directory, name, spec, e)) from None
        device = resolve_device(device)
        return cls(nets[name], spec, device=device, dtype=resolve_dtype(dtype, device))

    def latents(self, n: int, seed: int) -> Tensor:
        return torch.randn(n, self.nz, generator=torch.Generator().manual_seed(seed))

    @torch.inference_mode()
    def batches(self, n: int, seed: int | None = None, batch_size: int = 64) -> Iterator[Tensor]:
        """The images of ``tensor`` in batches of ``batch_size``, so that many samples need not fit in memory."""
        if n < 1:
            raise ValueError(f"cannot draw {n} samples: n must be at least 1")
        z = self.latents(n, secrets.randbits(63) if seed is None else seed)
        autocast = nullcontext() if self.dtype == torch.float32 else torch.autocast(self.device.type, self.dtype)
        for chunk in z.split(max(1, batch_size)):
            with autocast:
                y = self.net(chunk.to(self.device))
            yield y.float().cpu().add_(1).mul_(0.5).clamp_(0, 1)

    def tensor(self, n: int, seed: int | None = None, batch_size: int = 64) -> Tensor:
        """``n`` images as an (n, C, H, W) float32 tensor in [0, 1] on the CPU (``seed`` None: a random one)."""
        return torch.cat(list(self.batches(n, seed, batch_size)))

    def __call__(self, n: int, seed: int | None = None, *, output: str = "pil",
                 batch_size: int = 64) -> list[Image.Image] | Tensor:
        """``n`` images: PIL ("L" or "RGB") with ``output="pil"``, else the tensor of ``tensor``."""
        y = self.tensor(n, seed, batch_size)
        if output == "tensor":
            return y
        if output != "pil":
            raise ValueError(f"unknown output {output!r}: pil or tensor")
        pixels = y.mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [array_to_pil(p) for p in pixels]

    def __repr__(self) -> str:
        return f"Sampler({self.spec['netG']}, nz={self.nz}; {self.device}, {str(self.dtype).removeprefix('torch.')})"


__all__ = ["Sampler", "noise_generator"]
