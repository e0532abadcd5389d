"""Translate every image of a folder tree into a mirrored output tree: resumable, safe to kill, bad files reported.

Decoding and encoding run in a thread pool while the model computes; images of equal size are batched. Each
output is written to a temp file beside it and renamed, so an output that exists is complete: a re-run skips
those (unless ``overwrite``) and converts the rest. A summary goes to ``OUTPUT_DIR/convert_summary.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from translate.data.scan import list_images
from translate.inference.imageio import (
    DEFAULT_MAX_PIXELS,
    FORMATS,
    TMP_PREFIX,
    BadImageError,
    ImageFile,
    output_suffix,
    read_image,
    write_image,
)
from translate.inference.translator import Translator

SUMMARY_NAME = "convert_summary.json"


@dataclass
class Job:
    src: Path
    dst: Path
    name: str  # the input's path relative to the input folder, as reported


def plan_jobs(input_dir: str | Path, output_dir: str | Path, fmt: str = "same") -> list[Job]:
    """Every image under ``input_dir`` (recursive; hidden files and other extensions ignored) and its output path
    under ``output_dir``. Inputs that would map to the same output (``a.jpg`` and ``a.png`` with ``--format
    png``) keep their whole name instead: ``a.jpg.png``, ``a.png.png``."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if fmt != "same" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: same, {', '.join(FORMATS)}")
    inside = output_dir.resolve().is_relative_to(input_dir.resolve())
    jobs = []
    for src in list_images(input_dir):
        if inside and src.resolve().is_relative_to(output_dir.resolve()):
            continue  # an output folder inside the input folder: the previous run's outputs are not inputs
        rel = src.relative_to(input_dir)
        jobs.append(Job(src, output_dir / rel.with_suffix(output_suffix(src, fmt)), rel.as_posix()))
    by_output = defaultdict(list)
    for job in jobs:
        by_output[job.dst.as_posix().lower()].append(job)  # lower case: clashes on case-insensitive file systems
    for group in by_output.values():
        if len(group) > 1:
            for job in group:
                job.dst = job.dst.with_name(job.src.name + output_suffix(job.src, fmt))
    return jobs


def remove_stale_temp_files(output_dir: Path) -> int:
    """Delete temp files that killed runs left in ``output_dir`` (those of live processes are kept)."""
    removed = 0
    for dirpath, _, filenames in os.walk(output_dir):
        for name in filenames:
            if not name.startswith(TMP_PREFIX):
                continue
            pid = name[len(TMP_PREFIX):].partition("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            Path(dirpath, name).unlink(missing_ok=True)
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
                exif=image.exif)


def convert_folder(model: str | Path | Translator, input_dir: str | Path, output_dir: str | Path, *,
                   fmt: str = "same", quality: int = 95, direction: str | None = None, batch_size: int | None = None,
                   tile: int | str = "auto", tile_overlap: int | str = "auto", whole_pixels: int | None = None,
                   device: str = "auto",
                   dtype: str = "auto", backend: str = "torch", overwrite: bool = False, fail_fast: bool = False,
                   workers: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                   progress: bool = True) -> dict:
    """Translate the images of ``input_dir`` into ``output_dir`` (same subfolders) and return the summary, which
    is also written to ``output_dir/convert_summary.json``: counts of converted, skipped (output already there)
    and failed files, and each failure's file and reason. ``fmt``: "same" (the input's format; GIF → PNG), "png",
    "jpg" or "webp". ``fail_fast``: stop at the first failure. ``model``: a model directory (loaded with ``device``,
    ``dtype``, ``backend``, ``whole_pixels``) or a ``Translator``."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    if output_dir.resolve() == input_dir.resolve():
        raise ValueError("the output folder must differ from the input folder (outputs would replace inputs)")
    jobs = plan_jobs(input_dir, output_dir, fmt)
    translator = model if isinstance(model, Translator) else Translator.from_pretrained(
        model, device=device, dtype=dtype, backend=backend, whole_pixels=whole_pixels)
    name = translator.generator_name(direction)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(output_dir)
    todo = [job for job in jobs if overwrite or not job.dst.exists()]
    failures: list[dict] = []
    converted = 0
    start = time.perf_counter()
    workers = workers or min(4, os.cpu_count() or 1)
    if batch_size is None:
        # resnet_9blocks at 256² on a 2-core CPU: 0.74 s/image at batch 1, 0.88 at batch 4 (a batch's activations
        # outgrow the cache); GPUs need batches to be busy.
        batch_size = 1 if translator.device.type == "cpu" and translator.backend == "torch" else 4
    batch_size = max(1, batch_size)

    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(todo), unit="img", disable=not progress,
                                                    dynamic_ncols=True) as bar:
        decoding: deque[tuple[Job, Future]] = deque()
        writing: deque[tuple[Job, Future]] = deque()
        groups: dict[tuple, list[tuple[Job, ImageFile]]] = defaultdict(list)
        queue = iter(todo)
        stop = False

        def fail(job: Job, reason: str) -> None:
            nonlocal stop
            failures.append({"file": job.name, "error": reason})
            bar.write(f"failed: {job.name}: {reason}", file=sys.stderr)
            bar.update(1)
            stop = stop or fail_fast

        def collect_writes(keep: int) -> None:
            # Finished writes are checked in order; at most ``keep`` stay in flight (each holds an image).
            nonlocal converted
            while writing and (len(writing) > keep or writing[0][1].done()):
                job, future = writing.popleft()
                try:
                    future.result()
                    converted += 1
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
                decoding.append((job, pool.submit(read_image, job.src, max_pixels)))
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

    elapsed = time.perf_counter() - start
    summary = {
        "model": str(translator.model_dir or ""),
        "input": str(input_dir), "output": str(output_dir), "generator": name, "format": fmt,
        "backend": translator.backend, "device": str(translator.device),
        "dtype": str(translator.dtype).removeprefix("torch."),
        "found": len(jobs), "converted": converted, "skipped": len(jobs) - len(todo), "failed": len(failures),
        "not_attempted": len(todo) - converted - len(failures), "elapsed_s": round(elapsed, 3),
        "images_per_s": float(f"{converted / elapsed:.4g}") if elapsed > 0 else None, "failures": failures,
    }
    tmp = output_dir / f"{TMP_PREFIX}{os.getpid()}-{SUMMARY_NAME}"
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, output_dir / SUMMARY_NAME)
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"converted {summary['converted']}, skipped {summary['skipped']} (already there), "
             f"failed {summary['failed']} of {summary['found']} images in {summary['elapsed_s']:.1f}s"
             + (f" ({summary['images_per_s']:.3g} images/s)" if summary["converted"] else "")]
    if summary["not_attempted"]:
        lines.append(f"stopped at the first failure: {summary['not_attempted']} images not attempted")
    lines += [f"  failed: {f['file']}: {f['error']}" for f in summary["failures"]]
    lines.append(f"summary: {Path(summary['output']) / SUMMARY_NAME}")
    return "\n".join(lines)
