"""Videos (#30): frame count, timestamps, rate, size and audio kept (read back with PyAV, independently), pixels equal
to the Translator's on the decoded frames, conversion rules (atomic, re-run, broken files, shards), animated images,
the warping error on hand-worked clips, the temporal filter's targets, the built-in clip, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from translate.evaluation.flicker import FlickerMeter, psnr, warping_error
from translate.fileio import TMP_PREFIX
from translate.inference import Translator
from translate.inference.convert import convert_folder
from translate.inference.temporal import MotionEstimator, TemporalFilter
from translate.inference.video import (
    display_matrix,
    iter_video_frames,
    orientation,
    rotation_of,
    to_display,
    to_stored,
    translate_video,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny convolutions on a shared 2-core machine: two OpenMP threads spin against other processes (1.2 s a frame
    # measured, against 4 ms with one).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def translator(model_dir):
    return Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")


def smooth_frames(n: int, w: int, h: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames of a smooth colour field that drifts: easy on codecs, distinct frames."""
    rng = np.random.default_rng(seed)
    small = rng.random((4, 4, 3)).astype(np.float32)
    big = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w + 4 * n, h), Image.BILINEAR))
    return [np.ascontiguousarray(big[:, 4 * i:4 * i + w]) for i in range(n)]


def write_clip(path: Path, frames: list[np.ndarray], *, codec="libx264", pix_fmt="yuv420p", rate=25, pts=None,
               time_base=None, audio: str | None = None, options=None, rotation=None) -> None:
    """A clip written with PyAV itself; ``pts``: each frame's timestamp in ``time_base`` (variable frame rate);
    ``audio``: an audio codec for a mono 8 kHz noise track; ``rotation``: (degrees counter-clockwise, hflip) into
    the container's display matrix, as a phone records it."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            s.set_display_rotation(rotation[0], hflip=rotation[1])
        if time_base:
            s.time_base = s.codec_context.time_base = time_base
        if options:
            s.options = options
        if audio:
            a = c.add_stream(audio, rate=8000)
            a.layout = "mono"
        rng = np.random.default_rng(1)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts is not None:
                vf.pts, vf.time_base = pts[i], time_base
            for p in s.encode(vf):
                c.mux(p)
            if audio:
                fmt = "s16" if audio.startswith("pcm") else "fltp"
                samples = rng.standard_normal((1, 320)) * 0.1
                af = av.AudioFrame.from_ndarray((samples * 3000).astype(np.int16) if fmt == "s16"
                                                else samples.astype(np.float32), format=fmt, layout="mono")
                af.sample_rate = 8000
                for p in a.encode(af):
                    c.mux(p)
        for p in s.encode():
            c.mux(p)
        if audio:
            for p in a.encode():
                c.mux(p)


def read_back(path: Path) -> dict:
    """What PyAV says about a file, independently of the code under test."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        out = {"frames": [f.to_ndarray(format="rgb24") for f in frames],
               "seconds": [Fraction(f.pts) * f.time_base for f in frames], "size": (v.width, v.height),
               "rate": v.average_rate, "codec": v.codec_context.name, "pix_fmt": v.codec_context.format.name}
    with av.open(str(path)) as c:
        out["audio"] = [(bytes(p), Fraction(p.pts) * p.time_base) for p in c.demux(c.streams.audio) if p.size] \
            if c.streams.audio else []
    return out


def luma(frame: np.ndarray) -> np.ndarray:
    return np.rint(frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)


def reference(translator, frames):
    return [translator(f) for f in frames]


# ---- a video in, a video out ---------------------------------------------------------------------------------------


def test_lossless_video_keeps_frames_timestamps_audio_and_matches_the_translator(translator, tmp_path):
    """ffv1 (RGB, lossless) in .mkv, variable frame rate, PCM audio: every frame is the Translator's output on the
    decoded input frame, exactly; the timestamps and the audio packets are the input's."""
    frames = smooth_frames(10, 40, 24)
    pts = [0, 40, 80, 160, 200, 240, 330, 370, 410, 450]  # ms, uneven
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    write_clip(src, frames, codec="ffv1", pix_fmt="bgr0", pts=pts, time_base=Fraction(1, 1000), audio="pcm_s16le")
    result = translate_video(translator, src, dst, codec="ffv1")
    inp, out = read_back(src), read_back(dst)
    assert result["frames"] == len(out["frames"]) == len(inp["frames"]) == 10
    assert out["seconds"] == inp["seconds"] == [Fraction(p, 1000) for p in pts]
    assert out["size"] == inp["size"] == (40, 24) and out["codec"] == "ffv1"
    assert out["audio"] == inp["audio"] and len(out["audio"]) >= 10
    for got, decoded in zip(out["frames"], inp["frames"]):
        np.testing.assert_array_equal(got, translator(decoded))


def test_default_codecs_even_and_odd_sizes(translator, tmp_path):
    """.mp4 → H.264 4:2:0 at a rational frame rate, AAC audio copied byte for byte; an odd size → 4:4:4, same size;
    .webm → VP9. Pixels within H.264's loss of the Translator's output."""
    frames = smooth_frames(8, 48, 32)
    src = tmp_path / "in.mp4"
    write_clip(src, frames, rate=Fraction(30000, 1001), audio="aac")
    result = translate_video(translator, src, tmp_path / "out.mp4")
    inp, out = read_back(src), read_back(tmp_path / "out.mp4")
    assert (result["codec"], out["codec"], out["pix_fmt"]) == ("libx264", "h264", "yuv420p")
    assert out["rate"] == inp["rate"] == Fraction(30000, 1001) and out["seconds"] == inp["seconds"]
    assert out["audio"] == inp["audio"] and out["audio"]
    expected = reference(translator, inp["frames"])
    # Luma: 4:2:0 halves the chroma resolution, and an untrained model's output is pixel-level colour noise.
    assert min(psnr(luma(a), luma(b)) for a, b in zip(out["frames"], expected)) > 30

    odd = smooth_frames(6, 33, 21)
    write_clip(tmp_path / "odd.mkv", odd, pix_fmt="yuv444p")
    result = translate_video(translator, tmp_path / "odd.mkv", tmp_path / "odd_out.mkv")
    back = read_back(tmp_path / "odd_out.mkv")
    assert result["pix_fmt"] == back["pix_fmt"] == "yuv444p" and back["size"] == (33, 21)
    assert len(back["frames"]) == 6

    translate_video(translator, tmp_path / "odd.mkv", tmp_path / "odd_out.webm")
    back = read_back(tmp_path / "odd_out.webm")
    assert back["codec"] == "vp9" and back["size"] == (33, 21) and len(back["frames"]) == 6


def test_variable_frame_rate_mp4_keeps_its_timestamps(translator, tmp_path):
    """H.264 in MP4 (B-frames reorder the packets; the muxer has its own time base) at uneven intervals: every
    frame's time is the input's."""
    pts = [0, 33, 66, 150, 183, 300, 333, 366, 500, 533]  # ms
    write_clip(tmp_path / "in.mp4", smooth_frames(10, 32, 32), pts=pts, time_base=Fraction(1, 1000))
    translate_video(translator, tmp_path / "in.mp4", tmp_path / "out.mp4")
    inp, out = read_back(tmp_path / "in.mp4"), read_back(tmp_path / "out.mp4")
    assert inp["seconds"] == [Fraction(p, 1000) for p in pts]
    assert out["seconds"] == inp["seconds"] and len(out["frames"]) == 10


@pytest.mark.parametrize(("rotation", "displayed"), [
    ((90, False), lambda a: np.rot90(a, 1)),             # PyAV and FFmpeg count degrees counter-clockwise
    ((-90, False), lambda a: np.rot90(a, -1)),           # a phone held upright: stored landscape, shown portrait
    ((180, False), lambda a: np.rot90(a, 2)),
    ((90, True), lambda a: np.rot90(a, 1)[:, ::-1]),     # mirrored after the rotation
    ((0, True), lambda a: a[:, ::-1]),
    (None, lambda a: a),
])
def test_display_matrix_read_and_applied_as_ffmpeg_does(tmp_path, rotation, displayed):
    """The matrix a container holds (written by PyAV's ``set_display_rotation``, FFmpeg's ``av_display_rotation_set``)
    is read back from the decoded frame; ``to_display`` turns a stored frame as players show it; ``to_stored``
    undoes it."""
    frame = smooth_frames(1, 20, 12)[0]
    write_clip(tmp_path / "r.mkv", [frame], codec="ffv1", pix_fmt="bgr0", rotation=rotation)
    matrix = display_matrix(tmp_path / "r.mkv")
    with av.open(str(tmp_path / "r.mkv")) as c:
        decoded = next(c.decode(video=0))
        assert (matrix is None) == (rotation is None) and (matrix is None or rotation_of(matrix) == decoded.rotation)
        if rotation and not rotation[1]:  # 180 ≡ -180; a mirror has no single angle (FFmpeg calls a plain hflip -180)
            assert (decoded.rotation - rotation[0]) % 360 == 0
        stored = decoded.to_ndarray(format="rgb24")
    np.testing.assert_array_equal(stored, frame)
    turn = orientation(matrix)
    assert (turn is None) == (rotation is None)
    np.testing.assert_array_equal(to_display(stored, turn), displayed(frame))
    np.testing.assert_array_equal(to_stored(to_display(stored, turn), turn), frame)
    np.testing.assert_array_equal(next(iter_video_frames(tmp_path / "r.mkv")), displayed(frame))


def test_orientation_of_other_matrices():
    assert orientation(None) is None and orientation((65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)) is None
    c = round(65536 * 0.7071)  # 45°: not a multiple of 90°, frames stay as stored
    assert orientation((c, -c, 0, c, c, 0, 0, 0, 1 << 30)) is None


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_rotated_clip_keeps_its_display_matrix_and_the_model_sees_it_upright(translator, tmp_path, suffix):
    """A phone's portrait clip (stored 40×24 landscape, display matrix -90°) with audio: the output holds the same
    matrix, is stored the same size, and each frame is the model's output on the frame as displayed, turned back
    (lossless ffv1 in .mkv: exactly; H.264 in .mp4: within its loss)."""
    frames = smooth_frames(6, 40, 24)
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    lossless = suffix == ".mkv"
    write_clip(src, frames, rotation=(-90, False), audio="pcm_s16le" if lossless else "aac",
               **({"codec": "ffv1", "pix_fmt": "bgr0"} if lossless else {}))
    result = translate_video(translator, src, dst, codec="ffv1" if lossless else None)
    assert result["rotation"] == -90
    assert display_matrix(dst) == display_matrix(src) is not None
    inp, out = read_back(src), read_back(dst)
    assert out["size"] == inp["size"] == (40, 24) and len(out["frames"]) == 6 and out["audio"] == inp["audio"]
    turn = orientation(display_matrix(src))
    expected = [to_stored(translator(to_display(f, turn)), turn) for f in inp["frames"]]
    if lossless:
        for got, want, f in zip(out["frames"], expected, inp["frames"]):
            np.testing.assert_array_equal(got, want)
            assert not np.array_equal(got, translator(f))  # the model is not rotation-equivariant: it matters
    else:
        assert min(psnr(luma(a), luma(b)) for a, b in zip(out["frames"], expected)) > 30


def test_frames_stream_in_batches_and_the_api(translator, tmp_path):
    """Translator.frames is lazy (a generator never exhausted up front) and equals per-frame calls at any batch."""
    frames = smooth_frames(5, 32, 32)
    pulled = []

    def source():
        for f in frames:
            pulled.append(1)
            yield f

    stream = translator.frames(source(), batch_size=2)
    first = next(stream)
    assert len(pulled) == 2  # one batch read, not the whole clip
    outputs = [first, *stream]
    for got, f in zip(outputs, frames):
        np.testing.assert_array_equal(got, translator(f))
    write_clip(tmp_path / "c.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    assert translator.video(tmp_path / "c.mkv", tmp_path / "o.mkv", codec="ffv1", batch_size=3)["frames"] == 5


# ---- conversion rules ----------------------------------------------------------------------------------------------


def _animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (20, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=0)


def test_folder_of_images_videos_and_animations(model_dir, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_clip(src / "a.mp4", smooth_frames(6, 32, 32))
    write_clip(src / "sub" / "b.mkv", smooth_frames(12, 32, 32, seed=2), codec="ffv1", pix_fmt="bgr0", rate=8)
    data = (src / "sub" / "b.mkv").read_bytes()
    (src / "sub" / "b.mkv").rename(src / "sub" / "good.mkv")
    (src / "sub" / "cut.mkv").write_bytes(data[: len(data) // 2])  # truncated: decodes up to where it was cut
    (src / "empty.mov").write_bytes(b"")
    _animated_gif(src / "anim.gif")
    Image.fromarray(smooth_frames(1, 24, 24)[0]).save(src / "still.png")
    out = tmp_path / "out"
    summary = convert_folder(model_dir, src, out, device="cpu", dtype="fp32", progress=False)
    assert (summary["found"], summary["converted"], summary["failed"]) == (6, 4, 2)
    failures = {f["file"]: f["error"] for f in summary["failures"]}
    assert failures["empty.mov"] == "frame 0: empty file (0 bytes)"
    frame = int(failures["sub/cut.mkv"].split(":")[0].removeprefix("frame "))
    assert 1 <= frame < 12 and "truncated" in failures["sub/cut.mkv"]
    assert not (out / "sub" / "cut.mkv").exists() and not list(out.rglob(TMP_PREFIX + "*"))
    assert summary["frames"] == 1 + 3 + 6 + 12
    assert len(read_back(out / "a.mp4")["frames"]) == 6
    assert len(read_back(out / "sub" / "good.mkv")["frames"]) == 12
    with Image.open(out / "anim.png") as im:  # an animated GIF → an animated PNG, every frame and its duration
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        assert im.n_frames == 3 and durations == [100, 200, 300]
    # By extension: the GIF is an image.
    assert json.loads((out / "convert_summary.json").read_text())["videos_found"] == 4

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.m*")}
    again = convert_folder(model_dir, src, out, device="cpu", dtype="fp32", progress=False)
    assert (again["converted"], again["skipped"], again["failed"]) == (0, 4, 2)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.m*")} == before  # finished videos are not redone

    parts = [convert_folder(model_dir, src, tmp_path / "sharded", device="cpu", dtype="fp32", progress=False,
                            shard=(i, 2)) for i in range(2)]
    assert sorted(v["file"] for p in parts for v in p["videos"]) == ["a.mp4", "anim.gif", "sub/good.mkv"]
    assert [p["found"] for p in parts] == [3, 3]  # a video is one job


def test_a_failing_video_leaves_no_output(translator, tmp_path, monkeypatch):
    write_clip(tmp_path / "in.mp4", smooth_frames(6, 32, 32))
    calls = []
    real = translator.translate_pixels

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(translator, "translate_pixels", failing)
    with pytest.raises(RuntimeError):
        translate_video(translator, tmp_path / "in.mp4", tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


# ---- flicker -------------------------------------------------------------------------------------------------------


def photo(w: int, h: int) -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[100:100 + h, 150:150 + w])


def test_warping_error_hand_worked_clips():
    big = photo(160, 64)
    static = [big[:, :64]] * 6
    assert warping_error(static) == 0
    shifted = [np.ascontiguousarray(big[:, 3 * t:3 * t + 64]) for t in range(8)]  # a pan: 3 px a frame
    plain = np.mean([np.abs(a.astype(float) - b).mean() / 255 for a, b in zip(shifted, shifted[1:])])
    assert warping_error(shifted) < 0.01 < plain / 4
    noisy = list(shifted)
    noisy[4] = np.random.default_rng(0).integers(0, 256, noisy[4].shape, dtype=np.uint8)
    assert warping_error(shifted, noisy) > 10 * warping_error(shifted)
    # The output is measured along the input's flow: the input itself as output gives the input's error.
    assert warping_error(shifted, shifted) == pytest.approx(warping_error(shifted))


def flickering(frames: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """A stand-in for a GAN translated frame by frame: a fixed colour map plus per-frame colour jitter and noise."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        jitter = rng.uniform(-5, 5, 3)
        noisy = 255 - f.astype(np.float32) + jitter + rng.normal(0, 1.5, f.shape)
        out.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    return out


def test_temporal_filter_halves_flicker_keeps_psnr_and_stops_at_the_cut():
    from translate.data.builtin import clip_frames

    frames, path = clip_frames(size=(96, 64), frames=16, cut=8)
    raw = flickering(frames)
    estimator, stabilise = MotionEstimator(), TemporalFilter(0.85)
    meter = FlickerMeter(["raw", "stabilised"])
    cuts, out = [], []
    for t, (f, r) in enumerate(zip(frames, raw)):
        motion = estimator.estimate(f)
        if motion is not None and motion.cut:
            cuts.append(t)
        out.append(stabilise(f, r, motion))
        meter.add(f, r, out[-1], motion=motion)
    errors = meter.result()["warping_error"]
    assert cuts == [8] and path[8]["photo"] != path[7]["photo"]
    assert errors["stabilised"] <= errors["raw"] / 2
    assert min(psnr(a, b) for a, b in zip(out, raw)) >= 30
    np.testing.assert_array_equal(out[8], raw[8])  # nothing carried across the cut
    np.testing.assert_array_equal(out[0], raw[0])


def test_temporal_filter_does_not_ghost_a_moving_object():
    """A square moving over a textured, static background: where the square was, the stabilised frame shows the
    background (the occlusion mask and the photometric check keep the warped old square out)."""
    bg = photo(64, 48)
    frames = []
    for t in range(6):
        f = bg.copy()
        f[16:32, 4 + 6 * t:20 + 6 * t] = (255, 255, 0)
        frames.append(f)
    raw = flickering(frames, seed=1)
    estimator, stabilise = MotionEstimator(), TemporalFilter(0.9)
    for f, r in zip(frames, raw):
        out = stabilise(f, r, estimator.estimate(f))
    uncovered = (slice(16, 32), slice(4 + 6 * 4, 4 + 6 * 5))  # the square's place one frame before, background now
    # The old square (255 - yellow = blue-ish in the output) would pull the red channel down by ~255 × 0.9.
    assert np.abs(out[uncovered].astype(float) - raw[-1][uncovered]).mean() < 6


# ---- the built-in clip and the CLI ----------------------------------------------------------------------------------


def test_builtin_clip_and_cli(model_dir, tmp_path, monkeypatch):
    from translate.data.builtin import CLIP_CUT, CLIP_FPS, ensure_clip

    clip = ensure_clip(tmp_path / "clip")
    camera = json.loads((clip.parent / "camera.json").read_text())
    back = read_back(clip)
    assert len(back["frames"]) == len(camera["frames"]) == 48 and back["rate"] == CLIP_FPS
    assert camera["cut_before"] == CLIP_CUT and ensure_clip(tmp_path / "clip") == clip  # made once

    short = tmp_path / "short.mp4"
    write_clip(short, back["frames"][20:30], rate=CLIP_FPS)  # across the cut
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "translate.cli", "convert", str(model_dir), str(short),
                          str(tmp_path / "out.mp4"), "--device", "cpu", "--dtype", "fp32", "--temporal", "0.6",
                          "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "10 frames, libx264 yuv420p, 128×96, 12 fps" in run.stdout and "1 scene cut" in run.stdout
    assert len(read_back(tmp_path / "out.mp4")["frames"]) == 10
    run = subprocess.run([sys.executable, "-m", "translate.cli", "eval", str(model_dir), str(short), "--device",
                          "cpu", "--temporal", "0.6", "--out", str(tmp_path / "flicker.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "flicker.json").read_text())
    assert result["frames"] == 10 and result["cuts"] == 1 and result["pairs"] == 8
    assert set(result["warping_error"]) == {"input", "frame_by_frame", "stabilised"}
