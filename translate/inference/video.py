"""Videos and animated images through a ``Translator``, frame by frame, streamed (PyAV decodes and encodes).

A translated video keeps the input's frame count, timestamps (each frame's pts in the input's time base), frame
rate, size (an upscaler's: ×scale) and display matrix (the rotation a phone records for a portrait clip stored
landscape); its audio streams are copied packet by packet, unchanged; other streams (subtitles, data) are left out.
Frames go to the model the way they are displayed (rotated by a multiple of 90°, flipped, as images have their EXIF
orientation applied) and are turned back before encoding, so the output is stored and displayed as the input.
Frames run through ``Translator.translate_pixels`` in batches (dtype, tiling and all), and only a batch of frames is
held at a time, so a clip of any length fits in memory. The encoder follows the output's extension
(``choose_codec``): H.264 (libx264, CRF 18) for .mp4 .mov .mkv .avi where the FFmpeg build has it, else MPEG-4 Part
2; VP9 for .webm. 4:2:0 chroma needs even sides: odd-sized frames are encoded in 4:4:4 where the codec has it.
``temporal`` > 0 stabilises the outputs along the input's optical flow
(``translate.inference.temporal.TemporalFilter``).

A file that cannot be decoded, or ends before the frame count or duration its header states, raises
``BadVideoError`` naming the frame; the output is written to a temp file and renamed only when complete.

Animated GIF, WebP and PNG files (``translate.imageio.read_animation``) become animated PNG (APNG, lossless; a GIF's
output) or animated WebP files with every frame and its duration; they are held in memory, as they are small.
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from translate.fileio import temp_path
from translate.imageio import DEFAULT_MAX_PIXELS, BadImageError, read_animation, write_animation
from translate.networks import GENERATORS

# Extension → encoders to try in order (the first the FFmpeg build has).
CODECS = {".mp4": ("libx264", "mpeg4"), ".mov": ("libx264", "mpeg4"), ".mkv": ("libx264", "mpeg4"),
          ".avi": ("libx264", "mpeg4"), ".webm": ("libvpx-vp9", "libvpx")}
DEFAULT_CRF = {"libx264": 18, "libvpx-vp9": 24, "libvpx": 10}  # visually near-lossless for each
# Lossless codecs that store RGB: the frames go in untouched, no YUV conversion (tests, archives).
_RGB_FORMATS = ("bgr0", "rgb24", "gbrp", "bgr24")
_LOSSLESS = ("ffv1", "huffyuv", "utvideo", "libx264rgb", "png", "qtrle")


class BadVideoError(BadImageError):
    """A video that cannot be decoded (``frame``: where it failed, counted from 0), or a conversion that failed."""

    def __init__(self, path, reason: str = "", frame: int | None = None):
        super().__init__(path, reason)
        self.frame = frame


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a dependency
        raise ImportError("videos need PyAV: pip install av") from e
    av.logging.set_level(av.logging.ERROR)
    return av


def has_codec(name: str) -> bool:
    av = _av()
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


def choose_codec(dst: str | Path, codec: str | None = None) -> str:
    """The encoder for the output file ``dst``: ``codec`` if given (checked), else the first of ``CODECS`` for its
    extension that this FFmpeg build has."""
    suffix = Path(dst).suffix.lower()
    if codec:
        if not has_codec(codec):
            raise ValueError(f"this FFmpeg build (PyAV) has no encoder {codec!r}")
        return codec
    if suffix not in CODECS:
        raise ValueError(f"cannot write a video to {dst}: use {', '.join(CODECS)}")
    for name in CODECS[suffix]:
        if has_codec(name):
            return name
    raise ValueError(f"this FFmpeg build (PyAV) has none of the encoders {', '.join(CODECS[suffix])} for {suffix}")


def choose_pix_fmt(codec: str, width: int, height: int) -> str:
    """4:2:0 where the sides are even (what every player plays), 4:4:4 where they are not and the codec has it
    (4:2:0 needs even sides); RGB for lossless codecs."""
    av = _av()
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    if codec in _LOSSLESS:
        for name in _RGB_FORMATS:
            if name in formats:
                return name
    odd = width % 2 or height % 2
    for name in (("yuv444p",) if odd else ()) + ("yuv420p",):
        if name in formats:
            return name
    return formats[0] if formats else "yuv420p"


def _encoder_options(codec: str, crf: int | None) -> dict:
    if codec == "libx264":
        return {"crf": str(DEFAULT_CRF[codec] if crf is None else crf), "preset": "medium"}
    if codec in ("libvpx-vp9", "libvpx"):
        return {"crf": str(DEFAULT_CRF[codec] if crf is None else crf), "b": "0", "row-mt": "1"}
    if codec == "mpeg4":  # quantiser 2-31 (lower is better): ~crf / 6, 3 by default
        return {"flags": "+qscale", "global_quality": str(118 * max(2, min(31, 3 if crf is None else crf // 6)))}
    return {}


# ---- frames ---------------------------------------------------------------------------------------------------------


@dataclass
class Translated:
    """One translated frame: the ``input`` (H, W, C), the ``output`` (stabilised with ``temporal``), the ``raw``
    frame-by-frame output, and the ``motion`` from the previous input (with ``temporal`` or ``measure``)."""

    input: np.ndarray
    output: np.ndarray
    raw: np.ndarray
    motion: object | None


def translate_frames(translator, frames: Iterable[np.ndarray], *, direction: str | None = None,
                     batch_size: int = 1, tile: int | str | None = None, tile_overlap: int | str | None = None,
                     temporal: float = 0.0, measure: bool = False) -> Iterator[Translated]:
    """Translate a stream of (H, W, C) uint8/uint16 frames in order, ``batch_size`` at a time, holding no more than
    one batch; ``temporal`` in [0, 1): strength of the flicker filter (0: off)."""
    from translate.inference.temporal import MotionEstimator, TemporalFilter  # OpenCV: only for these

    name = translator.generator_name(direction)
    tile = translator.tile if tile is None else tile
    tile_overlap = translator.tile_overlap if tile_overlap is None else tile_overlap
    estimator = MotionEstimator() if temporal or measure else None
    stabilise = TemporalFilter(temporal) if temporal else None
    batch: list[np.ndarray] = []

    def run(batch: list[np.ndarray]) -> Iterator[Translated]:
        pixels = [torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in batch]
        outputs = translator.translate_pixels(pixels, name, batch_size=max(1, batch_size), tile=tile,
                                              tile_overlap=tile_overlap)
        for frame, output in zip(batch, outputs):
            raw = output.permute(1, 2, 0).numpy()
            motion = estimator.estimate(frame) if estimator else None
            yield Translated(frame, stabilise(frame, raw, motion) if stabilise else raw, raw, motion)

    for frame in frames:
        batch.append(frame)
        if len(batch) >= max(1, batch_size):
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


def output_size(translator, direction: str | None, height: int, width: int) -> tuple[int, int]:
    """(H, W) of the model's output for an input of that size (×scale for an upscaler)."""
    scale = GENERATORS[translator.specs[translator.generator_name(direction)]["netG"]].scale
    return height * scale, width * scale


def _to_rgb24(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        frame = ((frame.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if frame.shape[2] in (1, 2):
        frame = np.repeat(frame[..., :1], 3, 2)
    return np.ascontiguousarray(frame[..., :3])


# ---- video files ----------------------------------------------------------------------------------------------------


def display_matrix(path: str | Path) -> tuple[int, ...] | None:
    """The display matrix of the video ``path`` (FFmpeg's ``AV_FRAME_DATA_DISPLAYMATRIX``: 9 int32, rotation and
    flips a player applies), from its first decoded frame, or None. The decoder attaches the container's matrix
    (MP4/MOV, Matroska, WebM) to each frame; PyAV 18 exposes no stream-level side data to read it from."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                data = next((bytes(d) for d in frame.side_data if d.type.name == "DISPLAYMATRIX"), b"")
                return struct.unpack("=9i", data) if len(data) == 36 else None
    except Exception:  # the conversion itself says what is wrong with the file
        return None
    return None


def rotation_of(matrix: tuple[int, ...]) -> int:
    """The counter-clockwise rotation in degrees (FFmpeg's ``av_display_rotation_get``, PyAV's ``frame.rotation``)."""
    return round(-math.degrees(math.atan2(matrix[1] / 65536, matrix[0] / 65536)))


def orientation(matrix: tuple[int, ...] | None) -> tuple[bool, bool, bool] | None:
    """(transpose, flip rows, flip columns) that turn a stored frame into the displayed one, for a display matrix
    that rotates by a multiple of 90° and may mirror; None for no matrix, the identity, or any other transform (whose
    frames then go to the model as stored). The matrix maps a stored pixel (p, q) (column, row) to the displayed
    (a·p + c·q, b·p + d·q) (FFmpeg's libavutil/display.h; rows counted downwards)."""
    if matrix is None:
        return None
    a, b, _, c, d = (v / 65536 for v in matrix[:5])
    signs = [round(v) for v in (a, b, c, d)]
    if any(abs(v - s) > 1e-3 for v, s in zip((a, b, c, d), signs)):
        return None
    a, b, c, d = signs
    if b == c == 0 and abs(a) == abs(d) == 1:  # D[d·q, a·p] = A[q, p]
        turn = (False, d < 0, a < 0)
    elif a == d == 0 and abs(b) == abs(c) == 1:  # D[b·p, c·q] = A[q, p] = Aᵀ[p, q]
        turn = (True, b < 0, c < 0)
    else:
        return None
    return turn if any(turn) else None


def to_display(frame: np.ndarray, turn: tuple[bool, bool, bool] | None) -> np.ndarray:
    """A stored (H, W, C) frame as displayed (``turn`` from ``orientation``)."""
    if turn is None:
        return frame
    transpose, rows, columns = turn
    frame = frame.swapaxes(0, 1) if transpose else frame
    return np.ascontiguousarray(frame[::-1 if rows else 1, ::-1 if columns else 1])


def to_stored(frame: np.ndarray, turn: tuple[bool, bool, bool] | None) -> np.ndarray:
    """The inverse of ``to_display``: a displayed frame as stored."""
    if turn is None:
        return frame
    transpose, rows, columns = turn
    frame = frame[::-1 if rows else 1, ::-1 if columns else 1]
    return np.ascontiguousarray(frame.swapaxes(0, 1) if transpose else frame)


@dataclass
class VideoInfo:
    width: int
    height: int
    frames: int  # from the header; 0 when the container does not say
    fps: Fraction | None
    time_base: Fraction
    duration: float | None  # seconds, of the video stream, when known
    codec: str
    pix_fmt: str | None
    audio: int  # audio streams


def _stream_duration(stream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:  # Matroska: "00:00:01.280000000"
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            return None
    return None


def probe_video(path: str | Path) -> VideoInfo:
    """The first video stream's header facts; ``BadVideoError`` when there is none or the file does not open."""
    av = _av()
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            return _info(container, path)
    except BadVideoError:
        raise
    except Exception as e:
        raise BadVideoError(path, _describe(e, path), frame=0) from e


def _info(container, path: Path) -> VideoInfo:
    if not container.streams.video:
        raise BadVideoError(path, "frame 0: no video stream", frame=0)
    v = container.streams.video[0]
    ctx = v.codec_context
    return VideoInfo(ctx.width, ctx.height, int(v.frames or 0), v.average_rate or v.guessed_rate, v.time_base,
                     _stream_duration(v), ctx.name, ctx.format.name if ctx.format else None,
                     len(container.streams.audio))


def _describe(e: Exception, path: Path) -> str:
    if isinstance(e, FileNotFoundError):
        return "file not found"
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
    except OSError:
        pass
    return f"cannot decode ({type(e).__name__}: {e})"


def _decoded(container, path: Path, streams: list, on_audio: Callable | None, counter: list[int],
             timestamps: deque | None) -> Iterator[np.ndarray]:
    """The video frames of ``container`` as (H, W, 3) uint8 RGB, decoding errors raised as ``BadVideoError`` with the
    frame; audio packets handed to ``on_audio`` in file order; each frame's pts appended to ``timestamps``."""
    video = streams[0]
    rate = video.average_rate or video.guessed_rate or Fraction(25)
    step = max(1, round(1 / (rate * video.time_base))) if video.time_base else 1
    last = None
    try:
        for packet in container.demux(streams):
            if packet.stream.type != "video":
                if on_audio is not None and packet.dts is not None:
                    on_audio(packet)
                continue
            for frame in packet.decode():
                pts = frame.pts if frame.pts is not None else (0 if last is None else last + step)
                last = pts
                if timestamps is not None:
                    timestamps.append(pts)
                # The frame's own colour matrix and range (swscale assumes limited range unless told).
                array = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
                counter[0] += 1
                yield array
    except BadVideoError:
        raise
    except Exception as e:
        if type(e).__module__.startswith("av"):
            raise BadVideoError(path, f"frame {counter[0]}: {_describe(e, path)}", frame=counter[0]) from e
        raise


def _check_complete(path: Path, info: VideoInfo, frames: int, last_pts: int | None) -> None:
    """Raise ``BadVideoError`` when the stream ended before what its header promised (a truncated file decodes
    without an error up to where it was cut)."""
    if frames == 0:
        raise BadVideoError(path, "frame 0: no frame could be decoded", frame=0)
    if info.frames and frames < info.frames:
        raise BadVideoError(path, f"frame {frames}: the file ends there, its header says {info.frames} frames "
                                  "(truncated?)", frame=frames)
    if info.duration and info.fps and last_pts is not None:
        end = float(last_pts * info.time_base) + float(1 / info.fps)
        if end < info.duration - 2 / float(info.fps) - 0.05:
            raise BadVideoError(path, f"frame {frames}: the file ends at {end:.2f}s, its header says "
                                      f"{info.duration:.2f}s (truncated?)", frame=frames)


def iter_video_frames(path: str | Path, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Every frame of a video file as (H, W, 3) uint8 RGB, as displayed (its display matrix's rotation by a multiple of
    90° and flips applied), streamed; ``BadVideoError`` for a broken file."""
    av = _av()
    path = Path(path)
    turn = orientation(display_matrix(path))
    try:
        container = av.open(str(path))
    except Exception as e:
        raise BadVideoError(path, f"frame 0: {_describe(e, path)}", frame=0) from e
    with container:
        info = _info(container, path)
        counter, timestamps = [0], deque(maxlen=1)
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        for array in _decoded(container, path, [video], None, counter, timestamps):
            yield to_display(array, turn)
            if max_frames is not None and counter[0] >= max_frames:
                return
        _check_complete(path, info, counter[0], timestamps[-1] if timestamps else None)


def _tag_colour(ctx, source) -> None:
    """The input's colour description on the output (so players show both alike); unset where FFmpeg refuses."""
    for key in ("colorspace", "color_range", "color_primaries", "color_trc"):
        try:
            setattr(ctx, key, getattr(source, key))
        except Exception:
            pass


def translate_video(translator, src: str | Path, dst: str | Path, *, direction: str | None = None,
                    batch_size: int = 1, tile: int | str | None = None, tile_overlap: int | str | None = None,
                    temporal: float = 0.0, codec: str | None = None, crf: int | None = None,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS, on_start: Callable[[VideoInfo], None] | None = None,
                    on_frame: Callable[[], None] | None = None, measure: bool | None = None) -> dict:
    """Translate the video ``src`` into ``dst`` (see the module docstring) and return what was done: frames,
    codec, pixel format, frame rate, size, audio streams copied, seconds, and (with ``temporal`` or ``measure``)
    the warping error of the input, the frame-by-frame output and the written output, and the scene cuts.
    ``on_start(info)`` is called once the header is read, ``on_frame()`` after each frame written."""
    av = _av()
    src, dst = Path(src), Path(dst)
    codec = choose_codec(dst, codec)
    measure = bool(temporal) if measure is None else measure
    start = time.perf_counter()
    try:
        container = av.open(str(src))
    except Exception as e:
        raise BadVideoError(src, f"frame 0: {_describe(e, src)}", frame=0) from e
    # Read before the output's header is written (at its first packet, which may be audio muxed before the first
    # video frame has been decoded).
    matrix = display_matrix(src)
    turn = orientation(matrix)
    tmp = temp_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with container:
            info = _info(container, src)
            if max_pixels is not None and info.width * info.height > max_pixels:
                raise BadVideoError(src, f"{info.width}×{info.height} frames are more than max_pixels="
                                         f"{max_pixels:,}; raise --max-pixels if you trust this file", frame=0)
            if on_start:
                on_start(info)
            video = container.streams.video[0]
            video.thread_type = "AUTO"
            audio = list(container.streams.audio)
            height, width = output_size(translator, direction, info.height, info.width)
            pix_fmt = choose_pix_fmt(codec, width, height)
            written = 0
            with av.open(str(tmp), "w") as out:
                vout = out.add_stream(codec, rate=info.fps or Fraction(25))
                vout.width, vout.height, vout.pix_fmt = width, height, pix_fmt
                vout.time_base = info.time_base
                vout.codec_context.time_base = info.time_base
                vout.options = _encoder_options(codec, crf)
                _tag_colour(vout.codec_context, video.codec_context)
                if matrix is not None:
                    vout.set_display_matrix(matrix)
                aout = {}
                for s in audio:
                    try:
                        aout[s.index] = out.add_stream_from_template(s)
                    except ValueError as e:  # e.g. AAC into WebM: the audio is copied, never re-encoded
                        raise ValueError(f"cannot copy the {s.codec_context.name} audio of {src.name} into "
                                         f"{dst.suffix}: {e}; choose an output container that holds it (.mkv "
                                         "holds any)") from None

                def mux_audio(packet):
                    packet.stream = aout[packet.stream.index]
                    out.mux(packet)

                counter, timestamps = [0], deque()
                frames = (to_display(f, turn) for f in _decoded(container, src, [video, *audio], mux_audio, counter,
                                                                 timestamps))
                meter = None
                if measure:
                    from translate.evaluation.flicker import FlickerMeter

                    meter = FlickerMeter(["raw", "output"])
                colour = {"dst_colorspace": video.codec_context.colorspace or None,
                          "dst_color_range": video.codec_context.color_range or None}
                last_pts = None
                for item in translate_frames(translator, frames, direction=direction, batch_size=batch_size,
                                             tile=tile, tile_overlap=tile_overlap, temporal=temporal,
                                             measure=measure):
                    if meter is not None:
                        meter.add(item.input, item.raw, item.output, motion=item.motion)
                    frame = av.VideoFrame.from_ndarray(to_stored(_to_rgb24(item.output), turn), format="rgb24")
                    frame = frame.reformat(format=pix_fmt, **{k: v for k, v in colour.items() if v is not None})
                    frame.pts = last_pts = timestamps.popleft()
                    frame.time_base = info.time_base
                    for packet in vout.encode(frame):
                        out.mux(packet)
                    written += 1
                    if on_frame:
                        on_frame()
                for packet in vout.encode():
                    out.mux(packet)
            _check_complete(src, info, written, last_pts)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    result = {"file": src.name, "frames": written, "codec": codec, "pix_fmt": pix_fmt,
              "fps": float(info.fps) if info.fps else None, "size": [width, height], "audio_streams": len(audio),
              "seconds": round(time.perf_counter() - start, 3)}
    if matrix is not None:
        result["rotation"] = rotation_of(matrix)
    if meter is not None:
        flicker = meter.result()
        result["warping_error"] = {"input": flicker["warping_error"]["input"],
                                   "frame_by_frame": flicker["warping_error"]["raw"],
                                   "output": flicker["warping_error"]["output"]}
        result["scene_cuts"] = flicker["cuts"]
    return result


def translate_animation(translator, src: str | Path, dst: str | Path, *, direction: str | None = None,
                        batch_size: int = 1, tile: int | str | None = None, tile_overlap: int | str | None = None,
                        temporal: float = 0.0, quality: int = 95, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                        on_start: Callable[[int], None] | None = None,
                        on_frame: Callable[[], None] | None = None) -> dict:
    """Translate every frame of an animated GIF, WebP or PNG into an animated PNG or WebP ``dst`` (by its suffix),
    with the same durations and loop count."""
    start = time.perf_counter()
    animation = read_animation(src, max_pixels)
    if on_start:
        on_start(len(animation.frames))
    outputs = []
    for item in translate_frames(translator, animation.frames, direction=direction, batch_size=batch_size,
                                 tile=tile, tile_overlap=tile_overlap, temporal=temporal):
        outputs.append(item.output)
        if on_frame:
            on_frame()
    write_animation(dst, outputs, animation.durations, loop=animation.loop, quality=quality)
    h, w = outputs[0].shape[:2]
    return {"file": Path(src).name, "frames": len(outputs), "codec": Path(dst).suffix.lower().lstrip(".") + "-anim",
            "size": [w, h], "seconds": round(time.perf_counter() - start, 3)}
