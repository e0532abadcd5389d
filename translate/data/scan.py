"""Find the data files of a dataset folder and check them all before training starts: decoded in full, in parallel,
with what was verified remembered in a small cache (an unchanged folder then costs a stat per file), or headers only.
The scan also records what each file holds (channels, sample type: ``DataInfo``), for the channel check of each model
side (``check_channels``), and computes the normalisation statistics of each side once (``fit_normalization``),
cached beside the verified files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path

import numpy as np
import PIL
from tqdm import tqdm

from translate.data.builtin import cache_dir
from translate.fileio import write_text
from translate.imageio import (
    DATA_EXTENSIONS,
    BadImageError,
    DataInfo,
    channel_problem,
    conform,
    decode_data,
    probe_data,
)
from translate.normalization import Stats, fit

log = logging.getLogger(__name__)
_MAX_LISTED = 50
# Entries written under another format or decoder version are decoded again: a new decoder may judge files otherwise.
_CACHE_VERSION = f"2 Pillow {PIL.__version__} tifffile {version('tifffile')}"
# percentile: at most this many values of a side are kept to take the percentiles of (exact below it; above it every
# file gives an evenly strided sample of its pixels).
PERCENTILE_VALUES = 1 << 24
_KEPT_STATS = 16  # normalisation results kept per cache file (the latest)
_MIN_FILES_PER_WORKER = 16  # below this a process pool costs more than it saves
_PROGRESS_DELAY = 2.0  # seconds before the progress bar appears: small folders stay quiet


class DatasetError(ValueError):
    """A dataset that cannot be used as it is: the message names the folder or the offending files."""

    def __init__(self, message: str, bad_files: dict[Path, str] | None = None):
        super().__init__(message)
        self.bad_files = bad_files or {}  # every bad file and its reason, also those the message leaves out


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder (or split) that does not exist; callers may catch it for optional splits such as val."""


def list_images(folder: str | Path) -> list[Path]:
    """Every data file (image or array) under ``folder`` (recursively), sorted by path; hidden files and folders are
    ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"dataset folder not found: {folder}")
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:  # a symlink back to a folder already walked: os.walk would loop forever
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prunes the walk
        found += [
            Path(dirpath, f) for f in filenames if not f.startswith(".") and f.lower().endswith(DATA_EXTENSIONS)
        ]
    # Sorting relative paths as strings makes the order the same on every file system and platform.
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def find_images(folder: str | Path, layout: str, max_size: int | None = None) -> list[Path]:
    """``list_images`` that raises a DatasetError naming ``folder`` and the expected ``layout`` when none is found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"dataset folder not found: {folder}\nexpected layout: {layout}")
    paths = list_images(folder)
    if not paths:
        raise DatasetError(
            f"no images ({', '.join(e[1:] for e in DATA_EXTENSIONS)}) found under {folder}\nexpected layout: {layout}"
        )
    return paths[:max_size] if max_size is not None else paths


# -- full decoding, cached ------------------------------------------------------------------------------------
def cache_file(paths: list[str]) -> Path:
    """The scan cache of a dataset: one small JSON file per folder, ``<cache dir>/verified/<hash>.json``."""
    root = os.path.commonpath(paths)
    return cache_dir() / "verified" / f"{hashlib.sha256(root.encode()).hexdigest()[:24]}.json"


def _load_cache(path: Path) -> dict:
    """The whole cache file: {"files": {absolute path: [size, mtime_ns, pixels, DataInfo, array layout]} of files that
    decoded, "stats": {key: normalisation}}; empty for a missing, stale or broken cache."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not (isinstance(data, dict) and data.get("version") == _CACHE_VERSION):
        return {}
    return {part: data[part] for part in ("files", "stats") if isinstance(data.get(part), dict)}


def _read_cache(path: Path) -> dict[str, list]:
    return _load_cache(path).get("files", {})


def _write_cache(path: Path, files: dict[str, list] | None = None, stats: dict | None = None) -> None:
    """Atomically (temp file, then rename): a run killed mid-write, or two ranks writing at once, leave a whole file.
    The part not given (``files`` or ``stats``) is kept as it is. The cache only saves time, so a cache directory
    that cannot be written is a warning, not an error."""
    try:
        kept = _load_cache(path)
        data = {"version": _CACHE_VERSION, "files": kept.get("files", {}) if files is None else files,
                "stats": kept.get("stats", {}) if stats is None else stats}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(data))
    except OSError as e:
        log.warning("cannot write the dataset scan cache %s (%s): the next start decodes every file again", path, e)


def _still_verified(entry, st: os.stat_result, max_pixels: int | None, array_layout: str) -> bool:
    return (isinstance(entry, list) and len(entry) == 5 and entry[:2] == [st.st_size, st.st_mtime_ns]
            and isinstance(entry[2], int) and (max_pixels is None or entry[2] <= max_pixels)
            and isinstance(entry[3], list) and entry[4] == array_layout)


def _decode(path: str, max_pixels: int | None, array_layout: str = "auto") -> tuple[int | None, list | None,
                                                                                     str | None]:
    """(pixel count, DataInfo as JSON, None) for a file that decodes in full, (None, None, reason) for one that does
    not. Float data must be finite; its range is recorded (``data.normalize=auto`` takes floats to be in [0, 1])."""
    try:
        # warn=False: "has N frames" is said when training reads the file, once is enough.
        pixels, info = decode_data(path, max_pixels=max_pixels, array_layout=array_layout, warn=False)
    except BadImageError as e:
        return None, None, e.reason
    if pixels.dtype.kind == "f":
        if not np.isfinite(pixels).all():
            return None, None, "holds NaN or infinite values (replace them, e.g. with numpy.nan_to_num)"
        info = DataInfo(info.channels, info.alpha, info.kind, info.dtype, float(pixels.min()), float(pixels.max()))
    return pixels.shape[0] * pixels.shape[1], info.to_json(), None


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the main process stops the pool, without a traceback from each worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_all(fn, arguments: list[tuple], num_workers: int, progress: bool, desc: str):
    """Yield ``fn(*args)`` of every tuple in order: in ``num_workers`` processes, or in this one for a few."""
    bar = tqdm(total=len(arguments), desc=desc, unit="file", delay=_PROGRESS_DELAY, disable=not progress)
    workers = min(num_workers, len(arguments) // _MIN_FILES_PER_WORKER)
    if workers < 1:
        for args in arguments:
            yield fn(*args)
            bar.update()
        bar.close()
        return
    pool = ProcessPoolExecutor(workers, initializer=_ignore_sigint)
    try:
        chunk = max(1, min(64, len(arguments) // (8 * workers)))
        for result in pool.map(fn, *zip(*arguments), chunksize=chunk):
            yield result
            bar.update()
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C: the chunks in flight finish, the rest never start
        bar.close()


def _verify(paths: list[Path], max_pixels: int | None, num_workers: int, progress: bool,
            array_layout: str = "auto") -> tuple[dict[Path, str], dict[Path, DataInfo]]:
    """Decode every file not verified before in its current state (size, mtime); returns the bad ones and what the
    good ones hold."""
    absolute = [os.path.abspath(p) for p in paths]
    path_of_cache = cache_file(absolute)
    cached = _read_cache(path_of_cache)
    todo: list[tuple[Path, str, os.stat_result | None]] = []
    infos = {}
    for p, a in zip(paths, absolute):
        try:
            st = os.stat(a)
        except OSError:
            st = None  # decoding names the problem (e.g. file not found)
        if st is None or not _still_verified(cached.get(a), st, max_pixels, array_layout):
            todo.append((p, a, st))
        else:
            infos[p] = DataInfo.from_json(cached[a][3])
    if not todo:
        return {}, infos
    bad = {}
    results = _run_all(_decode, [(a, max_pixels, array_layout) for _, a, _ in todo], num_workers, progress,
                       "checking images")
    for (pixels, info, reason), (p, a, st) in zip(results, todo):  # results first: zip runs it to its end
        if reason is None and st is not None:
            cached[a] = [st.st_size, st.st_mtime_ns, pixels, info, array_layout]
            infos[p] = DataInfo.from_json(info)
        else:
            bad[p] = reason or "file not found"
            cached.pop(a, None)
    _write_cache(path_of_cache, cached)
    return bad, infos


def _probe(path: Path, max_pixels: int | None, array_layout: str) -> tuple[DataInfo | None, str | None]:
    try:
        return probe_data(path, max_pixels=max_pixels, array_layout=array_layout), None
    except BadImageError as e:
        return None, e.reason


def scan_files(paths: list[Path], *, max_pixels: int | None, on_bad_file: str, verify: str = "full",
               num_workers: int = 0, progress: bool = True,
               array_layout: str = "auto") -> tuple[set[Path], dict[Path, DataInfo]]:
    """``check_files``, and what each good file holds (its ``DataInfo``: from the full decode, or the header)."""
    if verify == "full":
        bad, infos = _verify(paths, max_pixels, num_workers, progress, array_layout)
    else:
        probed = {p: _probe(p, max_pixels, array_layout) for p in paths}
        bad = {p: reason for p, (_, reason) in probed.items() if reason is not None}
        infos = {p: info for p, (info, _) in probed.items() if info is not None}
    return _report(paths, bad, on_bad_file), infos


def check_files(paths: list[Path], *, max_pixels: int | None, on_bad_file: str, verify: str = "full",
                num_workers: int = 0, progress: bool = True, array_layout: str = "auto") -> set[Path]:
    """Check every file: decode it in full (``verify="full"``, cached) or read its header (``"header"``).

    Returns the bad files (``on_bad_file="skip"``, with a warning), or raises one DatasetError listing them all
    (``"error"``). Full decoding runs in ``num_workers`` processes (0: in this one), with a progress bar when it
    takes a while and ``progress`` is on.
    """
    return scan_files(paths, max_pixels=max_pixels, on_bad_file=on_bad_file, verify=verify, num_workers=num_workers,
                      progress=progress, array_layout=array_layout)[0]


def _report(paths: list[Path], bad: dict[Path, str], on_bad_file: str) -> set[Path]:
    if not bad:
        return set()
    # Every file up to a screenful; past that the count (the full list is in the error's bad_files).
    lines = [f"  {p}: {reason}" for p, reason in list(bad.items())[:_MAX_LISTED]]
    if len(bad) > _MAX_LISTED:
        lines.append(f"  ... and {len(bad) - _MAX_LISTED} more")
    if on_bad_file == "error":
        raise DatasetError(
            f"{len(bad)} of {len(paths)} files cannot be used as images:\n" + "\n".join(lines)
            + "\nremove or fix them, or set data.on_bad_file=skip to leave them out",
            bad,
        )
    log.warning(
        "skipping %d of %d files that cannot be used as images (data.on_bad_file=skip):\n%s",
        len(bad), len(paths), "\n".join(lines),
    )
    return set(bad)


# -- channels and normalisation of each model side -------------------------------------------------------------
def part_of(array, part: str | None):
    """An aligned file's half: "left" (A), "right" (B) or None (the whole array); an odd width loses its last column
    so that both halves have the same size."""
    if part is None:
        return array
    w2 = array.shape[1] // 2
    return array[:, :w2] if part == "left" else array[:, w2 : 2 * w2]


def check_channels(infos: dict[Path, DataInfo], paths: list[Path], channels: int, key: str,
                   fix: str | None = None) -> None:
    """A one-line DatasetError naming a file of ``paths`` that cannot give ``channels`` channels (asked by ``key``,
    e.g. model.input_nc), with the count of the others that cannot either and ``fix`` (default: set ``key``)."""
    wrong = [(p, problem) for p in paths if p in infos and (problem := channel_problem(infos[p], channels))]
    if wrong:
        path, problem = wrong[0]
        more = f", as do {len(wrong) - 1} more files" if len(wrong) > 1 else ""
        raise DatasetError(f"{path} {problem} ({key}={channels}{more}): "
                           f"{fix or f'set {key} to the channel count of the data'}")


def _measure(path: str, part: str | None, channels: int, background, max_pixels: int | None, array_layout: str,
             sample_pixels: int | None) -> tuple[Stats | None, str | None]:
    """The statistics of one file's side (its ``part``, conformed to ``channels``), with every k-th pixel kept for
    percentiles when ``sample_pixels`` is given (k such that at most that many are kept)."""
    try:
        pixels, info = decode_data(path, max_pixels=max_pixels, array_layout=array_layout, warn=False)
        pixels = conform(part_of(pixels, part), info, channels, background)
    except BadImageError as e:
        return None, f"{path}: {e.reason}"
    except ValueError as e:
        return None, f"{path}: {e}"
    every = None if sample_pixels is None else max(1, math.ceil(pixels.shape[0] * pixels.shape[1] / sample_pixels))
    return Stats.of(pixels, str(path), info.dtype, every), None


def _auto(infos: dict[Path, DataInfo], paths: list[Path], channels: int) -> dict:
    """``data.normalize=auto`` needs no pass over the data: the sample types say it (floats must lie in [0, 1])."""
    from translate.normalization import AUTO_RANGES

    for p in paths:
        info = infos.get(p)
        if info is None:
            continue
        if info.dtype not in AUTO_RANGES:
            raise DatasetError(f"{p} holds {info.dtype} samples, which data.normalize=auto cannot scale (it knows "
                               f"uint8, uint16 and float in [0, 1]): set data.normalize=minmax, percentile, fixed or "
                               f"meanstd")
        if info.low is not None and (info.low < 0 or info.high > 1):
            raise DatasetError(f"{p} holds float samples from {info.low:g} to {info.high:g}, but data.normalize=auto "
                               f"takes floats to be in [0, 1]: set data.normalize=minmax, percentile, fixed or meanstd")
    dtypes = {infos[p].dtype for p in paths if p in infos} or {"uint8"}
    return {"method": "auto", "dtype": np.result_type(*map(np.dtype, sorted(dtypes))).name, "channels": channels}


def fit_normalization(parts: list[tuple[Path, str | None]], channels: int, infos: dict[Path, DataInfo], *,
                      method: str, percentiles=(0.5, 99.5), value_range=None, background=(255, 255, 255),
                      max_pixels: int | None = None, array_layout: str = "auto", num_workers: int = 0,
                      progress: bool = True) -> dict:
    """The normalisation of one model side (``translate.normalization``, as its plain dict) from its files: each
    ``(path, part)`` (part: an aligned file's "left" or "right" half, or None), conformed to ``channels``.

    ``auto`` reads only the sample types the scan recorded; the other methods decode every file once (in
    ``num_workers`` processes) and their result is cached beside the scan's, keyed by the files' sizes and mtimes
    and the settings: an unchanged dataset costs a stat per file. A DatasetError names a file that cannot be used
    (e.g. one outside a ``fixed`` range)."""
    paths = [p for p, _ in parts]
    if method == "auto":
        return _auto(infos, paths, channels)
    absolute = [os.path.abspath(p) for p in paths]
    entries = []
    for a, (_, part) in zip(absolute, parts):
        st = os.stat(a)
        entries.append([a, part, st.st_size, st.st_mtime_ns])
    settings = [method, list(percentiles) if method == "percentile" else None,
                list(value_range) if method == "fixed" else None, channels, list(background), array_layout,
                PERCENTILE_VALUES]
    key = hashlib.sha256(json.dumps([settings, entries]).encode()).hexdigest()[:32]
    path_of_cache = cache_file(absolute)
    cached = _load_cache(path_of_cache).get("stats", {})
    if isinstance(cached.get(key), dict):
        return cached[key]
    sample_pixels = max(1, PERCENTILE_VALUES // (len(parts) * channels)) if method == "percentile" else None
    total, problems = None, []
    arguments = [(a, part, channels, tuple(background), max_pixels, array_layout, sample_pixels)
                 for a, (_, part) in zip(absolute, parts)]
    for stats, problem in _run_all(_measure, arguments, num_workers, progress, "measuring the data"):
        if problem:
            problems.append(problem)
        else:
            total = stats if total is None else total.merge(stats)
    if problems:
        raise DatasetError(f"{problems[0]} (while measuring data.normalize={method}"
                           + (f"; {len(problems) - 1} more such files" if len(problems) > 1 else "") + ")")
    try:
        result = fit(method, total, percentiles=tuple(percentiles), value_range=value_range).to_dict()
    except ValueError as e:
        raise DatasetError(str(e)) from None
    cached[key] = result
    _write_cache(path_of_cache, stats=dict(list(cached.items())[-_KEPT_STATS:]))
    return result
