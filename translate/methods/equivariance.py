"""The equivariance term of ``train.temporal`` (Eilertsen et al. 2019, "Single-frame Regularization for Temporally
Stable CNNs"): consecutive video frames differ by small camera motions, so a generator that commutes with them,
G(T(x)) = T(G(x)), translates each frame consistently with its neighbours and flickers less when a video is converted
frame by frame, with no video in the training data.

Each generator step draws one small motion T per image (a shift of up to ``MAX_SHIFT`` input pixels, a rotation of
up to ``MAX_ANGLE`` degrees and a zoom of up to ``MAX_ZOOM`` about the centre), applies the same affine to the input
and to the output (at the output's scale: ×4 for super-resolution) and takes the mean absolute difference
|G(T(x)) − T(G(x))| over the output pixels that T fills from inside the image. G(x) is the recipe's own forward;
the term costs one more forward, of T(x). The input is warped with reflection padding, so G sees no black border.
The draws come from torch's global generator on the CPU, which checkpoints save: a resumed run draws the same T.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MAX_SHIFT = 4.0  # input pixels, each axis
MAX_ANGLE = 2.0  # degrees
MAX_ZOOM = 0.03  # the zoom factor lies in [1 - MAX_ZOOM, 1 + MAX_ZOOM]


def random_motion(n: int) -> Tensor:
    """``n`` motions drawn uniformly from torch's global CPU generator: rows (shift x, shift y in input pixels, angle
    in degrees, zoom factor)."""
    u = torch.rand(n, 4) * 2 - 1
    return u * torch.tensor([MAX_SHIFT, MAX_SHIFT, MAX_ANGLE, MAX_ZOOM]) + torch.tensor([0.0, 0.0, 0.0, 1.0])


def motion_matrix(motion: Tensor, height: int, width: int, scale: float = 1.0) -> Tensor:
    """The (n, 2, 3) affine, in pixel coordinates, of ``motion`` on an image of ``height`` × ``width`` that is
    ``scale`` times the input's size: rotation and zoom about the image centre, then the shift times ``scale``."""
    from kornia.geometry.transform import get_rotation_matrix2d  # late: kornia takes a second to import

    motion = motion.float()
    n = len(motion)
    center = torch.tensor([[(width - 1) / 2, (height - 1) / 2]]).expand(n, 2)
    matrix = get_rotation_matrix2d(center, motion[:, 2], motion[:, 3:4].expand(n, 2)).clone()
    matrix[:, :, 2] += motion[:, :2] * scale
    return matrix


def warp(images: Tensor, matrix: Tensor, padding: str) -> Tensor:
    """``images`` moved by ``matrix`` (bilinear, in float32); ``padding``: zeros | border | reflection."""
    from kornia.geometry.transform import warp_affine

    return warp_affine(images.float(), matrix.to(images.device), tuple(images.shape[-2:]), mode="bilinear",
                       padding_mode=padding, align_corners=True)


def equivariance_loss(G: nn.Module, x: Tensor, fake: Tensor, scale: float = 1.0,
                      motion: Tensor | None = None) -> Tensor:
    """mean |G(T(x)) − T(G(x))| over the pixels T keeps inside the image, with ``fake`` = G(x) (gradients flow
    through both sides) and ``scale`` = output size / input size; ``motion`` (rows as ``random_motion``'s) is drawn
    when not given."""
    motion = random_motion(len(x)) if motion is None else motion
    moved_input = warp(x, motion_matrix(motion, *x.shape[-2:]), "reflection").to(x.dtype)
    out_matrix = motion_matrix(motion, *fake.shape[-2:], scale)
    moved_output = warp(fake, out_matrix, "zeros")
    with torch.no_grad():  # output pixels whose source lies inside the image (all four bilinear neighbours)
        inside = warp(torch.ones_like(fake[:, :1]), out_matrix, "zeros") > 1 - 1e-4
    difference = (G(moved_input).float() - moved_output).abs() * inside
    return difference.sum() / (inside.sum() * fake.shape[1]).clamp(min=1)
