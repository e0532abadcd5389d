"""Find the image files of a dataset folder and check them all before training starts: decoded in full, in parallel,
with what was verified remembered in a small cache (an unchanged folder then costs a stat per file), or headers only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import PIL
from tqdm import tqdm

from translate.data.builtin import cache_dir
from translate.fileio import write_text
from translate.imageio import IMAGE_EXTENSIONS, BadImageError, check_image, read_image

log = logging.getLogger(__name__)
_MAX_LISTED = 50
# Entries written under another format or Pillow version are decoded again: a new decoder may judge files otherwise.
_CACHE_VERSION = f"1 Pillow {PIL.__version__}"
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
    """Every image under ``folder`` (recursively), sorted by path; hidden files and folders are ignored."""
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
            Path(dirpath, f) for f in filenames if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
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
            f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {folder}\nexpected layout: {layout}"
        )
    return paths[:max_size] if max_size is not None else paths


# -- full decoding, cached ------------------------------------------------------------------------------------
def cache_file(paths: list[str]) -> Path:
    """The scan cache of a dataset: one small JSON file per folder, ``<cache dir>/verified/<hash>.json``."""
    root = os.path.commonpath(paths)
    return cache_dir() / "verified" / f"{hashlib.sha256(root.encode()).hexdigest()[:24]}.json"


def _read_cache(path: Path) -> dict[str, list]:
    """{absolute path: [size, mtime_ns, pixels]} of files that decoded; empty for a missing, stale or broken cache."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("version") == _CACHE_VERSION else None
    return files if isinstance(files, dict) else {}


def _write_cache(path: Path, files: dict[str, list]) -> None:
    """Atomically (temp file, then rename): a run killed mid-write, or two ranks writing at once, leave a whole file.
    The cache only saves time, so a cache directory that cannot be written is a warning, not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps({"version": _CACHE_VERSION, "files": files}))
    except OSError as e:
        log.warning("cannot write the dataset scan cache %s (%s): the next start decodes every file again", path, e)


def _still_verified(entry, st: os.stat_result, max_pixels: int | None) -> bool:
    return (isinstance(entry, list) and len(entry) == 3 and entry[:2] == [st.st_size, st.st_mtime_ns]
            and isinstance(entry[2], int) and (max_pixels is None or entry[2] <= max_pixels))


def _decode(path: str, max_pixels: int | None) -> tuple[int | None, str | None]:
    """(pixel count, None) for a file that decodes in full, (None, reason) for one that does not."""
    try:
        # warn=False: "has N frames" is said when training reads the file, once is enough.
        h, w = read_image(path, mode=None, max_pixels=max_pixels, warn=False).shape[:2]
    except BadImageError as e:
        return None, e.reason
    return h * w, None


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the main process stops the pool, without a traceback from each worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_all(paths: list[str], max_pixels: int | None, num_workers: int, progress: bool):
    """Yield ``_decode`` of every path in order: in ``num_workers`` processes, or in this one for a few files."""
    bar = tqdm(total=len(paths), desc="checking images", unit="file", delay=_PROGRESS_DELAY, disable=not progress)
    workers = min(num_workers, len(paths) // _MIN_FILES_PER_WORKER)
    if workers < 1:
        for p in paths:
            yield _decode(p, max_pixels)
            bar.update()
        bar.close()
        return
    pool = ProcessPoolExecutor(workers, initializer=_ignore_sigint)
    try:
        chunk = max(1, min(64, len(paths) // (8 * workers)))
        for result in pool.map(_decode, paths, [max_pixels] * len(paths), chunksize=chunk):
            yield result
            bar.update()
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C: the chunks in flight finish, the rest never start
        bar.close()


def _verify(paths: list[Path], max_pixels: int | None, num_workers: int, progress: bool) -> dict[Path, str]:
    """Decode every file not verified before in its current state (size, mtime); returns the bad ones."""
    absolute = [os.path.abspath(p) for p in paths]
    path_of_cache = cache_file(absolute)
    cached = _read_cache(path_of_cache)
    todo: list[tuple[Path, str, os.stat_result | None]] = []
    for p, a in zip(paths, absolute):
        try:
            st = os.stat(a)
        except OSError:
            st = None  # decoding names the problem (e.g. file not found)
        if st is None or not _still_verified(cached.get(a), st, max_pixels):
            todo.append((p, a, st))
    if not todo:
        return {}
    bad = {}
    results = _decode_all([a for _, a, _ in todo], max_pixels, num_workers, progress)
    for (pixels, reason), (p, a, st) in zip(results, todo):  # results first: zip runs it to its end (the pool closes)
        if reason is None and st is not None:
            cached[a] = [st.st_size, st.st_mtime_ns, pixels]
        else:
            bad[p] = reason or "file not found"
            cached.pop(a, None)
    _write_cache(path_of_cache, cached)
    return bad


def check_files(paths: list[Path], *, max_pixels: int | None, on_bad_file: str, verify: str = "full",
                num_workers: int = 0, progress: bool = True) -> set[Path]:
    """Check every file: decode it in full (``verify="full"``, cached) or read its header (``"header"``).

    Returns the bad files (``on_bad_file="skip"``, with a warning), or raises one DatasetError listing them all
    (``"error"``). Full decoding runs in ``num_workers`` processes (0: in this one), with a progress bar when it
    takes a while and ``progress`` is on.
    """
    if verify == "full":
        bad = _verify(paths, max_pixels, num_workers, progress)
    else:
        bad = {p: reason for p in paths if (reason := check_image(p, max_pixels)) is not None}
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
