"""Translate every image and video of a folder tree into a mirrored output tree: resumable, safe to kill, bad files
reported, sharded over the processes of a launcher (torchrun, accelerate launch) and over ``--shard I/N`` jobs.
A video (``translate.inference.video``) or an animated GIF/WebP/PNG is one job, translated frame by frame. Data files
(.npy / .npz, TIFFs of other channel counts or sample types: ``imageio.decode_data``) convert too; results that the
input's format cannot hold (a model's N-channel, 16-bit or float results) go to TIFF, or to ``--format npy``.

Decoding and encoding run in a thread pool while the model computes; images of equal size are batched. Each
output is written to a temp file beside it and renamed, so an output that exists is complete: a re-run skips
those (unless ``overwrite``) and converts the rest. A summary goes to ``OUTPUT_DIR/convert_summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from translate.fileio import TMP_PREFIX, write_text
from translate.imageio import (
    ANIMATED_SUFFIXES,
    ARRAY_EXTENSIONS,
    DATA_FORMATS,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    OUTPUT_FORMATS,
    VIDEO_EXTENSIONS,
    BadImageError,
    ImageFile,
    decode_data,
    frame_count,
    holds,
    output_suffix,
    plural,
    probe_data,
    read_image_file,
    write_image,
)
from translate.inference.translator import Translator, Units
from translate.networks.description import ModelDescription, describe

SUMMARY_NAME = "convert_summary.json"
_COUNTS = ("found", "converted", "skipped", "failed", "not_attempted")
# The last collective waits for the slowest process, which may be hours behind on a large, uneven folder. A
# process that dies ends the whole job through the launcher, so this limit only matters for a hung one.
_COLLECTIVE_TIMEOUT = timedelta(days=7)


class NoImagesError(FileNotFoundError):
    """An input folder without a single image or video file."""


class RanksDisagreeError(ValueError):
    """The processes of one launch listed different input files; every process raises it, so it is shown once."""


@dataclass
class Job:
    src: Path
    dst: Path
    name: str  # the input's path relative to the input folder, as reported
    data: bool = False  # the model's results are data (in a TIFF: written by imageio.encode_data)


@dataclass(frozen=True)
class Output:
    """What a model's results are, for choosing their files: ``channels`` and sample type (``dtype``; None: the
    input's, as image models do) and whether they are ``data`` (in the data's units: ``Units.data_out``). The
    default, nothing known, plans files as for images."""

    channels: int | None = None
    dtype: str | None = None
    data: bool = False

    def __str__(self) -> str:
        return f"{self.channels}-channel {self.dtype or ''}".rstrip()


def model_output(model: str | Path | ModelDescription, direction: str | None = None) -> Output:
    """The ``Output`` of the generator for ``direction`` of a model directory (or its description)."""
    description = describe(model)
    if description.behaviour.takes != "image":  # refused when loaded, with the command that runs it
        return Output()
    name = description.generator(direction)
    units = Units(*description.units(name))
    return Output(description.generators[name].get("output_nc"), units.target_dtype,
                  units.data_out or units.target_dtype not in (None, "uint8", "uint16"))


def _identity(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def list_inputs(input_dir: Path, output_dir: Path) -> tuple[list[Path], Counter]:
    """Every image and video under ``input_dir`` (recursive, symlinks followed, hidden files and folders ignored),
    sorted by relative path, and how many other files were left out, by extension. An output folder inside the
    input folder is not walked: the previous run's outputs are not inputs."""
    # The output folder counts as walked already; a folder reached twice through symlinks is walked once.
    seen = {_identity(output_dir)} if output_dir.is_dir() else set()
    images, left_out = [], Counter()
    for dirpath, dirnames, filenames in os.walk(input_dir, followlinks=True):
        if _identity(dirpath) in seen:
            dirnames[:] = []
            continue
        seen.add(_identity(dirpath))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS + ARRAY_EXTENSIONS + VIDEO_EXTENSIONS):
                images.append(Path(dirpath, name))
            else:
                left_out[Path(name).suffix.lower()] += 1
    # Sorting relative paths as strings gives every process, file system and platform the same order.
    return sorted(images, key=lambda p: p.relative_to(input_dir).as_posix()), left_out


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _suffix(src: Path, fmt: str, output: Output = Output()) -> str:
    # A video keeps its container: --format is about images.
    return src.suffix if is_video(src) else output_suffix(src, fmt, output.channels, output.dtype)


FORMATS = ("same", *OUTPUT_FORMATS, *DATA_FORMATS)
OUTPUT_SUFFIXES = (*(v[1] for v in OUTPUT_FORMATS.values()), ".bmp", ".tif", ".tiff", *ARRAY_EXTENSIONS)


def check_format(fmt: str, output: Output = Output()) -> None:
    """A ValueError for an unknown ``--format``, or one that cannot hold the model's results (``output``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: {', '.join(FORMATS)}")
    if fmt in OUTPUT_FORMATS and output.channels and not holds(OUTPUT_FORMATS[fmt][1], output.channels, output.dtype):
        raise ValueError(f"--format {fmt} cannot hold this model's {output} results: use --format tiff or npy "
                         f"(or same: TIFF where the input's format cannot hold them)")


def plan_file(src: str | Path, dst: str | Path, fmt: str = "same", output: Output = Output()) -> Job:
    """One input file and its output: ``dst``, or a file in ``dst`` when that is a folder (named as in a folder's
    conversion). A video's output must be a video, an image's an image (or an array) that holds the model's
    results (``output``)."""
    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        dst = dst / src.with_suffix(_suffix(src, fmt, output)).name
    if is_video(src) and not is_video(dst):
        raise ValueError(f"the output of a video must be a video file ({', '.join(VIDEO_EXTENSIONS)}), not {dst}")
    if not is_video(src) and dst.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"the output of an image must be an image file (.png, .jpg, .webp, .bmp, .tif) or an array "
                         f"(.npy, .npz), not {dst}")
    if not is_video(src) and output.channels and not holds(dst.suffix, output.channels, output.dtype):
        raise ValueError(f"{dst}: a {dst.suffix} file cannot hold this model's {output} results: name a .tif or "
                         f".npy file")
    if dst.resolve() == src.resolve():
        raise ValueError("the output file must differ from the input file")
    return Job(src, dst, src.name, output.data)


def plan_jobs(input_dir: str | Path, output_dir: str | Path, fmt: str = "same",
              output: Output = Output()) -> tuple[list[Job], Counter]:
    """Every image and video under ``input_dir`` and its output path under ``output_dir`` (see ``list_inputs``), and
    the files left out for their extension. Inputs that would map to the same output (``a.jpg`` and ``a.png`` with
    ``--format png``) keep their whole name instead: ``a.jpg.png``, ``a.png.png``. Videos keep their container.
    ``output``: the model's results; with ``fmt`` "same" they go to TIFF where the input's format cannot hold them."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_format(fmt, output)
    images, left_out = list_inputs(input_dir, output_dir)
    jobs = []
    for src in images:
        rel = src.relative_to(input_dir)
        jobs.append(Job(src, output_dir / rel.with_suffix(_suffix(src, fmt, output)), rel.as_posix(), output.data))
    by_output = defaultdict(list)
    for job in jobs:
        by_output[job.dst.as_posix().lower()].append(job)  # lower case: clashes on case-insensitive file systems
    for group in by_output.values():
        if len(group) > 1:
            for job in group:
                job.dst = job.dst.with_name(job.src.name + _suffix(job.src, fmt, output))
    return jobs, left_out


def jobs_digest(jobs: list[Job], output_dir: Path) -> str:
    """A hash of the job list (inputs and outputs, in order): equal on every process and shard of one folder."""
    text = "\n".join(f"{job.name}\t{job.dst.relative_to(output_dir).as_posix()}" for job in jobs)
    return hashlib.sha256(text.encode()).hexdigest()


LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")


def model_digest(translator: Translator) -> str | None:
    """A hash of the model's files (config.json, then each generator's weights): the same model on every shard,
    wherever its folder is mounted. None for a Translator built in memory."""
    model_dir = translator.model_dir
    if model_dir is None:
        return None
    digest = hashlib.sha256()
    for name in ["config.json", *(f"{g}.safetensors" for g in sorted(translator.specs))]:
        path = model_dir / name
        if path.is_file():
            digest.update(f"{name}\0".encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def job_options(translator: Translator, direction: str | None, jobs: list[Job], fmt: str, quality: int,
                video: dict | None = None) -> dict:
    """What, besides the input files, decides a job's outputs: the model's files, the generator, the output format,
    (for lossy outputs) the quality and (for videos and animations) ``video``: codec, CRF and temporal strength.
    Shards of one folder must agree on all of them; device, dtype, backend and tiling may differ per machine."""
    options = {"model_sha256": model_digest(translator), "generator": translator.generator_name(direction),
               "format": fmt}
    if any(job.dst.suffix.lower() in LOSSY_SUFFIXES for job in jobs):
        options["quality"] = quality
    if video and any(is_video(job.src) or job.src.suffix.lower() in ANIMATED_SUFFIXES for job in jobs):
        options["video"] = video
    return options


def launcher_env() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, processes on this node) as torchrun and ``accelerate launch`` set them."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", 1))
    return int(env.get("RANK", 0)), world, int(env.get("LOCAL_RANK", 0)), int(env.get("LOCAL_WORLD_SIZE", world))


@contextmanager
def _process_group(world: int):
    # gloo: a few small Python objects travel (hashes, the list of outputs to make, the results), on CPUs and GPUs.
    if world == 1 or dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo", timeout=_COLLECTIVE_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _all_gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    gathered = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def _from_rank0(obj, world: int):
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_same_inputs(digest: str, count: int, world: int, input_dir: Path) -> None:
    """Raise RanksDisagreeError (on every process) unless every process listed the same files."""
    listed = _all_gather((digest, count), world)
    if len(set(listed)) > 1:
        seen = ", ".join(f"rank {r} {n} ({d[:8]})" for r, (d, n) in enumerate(listed))
        raise RanksDisagreeError(f"the processes listed different files under {input_dir} (images and hash: {seen}): "
                                 "every process must see the same folder; did files change while it started?")


def remove_stale_temp_files(jobs: list[Job], extra: list[Path] = ()) -> int:
    """Delete the temp files that killed runs left for these outputs (those of live processes are kept). Only
    this run's outputs: other shards may be writing into the same folder from other machines."""
    targets = defaultdict(set)
    for path in [job.dst for job in jobs] + list(extra):
        targets[path.parent].add(path.name)
    removed = 0
    for folder, names in targets.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if not entry.name.startswith(TMP_PREFIX):
                continue
            # translate.fileio.temp_path names them PREFIX + pid-token-name, the name's end only when it is long.
            pid, _, rest = entry.name[len(TMP_PREFIX):].partition("-")
            tail = rest.partition("-")[2]
            if not tail or not any(name.endswith(tail) for name in names):
                continue
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(job: Job, pixels: torch.Tensor, image: ImageFile, quality: int) -> None:
    job.dst.parent.mkdir(parents=True, exist_ok=True)
    write_image(job.dst, pixels.permute(1, 2, 0).numpy(), quality=quality, icc_profile=image.icc_profile,
                exif=image.exif, data=job.data)


def is_data_file(path: Path, array_layout: str = "auto") -> bool:
    """Whether ``path`` is read as data (``decode_data``: every channel, the sample type kept) rather than as an image
    (``read_image_file``: ICC profile, EXIF and alpha kept): arrays, and TIFFs of several pages, more than 4
    channels, samples other than 8 and 16 bits, or a photometric interpretation that is not gray or RGB."""
    suffix = path.suffix.lower()
    if suffix in ARRAY_EXTENSIONS:
        return True
    if suffix not in (".tif", ".tiff"):
        return False
    try:
        info = probe_data(path, max_pixels=None, array_layout=array_layout)
    except BadImageError:  # reading it as an image says what is wrong
        return False
    return info.kind == "data" or info.channels > 4 or info.dtype not in ("uint8", "uint16")


def _read(job: Job, max_pixels: int | None, array_layout: str = "auto") -> ImageFile | None:
    """The image of ``job``, or None for an animated file whose output animates (PNG, WebP): a sequence job.
    Data files (``is_data_file``) give their (H, W, C) samples without metadata."""
    if (job.src.suffix.lower() in ANIMATED_SUFFIXES and job.dst.suffix.lower() in (".png", ".webp")
            and frame_count(job.src) > 1):
        return None
    if is_data_file(job.src, array_layout):
        return ImageFile(decode_data(job.src, max_pixels=max_pixels, array_layout=array_layout, warn=True)[0])
    return read_image_file(job.src, max_pixels)


def _write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _rate(converted: int, elapsed: float) -> float | None:
    return float(f"{converted / elapsed:.4g}") if elapsed > 0 else None


def _add_up(parts: list[dict]) -> dict:
    """Counts summed, the longest time, failures in file order: processes into a shard, shards into a folder."""
    counts = {key: sum(p[key] for p in parts) for key in _COUNTS if key in parts[0]}
    elapsed = max(p["elapsed_s"] for p in parts)
    frames = sum(p.get("frames", 0) for p in parts)
    if any("videos_found" in p for p in parts):  # shard summaries (processes' results do not count them)
        counts["videos_found"] = sum(p.get("videos_found", 0) for p in parts)
    return {**counts, "elapsed_s": elapsed, "images_per_s": _rate(counts["converted"], elapsed),
            "frames": frames, "frames_per_s": _rate(frames, elapsed),
            "device": ", ".join(sorted({d for p in parts for d in p["device"].split(", ")})),
            "failures": sorted((f for p in parts for f in p["failures"]), key=lambda f: f["file"]),
            "videos": sorted((v for p in parts for v in p.get("videos", [])), key=lambda v: v["file"])}


def shard_summary_name(index: int, count: int) -> str:
    return f"convert_summary.shard-{index}-of-{count}.json"


def _other_job(part: dict, digest: str, options: dict) -> str | None:
    """Why a shard summary belongs to another job than (``digest``, ``options``), or None when it is this job's."""
    if part.get("images_sha256") != digest:
        return ("it listed other files (the input folder or --format changed between shards): run that shard "
                "again; outputs that exist are kept")
    theirs = part.get("job")
    if not isinstance(theirs, dict):
        return "it does not record the job's options (written by an older translate?): run that shard again"
    differ = [f"{key} {theirs.get(key)!r}, not {value!r}" for key, value in options.items()
              if theirs.get(key) != value] + [f"{key} {theirs[key]!r}" for key in theirs if key not in options]
    if differ:
        return (f"it was converted with other options ({'; '.join(differ)}): run that shard again with this job's "
                "options and --overwrite (its outputs were made by the other job)")
    return None


def merge_shards(output_dir: Path, count: int, digest: str, options: dict) -> tuple[list[int], dict[int, str]]:
    """Write ``convert_summary.json`` from the ``count`` shard summaries of this job (same input files, same options)
    if they are all there (the last shard to finish does it); return the shards still missing, and why each shard
    whose summary belongs to another job is not counted. A merged summary of another job is removed: it would
    report this folder as done."""
    parts, missing, stale = [], [], {}
    for index in range(count):
        try:
            part = json.loads((output_dir / shard_summary_name(index, count)).read_text())
        except (OSError, ValueError):  # not written yet (or not by us): that shard counts as not finished
            part = None
        reason = _other_job(part, digest, options) if isinstance(part, dict) else "no summary yet"
        if reason is None:
            parts.append(part)
        else:
            missing.append(index)
            if isinstance(part, dict):
                stale[index] = reason
    merged_path = output_dir / SUMMARY_NAME
    if not missing:
        merged = {**parts[0], **_add_up(parts), "shard": None,
                  "shards": [{key: p[key] for key in ("shard", *_COUNTS, "elapsed_s", "device")} for p in parts]}
        del merged["processes"]
        _write_json(merged_path, merged)
    else:
        try:
            old = json.loads(merged_path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and _other_job(old, digest, options) is not None:
            merged_path.unlink(missing_ok=True)
    return missing, stale


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _load_in_turn(model: str | Path, device: str, dtype: str, backend: str, whole_pixels: int | None,
                  local_rank: int, world: int, tile: int | str, tile_overlap: int | str) -> Translator:
    """Load the model, first in each machine's local rank 0: "auto" dtype and backend are measured there once and
    cached, and the other processes read that choice instead of timing each other's load."""
    def load() -> Translator:
        # The tile settings too, so that one the model cannot use is refused once, before any file.
        return Translator.from_pretrained(model, device=device, dtype=dtype, backend=backend, tile=tile,
                                          tile_overlap=tile_overlap, whole_pixels=whole_pixels)

    translator = load() if local_rank == 0 else None
    if world > 1:
        dist.barrier()
    return load() if translator is None else translator


def _rank_device(device: str, local_rank: int) -> str:
    # One GPU per process of a node; with more processes than GPUs, they share them in turn.
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device


def convert_folder(model: str | Path | Translator, input_dir: str | Path, output_dir: str | Path, *,
                   fmt: str = "same", quality: int = 95, direction: str | None = None, batch_size: int | None = None,
                   tile: int | str = "auto", tile_overlap: int | str = "auto", whole_pixels: int | None = None,
                   device: str = "auto",
                   dtype: str = "auto", backend: str = "torch", overwrite: bool = False, fail_fast: bool = False,
                   workers: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                   shard: tuple[int, int] | None = None, progress: bool = True, video_codec: str | None = None,
                   crf: int | None = None, temporal: float = 0.0) -> dict:
    """Translate the images and videos of ``input_dir`` into ``output_dir`` (same subfolders) and return the
    summary, which is also written to ``output_dir/convert_summary.json``: counts of converted, skipped (output
    already there), failed and left-out files (other extensions), and each failure's file and reason. ``fmt``:
    "same" (the input's format; GIF → PNG; TIFF where it cannot hold the model's results: N channels, float or
    16-bit data), "png", "jpg", "webp", "tiff" or "npy" (images only: videos keep their container). Data files
    (.npy / .npz, TIFFs of other channel counts or sample types) are read with the model's ``data.array_layout``.
    ``fail_fast``: stop at the first failure (of this process). ``input_dir`` may be one file, ``output_dir`` then
    the output file (or a folder for it); no summary file is written then.

    Videos (.mp4 .mov .mkv .webm .avi) and animated GIF/WebP/PNG files are translated frame by frame
    (``translate.inference.video``): ``video_codec`` (default by the extension: libx264, or mpeg4 without it; VP9
    for .webm), ``crf`` (its quality setting), ``temporal`` (flicker filter strength in [0, 1), 0: off; the summary
    then has each video's warping error before and after). The summary lists each one under ``videos``.
    ``model``: a model directory (loaded with ``device``, ``dtype``, ``backend``, ``whole_pixels``) or a
    ``Translator``.

    Under a launcher (``WORLD_SIZE`` > 1: torchrun, ``accelerate launch``), each process converts every
    ``WORLD_SIZE``-th of the outputs still missing, on its own GPU, and every process returns the merged summary
    (rank 0 writes it). ``shard=(i, n)``: only every n-th image from the i-th, for jobs split by hand; the summary
    goes to ``convert_summary.shard-i-of-n.json`` and the last shard to finish merges all parts into
    ``convert_summary.json`` (the returned summary's ``pending_shards`` lists those not finished yet). Only parts
    of this job count: the same input files, model, generator, format and quality (``job`` in each summary); a part
    of another job is listed in ``stale_shards`` with the reason, as pending.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    index, count = shard or (0, 1)
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected I/N with 0 <= I < N")
    if not 0 <= temporal < 1:
        raise ValueError(f"temporal strength {temporal}: expected 0 <= strength < 1")
    single = input_dir.is_file()
    if not single and not input_dir.is_dir():
        raise FileNotFoundError(f"input {input_dir} does not exist")
    # What the model's results are decides their files (a format that holds them), before any output exists.
    description = model.description if isinstance(model, Translator) else describe(model)
    output = model_output(description, direction)
    array_layout = description.config.get("config", {}).get("data", {}).get("array_layout", "auto")
    if single:
        check_format(fmt, output)
        job = plan_file(input_dir, output_dir, fmt, output)
        jobs, left_out, output_dir = [job], Counter(), job.dst.parent
    elif output_dir.resolve() == input_dir.resolve():
        raise ValueError("the output folder must differ from the input folder (outputs would replace inputs)")
    else:
        jobs, left_out = plan_jobs(input_dir, output_dir, fmt, output)
    if not jobs:
        others = f"; left out: {_describe_left_out(left_out)}" if left_out else ""
        raise NoImagesError(f"no images found under {input_dir} (looked for {', '.join(IMAGE_EXTENSIONS)}, arrays "
                            f"{', '.join(ARRAY_EXTENSIONS)} and videos "
                            f"{', '.join(VIDEO_EXTENSIONS)}; hidden files are ignored){others}")
    digest = jobs_digest(jobs, output_dir)
    rank, world, local_rank, local_world = launcher_env()
    summary_path = output_dir / (shard_summary_name(index, count) if shard else SUMMARY_NAME)
    video = {"codec": video_codec, "crf": crf, "temporal": temporal}
    with _process_group(world):
        check_same_inputs(digest, len(jobs), world, input_dir)
        # The model and its generator before anything is written: a command that fails on them (weights missing,
        # a noise model, no such direction) leaves no output folder behind.
        if isinstance(model, Translator):
            translator = model
        else:
            translator = _load_in_turn(model, _rank_device(device, local_rank) if world > 1 else device, dtype,
                                       backend, whole_pixels, local_rank, world, tile, tile_overlap)
        translator.generator_name(direction)
        jobs_all, jobs = jobs, jobs[index::count]
        todo = None
        if rank == 0:  # before any process writes: what is there and which temp files are stale
            output_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(jobs, [] if single else [summary_path])
            todo = [i for i, job in enumerate(jobs) if overwrite or not job.dst.exists()]
        todo = _from_rank0(todo, world)
        if world > 1 and translator.device.type == "cpu":
            # Launchers start each process with 1 thread; the machine's cores shared out is faster.
            torch.set_num_threads(max(1, _cores() // local_world))
        label = []
        if shard:
            label.append(f"shard {index}/{count}")
        if world > 1:
            label.append(f"rank 0 of {world}, {len(todo)} in all")
        result = _convert_jobs(translator, direction, [jobs[i] for i in todo[rank::world]], quality=quality,
                               batch_size=batch_size, tile=tile, tile_overlap=tile_overlap, fail_fast=fail_fast,
                               workers=workers, max_pixels=max_pixels, progress=progress and rank == 0,
                               label=", ".join(label), video=video, array_layout=array_layout)
        results = _all_gather({"rank": rank, **result}, world)
        options = job_options(translator, direction, jobs_all, fmt, quality, video)
        summary = {
            "model": str(translator.model_dir or ""), "input": str(input_dir), "output": str(output_dir),
            "generator": translator.generator_name(direction), "format": fmt, "backend": translator.backend,
            "dtype": str(translator.dtype).removeprefix("torch."), "shard": f"{index}/{count}" if shard else None,
            "images_sha256": digest, "job": options, "found": len(jobs), "skipped": len(jobs) - len(todo),
            "videos_found": sum(is_video(job.src) for job in jobs),
            "left_out": sum(left_out.values()), "left_out_by_extension": dict(sorted(left_out.items())),
            **_add_up(results), "processes": [{k: v for k, v in r.items() if k != "failures"} for r in results],
        }
        pending = None
        if single:
            summary["output_file"] = str(jobs_all[0].dst)
        if rank == 0 and not single:
            _write_json(summary_path, summary)
            pending = merge_shards(output_dir, count, digest, options) if shard else None
        if shard:
            summary["pending_shards"], summary["stale_shards"] = _from_rank0(pending, world)
    return summary


def _convert_jobs(translator: Translator, direction: str | None, jobs: list[Job], *, quality: int,
                  batch_size: int | None, tile: int | str, tile_overlap: int | str, fail_fast: bool,
                  workers: int | None, max_pixels: int | None, progress: bool, label: str,
                  video: dict | None = None, array_layout: str = "auto") -> dict:
    """Convert ``jobs`` with this process's ``translator``; return its counts, time and failures. Images run
    first, through a thread pool and in batches; then videos and animations, one at a time, each frame through the
    same batching."""
    name = translator.generator_name(direction)
    video = video or {}
    failures: list[dict] = []
    converted = frames = 0
    videos: list[dict] = []
    sequences = [job for job in jobs if is_video(job.src)]
    jobs = [job for job in jobs if not is_video(job.src)]
    start = time.perf_counter()
    workers = workers or min(4, os.cpu_count() or 1)
    if batch_size is None:
        # resnet_9blocks at 256² on a 2-core CPU: 0.74 s/image at batch 1, 0.88 at batch 4 (a batch's activations
        # outgrow the cache); GPUs need batches to be busy.
        batch_size = 1 if translator.device.type == "cpu" and translator.backend == "torch" else 4
    batch_size = max(1, batch_size)

    # The bar counts frames: an image is one, a video its frames (added when the video is opened).
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(jobs) + len(sequences),
                                                    unit="frame" if sequences else "img", disable=not progress,
                                                    desc=label or None, dynamic_ncols=True) as bar:
        decoding: deque[tuple[Job, Future]] = deque()
        writing: deque[tuple[Job, Future]] = deque()
        groups: dict[tuple, list[tuple[Job, ImageFile]]] = defaultdict(list)
        queue = iter(jobs)
        stop = False

        def fail(job: Job, reason: str) -> None:
            nonlocal stop
            failures.append({"file": job.name, "error": reason})
            bar.write(f"failed: {job.name}: {reason}", file=sys.stderr)
            bar.update(1)
            stop = stop or fail_fast

        def collect_writes(keep: int) -> None:
            # Finished writes are checked in order; at most ``keep`` stay in flight (each holds an image).
            nonlocal converted, frames
            while writing and (len(writing) > keep or writing[0][1].done()):
                job, future = writing.popleft()
                try:
                    future.result()
                    converted += 1
                    frames += 1
                    bar.update(1)
                except Exception as e:
                    fail(job, f"cannot write {job.dst}: {e}")

        def run(items: list[tuple[Job, ImageFile]]) -> None:
            pixels = [torch.from_numpy(image.pixels).permute(2, 0, 1) for _, image in items]
            try:
                outputs = translator.translate_pixels(pixels, name, batch_size=batch_size, tile=tile,
                                                      tile_overlap=tile_overlap)
            except Exception as e:  # e.g. a channel count the generator cannot take, or out of memory
                for job, _ in items:
                    fail(job, f"cannot translate: {type(e).__name__}: {e}")
                return
            for (job, image), output in zip(items, outputs):
                writing.append((job, pool.submit(_write, job, output, image, quality)))
            collect_writes(keep=2 * workers)

        while not stop:
            while len(decoding) < max(2 * workers, batch_size):
                job = next(queue, None)
                if job is None:
                    break
                decoding.append((job, pool.submit(_read, job, max_pixels, array_layout)))
            if not decoding:
                break
            job, future = decoding.popleft()
            try:
                image = future.result()
            except BadImageError as e:
                fail(job, e.reason or str(e))
                continue
            except Exception as e:
                fail(job, f"cannot read: {type(e).__name__}: {e}")
                continue
            if image is None:  # animated: with the videos
                sequences.append(job)
                continue
            key = (image.pixels.shape, image.pixels.dtype)
            groups[key].append((job, image))
            if len(groups[key]) >= batch_size:
                run(groups.pop(key))
            elif sum(len(g) for g in groups.values()) >= 2 * batch_size + workers:
                run(groups.pop(max(groups, key=lambda k: len(groups[k]))))  # many sizes: do not hold them all
            collect_writes(keep=2 * workers)
        while groups and not stop:  # the last images of each size
            run(groups.pop(next(iter(groups))))
        for _, future in decoding:
            future.cancel()
        collect_writes(keep=0)
        for job in sequences:
            if stop:
                break
            result = _convert_sequence(translator, direction, job, bar, batch_size=batch_size, tile=tile,
                                       tile_overlap=tile_overlap, quality=quality, max_pixels=max_pixels, **video)
            if "error" in result:
                fail(job, result["error"])
            else:
                converted += 1
                frames += result["frames"]
                videos.append({**result, "file": job.name})

    elapsed = time.perf_counter() - start
    assigned = len(jobs) + len([job for job in sequences if is_video(job.src)])
    return {"device": str(translator.device), "assigned": assigned, "converted": converted, "failed": len(failures),
            "not_attempted": assigned - converted - len(failures), "elapsed_s": round(elapsed, 3),
            "frames": frames, "failures": failures, "videos": videos}


def _convert_sequence(translator: Translator, direction: str | None, job: Job, bar, *, codec: str | None = None,
                      crf: int | None = None, temporal: float = 0.0, quality: int, max_pixels: int | None,
                      **options) -> dict:
    """Translate one video or animated image; the result of ``translate_video`` / ``translate_animation``, or
    ``{"error": reason}`` (naming the frame for a broken video). ``bar`` counts its frames as they are written."""
    from translate.inference.video import translate_animation, translate_video

    counted = {"expected": 1, "done": 0}  # the job's one unit in the bar's total, until its frame count is known

    def start(info) -> None:
        n = info if isinstance(info, int) else info.frames
        if n:
            bar.total += n - counted["expected"]
            counted["expected"] = n
            bar.refresh()

    def frame() -> None:
        counted["done"] += 1
        if counted["done"] > counted["expected"]:
            bar.total += 1
        bar.update(1)

    job.dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        if is_video(job.src):
            result = translate_video(translator, job.src, job.dst, direction=direction, codec=codec, crf=crf,
                                     temporal=temporal, max_pixels=max_pixels, on_start=start, on_frame=frame,
                                     **options)
        else:
            result = translate_animation(translator, job.src, job.dst, direction=direction, temporal=temporal,
                                         quality=quality, max_pixels=max_pixels, on_start=start, on_frame=frame,
                                         **options)
        error = None
    except BadImageError as e:  # BadVideoError too: the reason names the frame
        error = e.reason or str(e)
    except Exception as e:
        error = f"cannot convert: {type(e).__name__}: {e}"
    # The bar's total ends up as the frames written, plus one for a failed job (fail() counts it).
    left = max(0, counted["expected"] - counted["done"])
    if error is None:
        bar.total -= left
        bar.refresh()
        return result
    bar.total -= left + counted["done"] - 1
    bar.n -= counted["done"]
    bar.refresh()
    return {"error": error}


def _describe_left_out(left_out: dict[str, int]) -> str:
    return ", ".join(f"{n} {ext or '(no extension)'}" for ext, n in sorted(left_out.items(), key=lambda i: -i[1]))


def describe_video(v: dict) -> str:
    """One line for a converted video or animation of a summary."""
    parts = [plural(v["frames"], "frame"), f"{v['codec']}" + (f" {v['pix_fmt']}" if v.get("pix_fmt") else ""),
             "×".join(map(str, v["size"]))]
    if v.get("fps"):
        parts.append(f"{v['fps']:.4g} fps")
    if v.get("audio_streams"):
        parts.append(f"{plural(v['audio_streams'], 'audio stream')} copied")
    error = v.get("warping_error")
    if error:
        f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
        parts.append(f"warping error: input {f(error['input'])}, frame by frame {f(error['frame_by_frame'])}, "
                     f"written {f(error['output'])}; {plural(v.get('scene_cuts', 0), 'scene cut')}")
    return f"  {v['file']}: " + ", ".join(parts)


def format_summary(summary: dict) -> str:
    noun = "file" if summary.get("videos_found") else "image"
    lines = [f"converted {summary['converted']}, skipped {summary['skipped']} (already there), "
             f"failed {summary['failed']} of {plural(summary['found'], noun)} in {summary['elapsed_s']:.1f}s"
             + (f" ({summary['images_per_s']:.3g} images/s)" if summary["converted"] and not summary.get("videos")
                else f" ({summary['frames']} frames, {summary['frames_per_s']:.3g} frames/s)"
                if summary["converted"] else "")]
    if summary["not_attempted"]:
        lines.append(f"stopped at the first failure: {plural(summary['not_attempted'], 'image')} not attempted")
    if summary["left_out"]:
        lines.append(f"left out {plural(summary['left_out'], 'file')} for their extension: "
                     f"{_describe_left_out(summary['left_out_by_extension'])}")
    if len(summary["processes"]) > 1:
        lines.append(f"{len(summary['processes'])} processes: " + ", ".join(
            f"rank {p['rank']} ({p['device']}) {p['converted']} in {p['elapsed_s']:.1f}s"
            for p in summary["processes"]))
    lines += [f"  failed: {f['file']}: {f['error']}" for f in summary["failures"]]
    lines += [describe_video(v) for v in summary.get("videos", [])]
    output = Path(summary["output"])
    if summary.get("output_file"):
        lines.append(f"output: {summary['output_file']}")
    elif summary["shard"]:
        index, count = map(int, summary["shard"].split("/"))
        lines.append(f"summary of shard {summary['shard']}: {output / shard_summary_name(index, count)}")
        pending = summary.get("pending_shards")
        stale = summary.get("stale_shards") or {}
        lines += [f"shard {i}/{count}: its summary is of another job, not counted: {why}" for i, why in stale.items()]
        lines.append(f"all {count} shards done, merged summary: {output / SUMMARY_NAME}" if not pending else
                     f"shards not finished yet: {', '.join(map(str, pending))} (the last shard to finish merges "
                     f"every shard's summary into {output / SUMMARY_NAME})")
    else:
        lines.append(f"summary: {output / SUMMARY_NAME}")
    return "\n".join(lines)
