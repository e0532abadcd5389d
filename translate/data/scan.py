"""Find the image files of a dataset folder and check them all before training starts."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from translate.data.decode import IMAGE_EXTENSIONS, check_image

log = logging.getLogger(__name__)
_MAX_LISTED = 50


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


def check_files(paths: list[Path], *, max_pixels: int | None, on_bad_file: str) -> set[Path]:
    """Check every file's header; return the bad ones (skip mode), or raise one error listing them all (error)."""
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
