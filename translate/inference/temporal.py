"""Optical flow between consecutive frames and what rests on it: occlusion masks, scene cuts, and the recursive
filter that takes the flicker out of a frame-by-frame translated video (``--temporal``).

The flow is OpenCV's DIS (Kroeger et al. 2016) between the *input* frames, as in the warping error of Lai et al.
2018 (``translate.evaluation.flicker``): the input shows the true motion, a flickering output does not. Pixels
whose flow fails the forward-backward check of Sundaram et al. 2010 (occluded, or leaving the frame) are masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Sundaram et al. 2010, as Ruder et al. 2016 and Lai et al. 2018 use it: |f_b + f_f(x + f_b)|² < a (|f_b|² +
# |f_f(x + f_b)|²) + b, in pixels.
CONSISTENCY = (0.01, 0.5)
# A scene cut: the colour histograms of two frames differ by more than this (half the L1 distance of the normalised
# 3 × 32-bin histograms, 0..1), or fewer than this fraction of the pixels have a consistent flow.
CUT_HISTOGRAM = 0.4
CUT_CONSISTENT = 0.2
# The filter blends only where the warped previous input matches the current one: weight × exp(-(d / σ)²), d the
# absolute difference of the gray inputs on [0, 1] (Bonneel et al. 2015's guard against warping errors).
PHOTOMETRIC_SIGMA = 0.1


def gray(frame: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8/uint16 → (H, W) uint8 luma (alpha ignored)."""
    if frame.dtype != np.uint8:
        frame = (frame.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if frame.ndim == 2:
        return frame
    if frame.shape[2] >= 3:
        return cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(frame[..., 0])


def _dis():
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at x + flow(x) (bilinear; outside the frame: 0), float32, same channels."""
    h, w = flow.shape[:2]
    grid = np.mgrid[:h, :w][::-1].transpose(1, 2, 0).astype(np.float32) + flow
    out = cv2.remap(np.ascontiguousarray(image, dtype=np.float32), grid, None, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(*out.shape[:2], *image.shape[2:])


@dataclass
class Motion:
    """From the previous frame to the current one: ``flow`` (H, W, 2) with current(x) ≈ previous(x + flow(x)),
    ``valid`` where that holds (consistent and inside the frame), and whether the pair straddles a scene ``cut``."""

    flow: np.ndarray
    valid: np.ndarray
    cut: bool
    histogram_distance: float


def _histogram(frame: np.ndarray) -> np.ndarray:
    rgb = frame if frame.ndim == 3 and frame.shape[2] >= 3 else np.repeat(frame.reshape(*frame.shape[:2], 1), 3, 2)
    if rgb.dtype != np.uint8:
        rgb = (rgb.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    hist = np.concatenate([np.bincount((rgb[..., c] >> 3).ravel(), minlength=32) for c in range(3)])
    return hist / max(hist.sum(), 1)


class MotionEstimator:
    """``estimate(frame)`` for each frame of a clip in order: the ``Motion`` from the previous frame (None for the
    first). Frames: (H, W, C) uint8 or uint16."""

    def __init__(self):
        self.dis = _dis()
        self.prev_gray: np.ndarray | None = None
        self.prev_hist: np.ndarray | None = None

    def estimate(self, frame: np.ndarray) -> Motion | None:
        g, hist = gray(frame), _histogram(frame)
        prev, prev_hist = self.prev_gray, self.prev_hist
        self.prev_gray, self.prev_hist = g, hist
        if prev is None or prev.shape != g.shape:
            return None
        backward = self.dis.calc(g, prev, None)  # current → previous
        forward = self.dis.calc(prev, g, None)  # previous → current
        valid = consistent(backward, forward)
        distance = float(np.abs(hist - prev_hist).sum() / 2)
        cut = distance > CUT_HISTOGRAM or float(valid.mean()) < CUT_CONSISTENT
        return Motion(backward, valid, cut, distance)


def consistent(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Forward-backward check: True where following ``backward`` then ``forward`` comes back to the start, and the
    point lands inside the frame (elsewhere the pixel is occluded or leaves the picture)."""
    h, w = backward.shape[:2]
    back_forward = warp(forward, backward)
    a, b = CONSISTENCY
    error = ((backward + back_forward) ** 2).sum(-1)
    bound = a * ((backward**2).sum(-1) + (back_forward**2).sum(-1)) + b
    x = np.arange(w, dtype=np.float32)[None] + backward[..., 0]
    y = np.arange(h, dtype=np.float32)[:, None] + backward[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return (error < bound) & inside


def scaled(motion: Motion, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The flow and mask of ``motion`` at another (H, W) (an upscaler's outputs): resized, vectors scaled."""
    h, w = motion.flow.shape[:2]
    if (h, w) == tuple(size):
        return motion.flow, motion.valid
    flow = cv2.resize(motion.flow, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    flow *= np.array([size[1] / w, size[0] / h], np.float32)
    valid = cv2.resize(motion.valid.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
    return flow, valid


class TemporalFilter:
    """The recursive filter of Lai et al. 2018's baseline (after Bonneel et al. 2015): each output is blended with
    the previous *stabilised* output, warped along the input's flow,

        out_t = p_t + strength · m · (warp(out_{t-1}) − p_t),

    where m is 1 on pixels with a consistent flow whose warped previous input matches the current input (fading
    with their difference), else 0: occluded and disoccluded pixels, and moving objects the flow missed, keep the
    frame's own translation, so nothing ghosts. At a scene cut (from the input) the filter starts again.
    ``__call__(frame_in, frame_out, motion)`` → the stabilised output, same dtype and shape as ``frame_out``."""

    def __init__(self, strength: float):
        if not 0 <= strength < 1:
            raise ValueError(f"temporal strength must lie in [0, 1), not {strength}")
        self.strength = strength
        self.prev_out: np.ndarray | None = None  # float32, the last stabilised output
        self.prev_in: np.ndarray | None = None  # float32 gray input on [0, 1]
        self.cuts = 0

    def __call__(self, frame_in: np.ndarray, frame_out: np.ndarray, motion: Motion | None) -> np.ndarray:
        current = frame_out.astype(np.float32)
        g = gray(frame_in).astype(np.float32) / 255
        prev_out, prev_in = self.prev_out, self.prev_in
        self.prev_in = g
        if motion is not None and motion.cut:
            self.cuts += 1
        if motion is None or motion.cut or prev_out is None or prev_out.shape != current.shape:
            self.prev_out = current
            return frame_out
        flow, valid = scaled(motion, current.shape[:2])
        warped = warp(prev_out, flow)
        in_flow, in_valid = (motion.flow, motion.valid)
        difference = np.abs(g - warp(prev_in, in_flow)) / PHOTOMETRIC_SIGMA
        weight = np.where(in_valid, np.exp(-(difference**2)), 0).astype(np.float32)
        # The least weight of each 3×3 neighbourhood: bilinear warps mix the two sides of a moving edge, which the
        # check above passes half-way; left in, that mix would build up frame after frame into a ghost.
        weight = cv2.erode(weight, np.ones((3, 3), np.uint8))
        if weight.shape != valid.shape:
            weight = cv2.resize(weight, (valid.shape[1], valid.shape[0]), interpolation=cv2.INTER_LINEAR) * valid
        weight = (self.strength * weight)[..., None]
        out = current + weight * (warped - current)
        self.prev_out = out
        top = 255 if frame_out.dtype == np.uint8 else 65535
        return np.clip(np.rint(out), 0, top).astype(frame_out.dtype)
