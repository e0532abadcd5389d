"""Download and prepare the standard pix2pix and CycleGAN benchmark datasets.

The archives come from the public locations the reference scripts use (junyanz/pytorch-CycleGAN-and-pix2pix,
``datasets/download_pix2pix_dataset.sh`` and ``download_cyclegan_dataset.sh``). All the logic behind the
``datasets/*.py`` scripts lives here so that it can be imported and tested:

* :func:`download`: resumable HTTP download (a ``Range`` request continues ``FILE.part``, which is renamed to
  ``FILE`` only once complete), a tqdm progress bar, and a sha256 check against :data:`SHA256`;
* :func:`extract`: tar or zip extraction that refuses unsafe members (absolute paths, ``..``, links leading
  out of the target, device files), into a temporary folder that is renamed into place;
* :func:`fetch_dataset`: both of these, then a check that ``ROOT/NAME`` has the layout ``data.root`` expects:
  ``train/`` (``val/``, ``test/``) of side-by-side A|B images for pix2pix (``data.dataset_mode=aligned``) and
  ``trainA/ trainB/`` (``testA/ testB/``) for CycleGAN (``data.dataset_mode=unaligned``);
* :func:`combine_a_and_b` and :func:`prepare_cityscapes`: build the same layouts from your own files.

Only the standard library, Pillow and tqdm are used.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import posixpath
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from translate.imageio import IMAGE_EXTENSIONS

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
URLS = {"pix2pix": PIX2PIX_URL, "cyclegan": CYCLEGAN_URL}
SUFFIXES = {"pix2pix": ".tar.gz", "cyclegan": ".zip"}
SCRIPTS = {"pix2pix": "datasets/download_pix2pix_dataset.py", "cyclegan": "datasets/download_cyclegan_dataset.py"}

# The names the reference scripts accept, in their order.
DATASETS = {
    "pix2pix": ("facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day"),
    "cyclegan": (
        "apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo", "ukiyoe2photo",
        "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower", "ae_photos", "mini",
        "mini_pix2pix", "mini_colorization",
    ),
}

# Cityscapes' licence forbids redistribution, so the reference serves no archive for it (in either script).
MANUAL = {
    "cityscapes": (
        "Cityscapes cannot be downloaded automatically: its licence needs a registered account. Log in at "
        "https://www.cityscapes-dataset.com/downloads/, download gtFine_trainvaltest.zip and "
        "leftImg8bit_trainvaltest.zip, then run:\n"
        "  python datasets/prepare_cityscapes.py --gtFine_dir gtFine_trainvaltest.zip "
        "--leftImg8bit_dir leftImg8bit_trainvaltest.zip --output_dir datasets/cityscapes"
    ),
}

# Folders a prepared dataset must have, and the data.dataset_mode that reads them.
LAYOUTS = {"pix2pix": (("train",), "aligned"), "cyclegan": (("trainA", "trainB"), "unaligned")}
# The few archives on the CycleGAN server that are not two-domain sets (what the reference trains them with).
LAYOUT_EXCEPTIONS = {
    ("cyclegan", "mini_pix2pix"): (("train",), "aligned"),
    ("cyclegan", "mini_colorization"): (("train",), "colorization"),
    ("cyclegan", "ae_photos"): ((), "single"),
}

# Known sha256 of each archive, keyed "kind/name". The CycleGAN ones are those TensorFlow Datasets recorded
# (tensorflow_datasets/url_checksums/cycle_gan.txt) for the same files at their former address,
# people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/; nobody recorded the pix2pix ones, so those
# downloads print their sha256 unverified. Add a line here once a download is known good.
SHA256 = {
    "cyclegan/apple2orange": "845a191e9af8926408ea597001cd03a452e3300a1f44a79fe329b3d59f6e3eb8",
    "cyclegan/cezanne2photo": "3a6c10ca21f9485862f1cbd707744b9dc258954a04631271d23a3605eeb63cff",
    "cyclegan/facades": "9a31ebf3a31b9b5cd195dd5bf62e9308e00cb94604d1019e3889ac84248695c0",
    "cyclegan/horse2zebra": "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1",
    "cyclegan/iphone2dslr_flower": "8fcb5e374d631b107e1d961b8c4cd0a186aa2a4ff3e279923f4c426128de7113",
    "cyclegan/maps": "639534f69dbf9f36bef8d6292a7698006361221f83f0285d7c9ca78afe6e8a9e",
    "cyclegan/monet2photo": "88f91b00fc228f97c9411fbf1880ec1d119c98f1722e4cfcfaa2fb35fac05b04",
    "cyclegan/summer2winter_yosemite": "167fe1726807a9d22bd106b4a6c0bd7953b688af924ac1bf967439c4961e49f9",
    "cyclegan/ukiyoe2photo": "02a2a2fb5ecf425ca1bf86aca7304377da64a2a1d3b86df54eb65e4068bf3b08",
    "cyclegan/vangogh2photo": "362c3473e70be0944bda08d49d660eafdc2854df55d697835b8186d1d79caaff",
}

CHUNK = 1 << 20


class PrepareError(RuntimeError):
    """A problem the user can fix; the message says how."""


class DownloadError(PrepareError):
    """The server could not be reached, refused, or the transfer stopped early."""


class ChecksumError(DownloadError):
    """The archive's sha256 is not the recorded one."""


class ArchiveError(PrepareError):
    """The archive is damaged, not a tar/zip file, or not laid out as expected."""


class UnsafeArchiveError(ArchiveError):
    """A member would land outside the target folder, or is a device file."""


# ----------------------------------------------------------------------------------------------- download


def sha256sum(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes FIRST-LAST/TOTAL`` header, None where absent."""
    try:
        span, total = value.split(" ", 1)[1].split("/")
        first = None if span == "*" else int(span.split("-")[0])
        return first, None if total == "*" else int(total)
    except (AttributeError, IndexError, ValueError):
        return None, None


def download(url: str, dest: str | Path, *, sha256: str | None = None, verify: bool = True, timeout: float = 30.0,
             progress: bool = True, manual_hint: str = "") -> Path:
    """Fetch ``url`` to ``dest``, continuing a ``dest.part`` left by an interrupted run; return ``dest``.

    ``dest`` appears only once every byte has arrived and, where ``sha256`` is given and ``verify`` is on,
    matched it; a mismatching file is moved to ``dest.bad``. ``manual_hint`` ends the message of a failure to
    reach the server (what to do instead).
    """
    dest = Path(dest)
    expected = sha256 if verify else None
    if dest.exists():
        print(f"{dest} already downloaded")
        check_sha256(dest, expected, label=url, skipped=not verify)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch(url, part, timeout=timeout, progress=progress, manual_hint=manual_hint)
    try:
        check_sha256(part, expected, label=url, skipped=not verify)
    except ChecksumError:
        # Kept rather than deleted: a big archive may still be fine if the server's copy changed on purpose.
        os.replace(part, dest.with_name(dest.name + ".bad"))
        raise
    os.replace(part, dest)  # atomic: a complete, checked archive or none at all
    return dest


def _fetch(url: str, part: Path, *, timeout: float, progress: bool, manual_hint: str) -> None:
    """Append the rest of ``url`` to ``part`` (all of it when ``part`` is absent)."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "translate-datasets (urllib)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:
            # Nothing left to send: an earlier run got every byte but stopped before the rename.
            if _content_range(e.headers.get("Content-Range"))[1] == start:
                return
            part.unlink()
            raise DownloadError(f"{part} did not match the file at {url}; it was removed, run again") from None
        raise DownloadError(f"{url}: the server answered HTTP {e.code} {e.reason}.\n{manual_hint}".rstrip()) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        host = urllib.parse.urlsplit(url).hostname
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {host} ({reason}).\n{manual_hint}".rstrip()) from None

    with response:
        first, total = _content_range(response.headers.get("Content-Range"))
        if response.status == 206 and first != start:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server sent bytes from {first}, not {start}; the partial download "
                                "was removed, run again")
        if response.status != 206:
            start = 0  # the server ignored the Range request: take the whole file again
        length = response.headers.get("Content-Length")
        if response.status != 206 or total is None:
            total = start + int(length) if length and length.isdigit() else None
        try:
            with open(part, "ab" if start else "wb") as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
                disable=not progress, file=sys.stderr,
            ) as bar:
                while block := response.read(CHUNK):
                    f.write(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(
                f"download of {url} stopped after {part.stat().st_size} bytes ({e}); run the same command again "
                "to continue where it stopped"
            ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        # http.client returns a short body without raising when the connection drops early.
        raise DownloadError(
            f"download of {url} stopped at {size} of {total} bytes; run the same command again to continue "
            "where it stopped"
        )


def check_sha256(path: str | Path, expected: str | None, *, label: str = "", skipped: bool = False) -> str:
    """Hash ``path``; raise :class:`ChecksumError` if it differs from ``expected``; return the hex digest."""
    path = Path(path)
    actual = sha256sum(path)
    if expected is None:
        why = "--no-verify was given" if skipped else "no checksum is recorded for it"
        print(f"sha256 {actual}  {path.name}\n  (not verified: {why})")
    elif actual != expected.lower():
        raise ChecksumError(
            f"{label or path}: sha256 mismatch\n  expected {expected}\n  got      {actual}\n"
            "The file is damaged, or the server's copy changed. Delete it and run again; if you trust this file, "
            "pass it with --archive PATH --no-verify."
        )
    else:
        print(f"sha256 OK  {path.name}")
    return actual


# ----------------------------------------------------------------------------------------------- extraction


def _name_problem(name: str) -> str | None:
    """Why a member name may not be extracted, judged on the name alone; None if it may."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "it is an absolute path"
    if ".." in posix.split("/"):
        return "it has a '..' component"
    return None


def _leaves(link_target: str, base: str) -> bool:
    """Whether ``link_target``, read relative to archive folder ``base``, leads out of the archive's root."""
    if link_target.startswith(("/", "\\")) or (len(link_target) > 1 and link_target[1] == ":"):
        return True
    resolved = posixpath.normpath(posixpath.join(base, link_target.replace("\\", "/")))
    return resolved == ".." or resolved.startswith("../")


def _inside(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def _check_on_disk(out: str, name: str, link: str | None, link_base: str) -> str | None:
    """Resolve against what is already extracted, so that a chain of in-archive links cannot lead out."""
    root = os.path.realpath(out)
    paths = [os.path.join(out, name)]
    if link is not None:
        paths.append(os.path.join(out, link_base, link))
    if all(_inside(root, p) for p in paths):
        return None
    return "it leads outside the target through a link extracted before it"


def _tar_problem(member: tarfile.TarInfo, out: str) -> str | None:
    problem = _name_problem(member.name)
    if problem:
        return problem
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        return "it is a device file, fifo or other special file"
    link, base = None, ""
    if member.issym():
        link, base = member.linkname, posixpath.dirname(member.name)  # symlinks are relative to their folder
        if _leaves(link, base):
            return f"it is a symlink to {link!r}, outside the target"
    if member.islnk():
        link = member.linkname  # hard links name another member, from the archive root
        if _leaves(link, ""):
            return f"it is a hard link to {link!r}, outside the target"
    return _check_on_disk(out, member.name, link, base)


def _unsafe(archive: Path, name: str, problem: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{archive}: refusing to extract member {name!r}: {problem}")


def _extract_tar(archive: Path, out: str) -> None:
    # The "data" filter (Python >= 3.10.12/3.11.4) repeats these checks and drops odd permission bits. Older
    # Pythons lack its FilterError too: an ``except tarfile.FilterError`` would itself raise AttributeError there.
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    filter_error = getattr(tarfile, "FilterError", ())
    try:
        tar = tarfile.open(archive)
    except tarfile.ReadError:
        raise ArchiveError(
            f"{archive} is not a zip or tar archive, or is damaged. Delete it and download it again."
        ) from None
    with tar:
        # One streaming pass: each member is judged just before it is written, against what is on disk.
        for member in tar:
            problem = _tar_problem(member, out)
            if problem:
                raise _unsafe(archive, member.name, problem)
            try:
                tar.extract(member, out, set_attrs=False, **extra)
            except filter_error as e:
                raise _unsafe(archive, member.name, str(e)) from None


def _extract_zip(archive: Path, out: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # the central directory is cheap to read: judge every member before writing any
            problem = _name_problem(info.filename)
            mode = info.external_attr >> 16 if info.create_system == 3 else 0  # unix mode, when made on unix
            if not problem and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
                problem = "it is a device file, fifo or other special file"
            if not problem and stat.S_ISLNK(mode):
                target = zf.read(info).decode("utf-8", "replace")
                if _leaves(target, posixpath.dirname(info.filename)):
                    problem = f"it is a symlink to {target!r}, outside the target"
            if problem:
                raise _unsafe(archive, info.filename, problem)
        for info in infos:
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            target = zf.read(info).decode("utf-8", "replace") if stat.S_ISLNK(mode) else None
            problem = _check_on_disk(out, info.filename, target, posixpath.dirname(info.filename))
            if problem:
                raise _unsafe(archive, info.filename, problem)
            if target is None:
                zf.extract(info, out)
            else:  # zipfile itself would write the link target as a small text file
                path = os.path.join(out, info.filename)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.symlink(target, path)


def _check_links(archive: Path, out: str) -> None:
    """Last sweep: a link made before the links it goes through existed can only be judged at the end."""
    root = os.path.realpath(out)
    for folder, dirs, files in os.walk(out):
        for entry in dirs + files:
            path = os.path.join(folder, entry)
            if os.path.islink(path) and not _inside(root, path):
                raise _unsafe(archive, os.path.relpath(path, out), "it is a link that leads outside the target")


def extract(archive: str | Path, out: str | Path) -> None:
    """Extract a tar (any compression) or zip ``archive`` into the existing, empty folder ``out``.

    Raises :class:`UnsafeArchiveError` naming the first member that is an absolute path, has a ``..``
    component, is a link leading outside ``out`` or a device file; :class:`ArchiveError` for a damaged file.
    On error ``out`` may hold part of the archive: extract into a temporary folder (as :func:`fetch_dataset`
    does) and delete it.
    """
    archive, out = Path(archive), str(out)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, out)
        else:
            _extract_tar(archive, out)
    except ArchiveError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ArchiveError(
            f"{archive} is damaged or not a tar/zip archive ({e}). Delete it and download it again."
        ) from None
    _check_links(archive, out)


# ----------------------------------------------------------------------------------------------- datasets


def _has_layout(folder: Path, required: tuple[str, ...]) -> bool:
    return folder.is_dir() and all((folder / d).is_dir() and any((folder / d).iterdir()) for d in required)


def _dataset_folder(tmp: Path, required: tuple[str, ...]) -> Path:
    """The folder holding the dataset: the archives wrap it in one top folder named after it."""
    entries = [p for p in tmp.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not (required and _has_layout(tmp, required)):
        return entries[0]
    return tmp


def _install(new: Path, target: Path, scratch: Path) -> None:
    """Move folder ``new`` to ``target`` (replacing it) with renames only, so ``target`` is never half-made."""
    if target.exists():
        os.replace(target, scratch / ".previous")
    os.replace(new, target)


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def describe(target: Path, mode: str) -> str:
    """What was prepared and how to train on it."""
    lines = [f"{target}:"]
    for sub in sorted(p for p in target.iterdir() if p.is_dir()):
        lines.append(f"  {sub.name + '/':<10} {_count_images(sub)} images")
    lines.append(f"train with: translate train CONFIG data.root={target} data.dataset_mode={mode}")
    return "\n".join(lines)


def fetch_dataset(kind: str, name: str, root: str | Path = "datasets", *, archive: str | Path | None = None,
                  out: str | Path | None = None, url: str | None = None, force: bool = False,
                  keep_archive: bool = False, verify: bool = True, progress: bool = True) -> Path:
    """Download (or take ``archive``), check, safely extract and install dataset ``name`` of ``kind``.

    ``kind`` is ``"pix2pix"`` or ``"cyclegan"``. The result is ``out`` (default ``ROOT/NAME``), ready for
    ``translate train CONFIG data.root=ROOT/NAME``. A downloaded archive is deleted afterwards unless
    ``keep_archive``; an ``archive`` you pass is never deleted. Returns the dataset folder.
    """
    if kind not in DATASETS:
        raise PrepareError(f"unknown dataset kind {kind!r}: pix2pix or cyclegan")
    if name not in DATASETS[kind]:
        raise PrepareError(f"unknown {kind} dataset {name!r}; available: {', '.join(DATASETS[kind])}")
    root = Path(root)
    target = Path(out) if out is not None else root / name
    required, mode = LAYOUT_EXCEPTIONS.get((kind, name), LAYOUTS[kind])
    if target.exists() and not force:
        if _has_layout(target, required) and any(target.iterdir()):
            print(f"{target} is already prepared; pass --force to replace it")
            print(describe(target, mode))
            return target
        if any(target.iterdir()):
            raise PrepareError(
                f"{target} exists but is not a {kind} {name} dataset (it lacks {', '.join(required)}/); "
                "choose another folder with --out, or replace it with --force"
            )
    if name in MANUAL and archive is None and url is None:
        raise PrepareError(MANUAL[name])

    expected = SHA256.get(f"{kind}/{name}")
    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise PrepareError(f"--archive {archive}: no such file")
        check_sha256(archive, expected if verify else None, label=str(archive), skipped=not verify)
        downloaded = False
    else:
        url = url or URLS[kind].format(name=name)
        archive = root / f"{name}{SUFFIXES[kind]}"
        retry = f"python {SCRIPTS[kind]} {name} --archive {archive}"
        if root != Path("datasets"):
            retry += f" --root {root}"
        if out is not None:
            retry += f" --out {out}"
        hint = f"Download {url} manually to {archive}, then run:\n  {retry}"
        download(url, archive, sha256=expected, verify=verify, progress=progress, manual_hint=hint)
        downloaded = True

    target.parent.mkdir(parents=True, exist_ok=True)
    # The scratch folder sits beside the target so that the final moves are renames on one file system.
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as scratch:
        scratch = Path(scratch)
        unpacked = scratch / "unpacked"
        unpacked.mkdir()
        print(f"extracting {archive}")
        extract(archive, unpacked)
        found = _dataset_folder(unpacked, required)
        if not _has_layout(found, required):
            present = sorted(p.name for p in found.iterdir())
            raise ArchiveError(
                f"{archive} does not hold a {kind} dataset: expected folders {', '.join(required)} "
                f"but found {', '.join(present) or 'nothing'}"
            )
        _install(found, target, scratch)
    if downloaded and not keep_archive:
        archive.unlink()
    print(describe(target, mode))
    return target


# ----------------------------------------------------------------------------------------------- combine A and B


@dataclass
class CombineReport:
    """What :func:`combine_a_and_b` did: pairs written, and the files that had no partner (by path)."""

    written: int = 0
    missing_b: list[str] = field(default_factory=list)  # in A, with no partner in B
    missing_a: list[str] = field(default_factory=list)  # in B, with no partner in A

    def summary(self, limit: int = 20) -> str:
        lines = [f"wrote {self.written} aligned pairs"]
        for label, names in (("no partner in B for", self.missing_b), ("no partner in A for", self.missing_a)):
            if names:
                shown = ", ".join(names[:limit]) + (f" ... and {len(names) - limit} more" if len(names) > limit else "")
                lines.append(f"{label} {len(names)} files (skipped): {shown}")
        return "\n".join(lines)


def _images(folder: Path, tag: str | None) -> dict[str, Path]:
    """Images under ``folder`` keyed by relative path without extension (and without ``tag``, e.g. ``_A``)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        key = path.relative_to(folder).with_suffix("").as_posix()
        if tag is not None:
            if not key.endswith(tag):
                continue
            key = key[: -len(tag)]
        if key in found:
            raise PrepareError(f"{found[key]} and {path} have the same name; cannot tell which one to pair")
        found[key] = path
    return found


def _write_pair(a: Path, b: Path, out: Path) -> None:
    with Image.open(a) as image_a, Image.open(b) as image_b:
        image_a, image_b = image_a.convert("RGB"), image_b.convert("RGB")
        pair = Image.new("RGB", (image_a.width + image_b.width, image_a.height))
        pair.paste(image_a, (0, 0))
        pair.paste(image_b, (image_a.width, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    # 95 is OpenCV's default JPEG quality, what the reference's combine_A_and_B.py wrote.
    pair.save(out, **({"quality": 95} if out.suffix.lower() in (".jpg", ".jpeg") else {}))


def _write_pair_args(args: tuple[Path, Path, Path]) -> None:
    _write_pair(*args)


def combine_a_and_b(fold_a: str | Path, fold_b: str | Path, fold_ab: str | Path, *, num_imgs: int | None = None,
                    use_ab: bool = False, workers: int = 1, progress: bool = True) -> CombineReport:
    """Write side-by-side A|B images for pix2pix, as the reference's ``datasets/combine_A_and_B.py``.

    Each subfolder of ``fold_a`` (``train``, ``val``, ``test``...; or ``fold_a`` itself when it has none) is a
    split; an image ``fold_a/SPLIT/x/y.png`` pairs with ``fold_b/SPLIT/x/y.*`` (same relative path, any
    extension) and becomes ``fold_ab/SPLIT/x/y.png``. With ``use_ab``, ``y_A.png`` pairs with ``y_B.*`` and
    becomes ``y.png``. Partners must have the same size (checked for every pair before anything is written);
    images without a partner are skipped and listed in the report.
    """
    fold_a, fold_b, fold_ab = Path(fold_a), Path(fold_b), Path(fold_ab)
    for folder in (fold_a, fold_b):
        if not folder.is_dir():
            raise PrepareError(f"{folder}: no such folder")
    splits = sorted(p.name for p in fold_a.iterdir() if p.is_dir()) or [""]
    report, jobs, mismatched = CombineReport(), [], []
    for split in splits:
        if not (fold_b / split).is_dir():
            raise PrepareError(f"{fold_a / split} has no counterpart {fold_b / split}")
        images_a = _images(fold_a / split, "_A" if use_ab else None)
        images_b = _images(fold_b / split, "_B" if use_ab else None)
        report.missing_b += [str(images_a[k]) for k in images_a if k not in images_b]
        report.missing_a += [str(images_b[k]) for k in images_b if k not in images_a]
        keys = [k for k in images_a if k in images_b][:num_imgs]
        print(f"split = {split or '.'}: {len(keys)} pairs")
        for key in keys:
            a, b = images_a[key], images_b[key]
            with Image.open(a) as image_a, Image.open(b) as image_b:  # reads the headers only
                if image_a.size != image_b.size:
                    mismatched.append(f"{a} is {image_a.width}x{image_a.height} but {b} is "
                                      f"{image_b.width}x{image_b.height}")
            jobs.append((a, b, fold_ab / split / (key + a.suffix)))
    if mismatched:
        shown = "\n  ".join(mismatched[:20]) + (f"\n  ... and {len(mismatched) - 20} more" if len(mismatched) > 20
                                                 else "")
        raise PrepareError(f"{len(mismatched)} pairs differ in size (nothing was written):\n  {shown}")
    bar = dict(total=len(jobs), unit="img", disable=not progress, file=sys.stderr)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in tqdm(pool.map(_write_pair_args, jobs, chunksize=16), **bar):
                pass
    else:
        for job in tqdm(jobs, **bar):
            _write_pair(*job)
    report.written = len(jobs)
    return report


# ----------------------------------------------------------------------------------------------- cityscapes


def _cityscapes_files(source: Path, suffix: str, stack: ExitStack) -> dict[tuple[str, str], Callable[[], Image.Image]]:
    """Images ``PHASE/CITY/ID{suffix}`` in a Cityscapes zip or folder, keyed (phase, id), as lazy openers."""
    found = {}

    def add(name: str, opener: Callable[[], Image.Image]) -> None:
        parts = name.replace("\\", "/").split("/")
        if len(parts) >= 3 and parts[-3] in ("train", "val", "test") and parts[-1].endswith(suffix):
            found[(parts[-3], parts[-1][: -len(suffix)])] = opener

    if source.is_file():
        try:
            zf = stack.enter_context(zipfile.ZipFile(source))
        except zipfile.BadZipFile as e:
            raise PrepareError(f"{source} is not a readable zip file ({e})") from None
        for name in zf.namelist():
            # Read straight from the zip: no need to unpack gigabytes, nor to trust its member names.
            add(name, lambda name=name: Image.open(BytesIO(zf.read(name))))
    elif source.is_dir():
        for path in source.rglob(f"*{suffix}"):
            add(path.relative_to(source).as_posix(), lambda path=path: Image.open(path))
    else:
        raise PrepareError(f"{source}: no such file or folder")
    if not found:
        raise PrepareError(f"no train/ or val/ files named *{suffix} in {source}")
    return found


def prepare_cityscapes(gtfine: str | Path, leftimg: str | Path, out: str | Path = "datasets/cityscapes", *,
                       size: int = 256, force: bool = False, progress: bool = True) -> Path:
    """Build Cityscapes photo|label pairs as the reference's ``datasets/prepare_cityscapes_dataset.py`` does.

    ``gtfine`` and ``leftimg`` are ``gtFine_trainvaltest.zip`` and ``leftImg8bit_trainvaltest.zip`` from
    cityscapes-dataset.com, or the folders they unzip to. Cityscapes' val split becomes ``test`` (its test split
    has no public labels). For each pair, resized to ``size`` x ``size``: ``out/PHASE/N.jpg`` is photo|label side
    by side (pix2pix, ``dataset_mode=aligned``, photo is A), ``out/PHASEA/N_A.jpg`` the photo and
    ``out/PHASEB/N_B.jpg`` the label (CycleGAN). N counts pairs in sorted order, as in the reference.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise PrepareError(f"{out} exists and is not empty; choose another --output_dir or pass --force")
    with ExitStack() as stack:
        labels = _cityscapes_files(Path(gtfine), "_gtFine_color.png", stack)
        photos = _cityscapes_files(Path(leftimg), "_leftImg8bit.png", stack)
        unpaired = sorted(f"{phase}/{key}" for phase, key in set(labels) ^ set(photos) if phase != "test")
        if unpaired:
            shown = ", ".join(unpaired[:20]) + (" ..." if len(unpaired) > 20 else "")
            print(f"warning: {len(unpaired)} images have no partner and are skipped: {shown}", file=sys.stderr)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as scratch:
            new = Path(scratch) / "new"
            for phase, save in (("val", "test"), ("train", "train")):
                keys = sorted(k for p, k in labels if p == phase and (p, k) in photos)
                for folder in (save, save + "A", save + "B"):
                    (new / folder).mkdir(parents=True)
                for i, key in enumerate(tqdm(keys, desc=save, unit="img", disable=not progress, file=sys.stderr)):
                    with labels[(phase, key)]() as label_file, photos[(phase, key)]() as photo_file:
                        # The reference's default (bicubic) resize, for labels too, so results compare with it.
                        label = label_file.convert("RGB").resize((size, size), Image.BICUBIC)
                        photo = photo_file.convert("RGB").resize((size, size), Image.BICUBIC)
                    pair = Image.new("RGB", (2 * size, size))
                    pair.paste(photo, (0, 0))
                    pair.paste(label, (size, 0))
                    jpeg = {"format": "JPEG", "quality": 100, "subsampling": 0}
                    pair.save(new / save / f"{i}.jpg", **jpeg)
                    photo.save(new / f"{save}A" / f"{i}_A.jpg", **jpeg)
                    label.save(new / f"{save}B" / f"{i}_B.jpg", **jpeg)
                print(f"{phase} -> {save}: {len(keys)} pairs")
            if not any((new / "train").iterdir()):
                raise PrepareError(f"no matching photo/label pairs in {gtfine} and {leftimg}")
            _install(new, out, Path(scratch))
    print(describe(out, "aligned (or unaligned, for trainA/trainB)"))
    return out


def run_cli(func: Callable[[], object]) -> int:
    """Run a script's body: a :class:`PrepareError` becomes one message on stderr and exit status 1."""
    try:
        func()
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; a download continues where it stopped when you run the same command again",
              file=sys.stderr)
        return 130
    return 0


def fetch_cli(kind: str, description: str, epilog: str, argv: list[str] | None = None) -> int:
    """The command line of ``datasets/download_<kind>_dataset.py``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Archives come from {URLS[kind].format(name='NAME')}. cityscapes cannot be downloaded (licence): "
               f"use datasets/prepare_cityscapes.py. {epilog}")
    parser.add_argument("name", choices=DATASETS[kind], metavar="NAME", help="one of: " + ", ".join(DATASETS[kind]))
    parser.add_argument("--root", default="datasets", help="DATA_ROOT: folder for the dataset (default: %(default)s)")
    parser.add_argument("--out", default=None, help="dataset folder to create (default: ROOT/NAME)")
    parser.add_argument("--archive", default=None, metavar="PATH",
                        help="use this already downloaded archive instead of downloading (it is kept)")
    parser.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive in ROOT")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check of a recorded checksum")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return run_cli(lambda: fetch_dataset(
        kind, args.name, args.root, archive=args.archive, out=args.out, url=args.url, force=args.force,
        keep_archive=args.keep_archive, verify=not args.no_verify, progress=not args.no_progress,
    ))
