"""Atomic writes: a file or a directory appears complete or not at all, with the modes a plain write would give
(0666 / 0777 less the umask, so colleagues on a shared machine can read what was written), synced to disk.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Temporary names start with this (hidden, so never taken for inputs or datasets), then the writer's process id:
# a killed run leaves them behind, and ``translate convert`` removes those of dead processes.
TMP_PREFIX = ".translate-tmp-"


def temp_path(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (same file system, so a rename is atomic)."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name[-100:]}")


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """``with atomic_write(path, "w" | "wb") as f: ...``: ``f`` writes a temp file beside ``path``, which replaces
    ``path`` (fsynced, then renamed) only when the block ends without an error; on an error it is removed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    tmp = temp_path(path)
    try:
        # os.open with 0o666 lets the umask decide the mode, as open() does (mkstemp would give 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, mode, encoding=None if mode == "wb" else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)  # the rename itself survives a power cut only once the folder is synced


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """``with atomic_directory(path) as tmp: ...``: fill the temp directory ``tmp``; when the block ends without an
    error its files are fsynced and it replaces ``path`` (an existing ``path`` is moved aside, then deleted); on an
    error it is deleted and ``path`` stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    os.mkdir(tmp, 0o777)  # the umask applies (mkdtemp would give 0700)
    try:
        yield tmp
        for dirpath, _, filenames in os.walk(tmp):
            for name in filenames:
                _fsync(Path(dirpath, name))
            _fsync(Path(dirpath), directory=True)
        if path.exists():
            old = temp_path(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(path.parent, directory=True)
