"""Flicker: the temporal warping error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency").

For each pair of consecutive frames, the optical flow between the *input* frames (OpenCV's DIS) warps the previous
output onto the current one; pixels that fail the forward-backward consistency check (occluded, or leaving the
frame) are masked, and the error of the pair is the mean absolute difference over the remaining pixels and the
colour channels, on [0, 1]. The clip's error is the mean over its pairs; pairs across a detected scene cut are left
out (there is no motion to follow). A static clip scores 0; an ideal translation of a moving clip scores about its
input's own error (the interpolation of the warp), a flickering one more.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from translate.inference.temporal import Motion, MotionEstimator, scaled, warp


def pair_error(previous: np.ndarray, current: np.ndarray, motion: Motion) -> float | None:
    """The warping error of one pair of frames (see the module docstring); None when no pixel is unmasked."""
    flow, valid = scaled(motion, current.shape[:2])
    if not valid.any():
        return None
    top = 255.0 if current.dtype == np.uint8 else 65535.0 if current.dtype == np.uint16 else 1.0
    warped = warp(previous, flow)
    difference = np.abs(current.astype(np.float32) - warped).reshape(*current.shape[:2], -1)[..., :3]
    return float(difference[valid].mean() / top)


class FlickerMeter:
    """Fed one frame at a time (``add(input, *outputs)``), it keeps the warping error of the input clip and of each
    output clip, all along the input's flow; ``result()`` gives them (``inputs``: the input's own error)."""

    def __init__(self, names: Iterable[str] = ("output",), estimator: MotionEstimator | None = None):
        self.names = list(names)
        self.estimator = estimator or MotionEstimator()
        self.errors = {name: [] for name in ["input", *self.names]}
        self.previous: list[np.ndarray] | None = None
        self.pairs = self.cuts = 0

    def add(self, frame_in: np.ndarray, *outputs: np.ndarray, motion: Motion | None = "estimate") -> Motion | None:
        if isinstance(motion, str):
            motion = self.estimator.estimate(frame_in)
        frames = [frame_in, *outputs]
        if motion is not None and self.previous is not None:
            if motion.cut:
                self.cuts += 1
            else:
                self.pairs += 1
                for name, prev, cur in zip(self.errors, self.previous, frames):
                    error = pair_error(prev, cur, motion)
                    if error is not None:
                        self.errors[name].append(error)
        self.previous = frames
        return motion

    def result(self) -> dict:
        out = {name: (float(np.mean(values)) if values else None) for name, values in self.errors.items()}
        return {"warping_error": out, "pairs": self.pairs, "cuts": self.cuts}


def warping_error(frames: Iterable[np.ndarray], outputs: Iterable[np.ndarray] | None = None) -> float | None:
    """The warping error of ``outputs`` along the flow of ``frames`` (of ``frames`` themselves without ``outputs``):
    (H, W, C) uint8/uint16 arrays, one output per frame, in order."""
    meter = FlickerMeter([] if outputs is None else ["output"])
    for frame, *rest in zip(frames, *([] if outputs is None else [outputs])):
        meter.add(frame, *rest)
    errors = meter.result()["warping_error"]
    return errors["input" if outputs is None else "output"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two frames of one dtype (peak 255 or 65535); 100 for identical frames (the cap)."""
    top = 255.0 if a.dtype == np.uint8 else 65535.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(top**2 / mse))


def clip_flicker(translator, path: str | Path, *, direction: str | None = None, temporal: float = 0.0,
                 batch_size: int = 1, max_frames: int | None = None) -> dict:
    """The warping error of a video file, of its translation frame by frame and (``temporal`` > 0) of the
    translation stabilised at that strength, with the PSNR of each stabilised frame against the frame-by-frame
    one (lowest and mean); nothing is written. ``translate eval MODEL CLIP`` prints it."""
    from translate.inference.video import iter_video_frames, translate_frames

    meter = FlickerMeter(["frame_by_frame"] + (["stabilised"] if temporal else []))
    frames, psnrs = 0, []
    for item in translate_frames(translator, iter_video_frames(path, max_frames=max_frames), direction=direction,
                                 batch_size=batch_size, temporal=temporal, measure=True):
        meter.add(item.input, item.raw, *([item.output] if temporal else []), motion=item.motion)
        if temporal:
            psnrs.append(psnr(item.output, item.raw))
        frames += 1
    result = {"file": str(path), "frames": frames, "temporal": temporal, **meter.result()}
    if temporal:
        result["psnr_stabilised_vs_frame_by_frame"] = {"min": min(psnrs), "mean": float(np.mean(psnrs))}
    return result


def format_flicker(result: dict) -> str:
    """``clip_flicker``'s result as a few lines of text."""
    errors = result["warping_error"]
    lines = [f"{result['file']}: {result['frames']} frames, {result['pairs']} pairs measured, "
             f"{result['cuts']} scene cuts left out",
             "warping error (mean |difference| on [0, 1] after warping along the input's flow, occlusions masked):"]
    for name, value in errors.items():
        label = {"input": "input clip", "frame_by_frame": "translated frame by frame",
                 "stabilised": f"translated, --temporal {result['temporal']}"}.get(name, name)
        lines.append(f"  {label:<32} {'-' if value is None else f'{value:.5f}'}")
    if "psnr_stabilised_vs_frame_by_frame" in result:
        p = result["psnr_stabilised_vs_frame_by_frame"]
        lines.append(f"stabilised vs frame by frame: PSNR min {p['min']:.2f} dB, mean {p['mean']:.2f} dB")
    return "\n".join(lines)
