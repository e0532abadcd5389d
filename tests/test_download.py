"""Tests for translate.data.download and the datasets/ scripts, offline: archives are built in tmp_path and
served by a local http.server thread on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from translate.data import download as dl

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------- fixtures


def _image_bytes(color, size=(4, 4), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def _tar(path: Path, files: dict[str, bytes], links: tuple = ()) -> Path:
    """A tar.gz of ``files`` plus special members given as (name, type, linkname)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, kind, linkname in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, linkname
            tar.addfile(info)
    return path


def _zip(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None,
         special: dict[str, int] | None = None) -> Path:
    """A zip of ``files``, unix ``symlinks`` (name: target) and empty members of other unix file types."""
    members = {name: (stat.S_IFLNK | 0o777, target.encode()) for name, target in (symlinks or {}).items()}
    members |= {name: (kind | 0o644, b"") for name, kind in (special or {}).items()}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, (mode, data) in members.items():
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 3, mode << 16
            zf.writestr(info, data)
    return path


def _pix2pix_files(name="facades") -> dict[str, bytes]:
    pair = _image_bytes("red", (8, 4), "JPEG")
    return {f"{name}/{split}/{i}.jpg": pair for split in ("train", "val", "test") for i in (1, 2)}


def _cyclegan_files(name="horse2zebra") -> dict[str, bytes]:
    image = _image_bytes("green", (4, 4), "JPEG")
    return {f"{name}/{folder}/{i}.jpg": image for folder in ("trainA", "trainB", "testA", "testB") for i in (1, 2)}


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` unless ``server.ignore_range`` (or, with
    ``server.send_from`` set, answers it with a 206 from that offset instead); with ``server.cut_after`` set, sends
    only that many bytes of the next body and drops the connection."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.log.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, wanted = 0, self.headers.get("Range")
        if wanted and not server.ignore_range:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = start if server.send_from is None else server.send_from
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:
            body, server.cut_after = body[: server.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.log, httpd.ignore_range, httpd.cut_after, httpd.send_from = {}, [], False, None, None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = lambda path: f"http://127.0.0.1:{httpd.server_port}{path}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_recorded_checksums(monkeypatch):
    # Test archives are not the real ones: start each test from an empty checksum table.
    monkeypatch.setattr(dl, "SHA256", {})


PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


# ----------------------------------------------------------------------------------------------- download


def test_download_complete_and_verified(server, tmp_path, capsys):
    server.files["/f.bin"] = PAYLOAD
    dest = dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin.part").exists()
    assert "sha256 OK" in capsys.readouterr().out


def test_download_resumes_a_part_file_with_range(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256=PAYLOAD_SHA, progress=False)
    assert server.log == [("/f.bin", "bytes=1000-")]
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_interrupted_download_continues_where_it_stopped(server, tmp_path):
    server.files["/f.bin"], server.cut_after = PAYLOAD, 50_000
    with pytest.raises(dl.DownloadError, match="run the same command again"):
        dl.download(server.url("/f.bin"), tmp_path / "f.bin", progress=False)
    assert not (tmp_path / "f.bin").exists()  # nothing half-made under the final name
    assert (tmp_path / "f.bin.part").stat().st_size == 50_000
    dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256=PAYLOAD_SHA, progress=False)
    assert server.log[-1] == ("/f.bin", "bytes=50000-")
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    server.files["/f.bin"], server.ignore_range = PAYLOAD, True
    (tmp_path / "f.bin.part").write_bytes(b"x" * 100)
    dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256=PAYLOAD_SHA, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_refetching(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)  # a run that died between the last byte and the rename
    dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256=PAYLOAD_SHA, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_part_file_longer_than_the_file_is_removed(server, tmp_path):
    # HTTP 416 (nothing at that offset) with a total size that is not the part's: the part is not this file.
    server.files["/f.bin"] = PAYLOAD
    part = tmp_path / "f.bin.part"
    part.write_bytes(PAYLOAD + b"stale")
    with pytest.raises(dl.DownloadError, match="did not match"):
        dl.download(server.url("/f.bin"), tmp_path / "f.bin", progress=False)
    assert not part.exists() and not (tmp_path / "f.bin").exists()
    dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256=PAYLOAD_SHA, progress=False)  # starts over
    assert server.log[-1] == ("/f.bin", None)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_partial_content_from_the_wrong_offset_is_not_appended(server, tmp_path):
    server.files["/f.bin"], server.send_from = PAYLOAD, 200
    part = tmp_path / "f.bin.part"
    part.write_bytes(PAYLOAD[:1000])
    with pytest.raises(dl.DownloadError, match="sent bytes from 200, not 1000"):
        dl.download(server.url("/f.bin"), tmp_path / "f.bin", progress=False)
    assert not part.exists() and not (tmp_path / "f.bin").exists()
    server.send_from = None
    dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256=PAYLOAD_SHA, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_is_an_error_and_keeps_no_archive(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(dl.ChecksumError, match="sha256 mismatch") as err:
        dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256="0" * 64, progress=False)
    assert PAYLOAD_SHA in str(err.value)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()
    assert (tmp_path / "f.bin.bad").read_bytes() == PAYLOAD


def test_unknown_checksum_is_printed_as_not_verified(server, tmp_path, capsys):
    server.files["/f.bin"] = PAYLOAD
    dl.download(server.url("/f.bin"), tmp_path / "f.bin", progress=False)
    out = capsys.readouterr().out
    assert PAYLOAD_SHA in out and "not verified" in out


def test_http_error_names_the_status(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(server.url("/missing.zip"), tmp_path / "missing.zip", progress=False)


def test_unreachable_host_says_how_to_download_by_hand(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/facades.tar.gz"
    with pytest.raises(dl.DownloadError) as err:
        dl.fetch_dataset("pix2pix", "facades", tmp_path, url=url, progress=False)
    message = str(err.value)
    archive = tmp_path / "facades.tar.gz"
    assert "cannot reach 127.0.0.1" in message
    assert f"Download {url} manually to {archive}" in message
    assert f"python datasets/download_pix2pix_dataset.py facades --archive {archive}" in message


# ----------------------------------------------------------------------------------------------- datasets


def test_pix2pix_dataset_end_to_end(server, tmp_path, capsys):
    archive = _tar(tmp_path / "src.tar.gz", _pix2pix_files())
    server.files["/facades.tar.gz"] = archive.read_bytes()
    root = tmp_path / "data"
    target = dl.fetch_dataset("pix2pix", "facades", root, url=server.url("/facades.tar.gz"), progress=False)
    assert target == root / "facades"
    assert sorted(p.name for p in target.iterdir()) == ["test", "train", "val"]
    with Image.open(target / "train" / "1.jpg") as image:
        assert image.size == (8, 4)
    assert sorted(p.name for p in root.iterdir()) == ["facades"]  # archive deleted, no scratch left
    assert f"data.root={target} data.dataset_mode=aligned" in capsys.readouterr().out
    # A second run finds it ready and does not download again.
    dl.fetch_dataset("pix2pix", "facades", root, url=server.url("/facades.tar.gz"), progress=False)
    assert len(server.log) == 1 and "already prepared" in capsys.readouterr().out


def test_cyclegan_dataset_from_local_archive(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "horse2zebra.zip", _cyclegan_files())
    monkeypatch.setitem(dl.SHA256, "cyclegan/horse2zebra", hashlib.sha256(archive.read_bytes()).hexdigest())
    target = dl.fetch_dataset("cyclegan", "horse2zebra", tmp_path / "data", archive=archive, progress=False)
    assert sorted(p.name for p in target.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert archive.exists()  # the user's own archive is never deleted


def test_local_archive_with_wrong_checksum(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "horse2zebra.zip", _cyclegan_files())
    monkeypatch.setitem(dl.SHA256, "cyclegan/horse2zebra", "0" * 64)
    with pytest.raises(dl.ChecksumError):
        dl.fetch_dataset("cyclegan", "horse2zebra", tmp_path / "data", archive=archive, progress=False)
    assert not (tmp_path / "data" / "horse2zebra").exists()
    target = dl.fetch_dataset("cyclegan", "horse2zebra", tmp_path / "data", archive=archive, verify=False,
                              progress=False)
    assert (target / "trainA" / "1.jpg").exists()


def test_force_replaces_and_foreign_folder_is_refused(tmp_path):
    archive = _zip(tmp_path / "a.zip", _cyclegan_files())
    (tmp_path / "data" / "horse2zebra").mkdir(parents=True)
    (tmp_path / "data" / "horse2zebra" / "notes.txt").write_text("mine")
    with pytest.raises(dl.PrepareError, match="--out"):
        dl.fetch_dataset("cyclegan", "horse2zebra", tmp_path / "data", archive=archive, progress=False)
    target = dl.fetch_dataset("cyclegan", "horse2zebra", tmp_path / "data", archive=archive, force=True,
                              progress=False)
    assert not (target / "notes.txt").exists() and (target / "trainB").is_dir()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["horse2zebra"]


def test_wrong_layout_is_reported(tmp_path):
    files = {k: v for k, v in _cyclegan_files().items() if "/trainB/" not in k}
    archive = _zip(tmp_path / "a.zip", files)
    with pytest.raises(dl.ArchiveError, match="expected folders trainA, trainB"):
        dl.fetch_dataset("cyclegan", "horse2zebra", tmp_path / "data", archive=archive, progress=False)
    assert list((tmp_path / "data").iterdir()) == []


def test_cityscapes_and_unknown_names_explain_themselves(tmp_path):
    with pytest.raises(dl.PrepareError, match="cityscapes-dataset.com") as err:
        dl.fetch_dataset("pix2pix", "cityscapes", tmp_path)
    assert "prepare_cityscapes.py" in str(err.value)
    with pytest.raises(dl.PrepareError, match="available: facades"):
        dl.fetch_dataset("pix2pix", "horse2zebra", tmp_path)


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(os.urandom(5000)),
    lambda p: p.write_bytes(_tar(p.with_suffix(".src"), _pix2pix_files()).read_bytes()[:300]),
    lambda p: p.write_bytes(_zip(p.with_suffix(".src"), _cyclegan_files()).read_bytes()[:-40]),
], ids=["garbage", "truncated-tar.gz", "truncated-zip"])
def test_damaged_archives(tmp_path, make):
    archive = tmp_path / "in" / "facades.tar.gz"
    archive.parent.mkdir()
    make(archive)
    with pytest.raises(dl.ArchiveError, match="damaged"):
        dl.fetch_dataset("pix2pix", "facades", tmp_path / "data", archive=archive, progress=False)
    assert list((tmp_path / "data").iterdir()) == []


# ----------------------------------------------------------------------------------------------- safe extraction

EVIL = [
    ("tar-dotdot", "../evil.txt", lambda p: _tar(p, {"../evil.txt": b"x"})),
    ("tar-absolute", "/tmp/evil-abs.txt", lambda p: _tar(p, {"/tmp/evil-abs.txt": b"x"})),
    ("tar-symlink", "facades/link", lambda p: _tar(p, _pix2pix_files(), [("facades/link", tarfile.SYMTYPE,
                                                                           "../../evil.txt")])),
    ("tar-abs-symlink", "facades/link", lambda p: _tar(p, {}, [("facades/link", tarfile.SYMTYPE, "/etc/passwd")])),
    ("tar-hardlink", "facades/hard", lambda p: _tar(p, {}, [("facades/hard", tarfile.LNKTYPE, "../evil.txt")])),
    ("tar-abs-hardlink", "facades/hard", lambda p: _tar(p, {}, [("facades/hard", tarfile.LNKTYPE, "/etc/passwd")])),
    ("tar-device", "facades/dev", lambda p: _tar(p, {}, [("facades/dev", tarfile.CHRTYPE, "")])),
    ("tar-block-device", "facades/blk", lambda p: _tar(p, {}, [("facades/blk", tarfile.BLKTYPE, "")])),
    ("tar-fifo", "facades/fifo", lambda p: _tar(p, {}, [("facades/fifo", tarfile.FIFOTYPE, "")])),
    # e points (lexically) inside while s is absent; once s -> "." exists, writing through e lands outside.
    ("tar-link-chain", "facades/e", lambda p: _tar(p, {"facades/e": b"x"}, [
        ("facades/e", tarfile.SYMTYPE, "s/../../evil.txt"), ("facades/s", tarfile.SYMTYPE, ".")])),
    ("zip-dotdot", "a/../../evil.txt", lambda p: _zip(p, {"a/../../evil.txt": b"x"})),
    ("zip-absolute", "/tmp/evil-abs.txt", lambda p: _zip(p, {"/tmp/evil-abs.txt": b"x"})),
    ("zip-backslash", "..\\evil.txt", lambda p: _zip(p, {"..\\evil.txt": b"x"})),
    ("zip-symlink", "h/link", lambda p: _zip(p, _cyclegan_files("h"), {"h/link": "../../evil.txt"})),
    ("zip-fifo", "h/fifo", lambda p: _zip(p, _cyclegan_files("h"), special={"h/fifo": stat.S_IFIFO})),
    ("zip-device", "h/dev", lambda p: _zip(p, _cyclegan_files("h"), special={"h/dev": stat.S_IFCHR})),
]


@pytest.fixture(params=["tar-filter", "no-tar-filter"])
def tar_filter(request, monkeypatch):
    """Both with tarfile's extraction filters and without them, as on Python 3.10.0-3.10.11, where the checks of
    ``translate.data.download`` are all that stands between an archive and the file system."""
    if request.param == "no-tar-filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
        monkeypatch.delattr(tarfile, "FilterError", raising=False)
        if hasattr(tarfile, "fully_trusted_filter"):  # what tarfile does when no filter is asked for (before 3.14)
            monkeypatch.setattr(tarfile.TarFile, "extraction_filter", staticmethod(tarfile.fully_trusted_filter))
    return request.param


@pytest.mark.parametrize("member, make", [(m, f) for _, m, f in EVIL], ids=[i for i, _, _ in EVIL])
def test_unsafe_members_are_refused_by_name(tmp_path, member, make, tar_filter):
    archive = make(tmp_path / "evil.archive")
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    with pytest.raises(dl.UnsafeArchiveError) as err:
        dl.extract(archive, out)
    assert repr(member) in str(err.value)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not Path("/tmp/evil-abs.txt").exists()


def test_without_the_filter_tarfile_itself_would_extract_anything(tmp_path, tar_filter):
    # Proof that the "no-tar-filter" runs above test this module's checks and not Python's.
    archive = _tar(tmp_path / "a.tar", {}, [("link", tarfile.SYMTYPE, "/etc/passwd")])
    with tarfile.open(archive) as tar:
        if tar_filter == "no-tar-filter":
            tar.extractall(tmp_path / "out")
            assert os.readlink(tmp_path / "out" / "link") == "/etc/passwd"
        else:
            with pytest.raises(tarfile.FilterError):
                tar.extractall(tmp_path / "out", filter="data")


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_links_already_on_disk_cannot_lead_out(tmp_path, tar_filter, kind):
    # The target holds a link to a sibling folder whose name starts with the target's own: a plain prefix test of
    # the resolved path ("…/out-evil" starts with "…/out") would let the archive write there.
    out, outside = tmp_path / "out", tmp_path / "out-evil"
    out.mkdir()
    outside.mkdir()
    (out / "facades").symlink_to(outside, target_is_directory=True)
    files = {"facades/train/1.jpg": b"x"}
    archive = _tar(tmp_path / "a.tar.gz", files) if kind == "tar" else _zip(tmp_path / "a.zip", files)
    with pytest.raises(dl.UnsafeArchiveError, match="facades/train/1.jpg"):
        dl.extract(archive, out)
    assert list(outside.iterdir()) == []


def test_damaged_tar_is_an_archive_error_without_the_filter(tmp_path, tar_filter):
    # The member's header is whole, its data cut short: the error surfaces while extracting it.
    archive = _tar(tmp_path / "a.tar.gz", {"facades/train/1.jpg": os.urandom(20_000)})
    archive.write_bytes(archive.read_bytes()[:6000])
    (tmp_path / "out").mkdir()
    with pytest.raises(dl.ArchiveError, match="damaged"):
        dl.extract(archive, tmp_path / "out")


def test_unsafe_archive_leaves_nothing_behind(tmp_path):
    archive = _tar(tmp_path / "facades.tar.gz", _pix2pix_files(), [("facades/x", tarfile.SYMTYPE, "../../..")])
    with pytest.raises(dl.UnsafeArchiveError, match="facades/x"):
        dl.fetch_dataset("pix2pix", "facades", tmp_path / "data", archive=archive, progress=False)
    assert list((tmp_path / "data").iterdir()) == []


def test_dangling_link_chain_caught_by_final_sweep(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", {}, [("d/e", tarfile.SYMTYPE, "s/../../evil"), ("d/s", tarfile.SYMTYPE, ".")])
    (tmp_path / "out").mkdir()
    with pytest.raises(dl.UnsafeArchiveError, match="d/e"):
        dl.extract(archive, tmp_path / "out")


def test_links_inside_the_target_are_fine(tmp_path):
    archive = _tar(tmp_path / "facades.tar.gz", _pix2pix_files(), [("facades/train/3.jpg", tarfile.SYMTYPE, "1.jpg")])
    target = dl.fetch_dataset("pix2pix", "facades", tmp_path / "data", archive=archive, progress=False)
    assert (target / "train" / "3.jpg").read_bytes() == (target / "train" / "1.jpg").read_bytes()


# ----------------------------------------------------------------------------------------------- combine A and B


def _save(path: Path, color, size=(4, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_combine_a_and_b_pairs_by_name_and_reports_missing(tmp_path):
    _save(tmp_path / "A/train/1.png", "red")
    _save(tmp_path / "A/train/sub/2.png", "red")
    _save(tmp_path / "A/train/only_a.png", "red")
    _save(tmp_path / "A/val/3.png", "red")
    _save(tmp_path / "B/train/1.jpg", "blue")  # another extension is fine: paired by name without extension
    _save(tmp_path / "B/train/sub/2.png", "blue")
    _save(tmp_path / "B/train/only_b.png", "blue")
    _save(tmp_path / "B/val/3.png", "blue")
    report = dl.combine_a_and_b(tmp_path / "A", tmp_path / "B", tmp_path / "AB", progress=False)
    assert report.written == 3
    assert report.missing_b == [str(tmp_path / "A/train/only_a.png")]
    assert report.missing_a == [str(tmp_path / "B/train/only_b.png")]
    assert "only_a.png" in report.summary() and "only_b.png" in report.summary()
    with Image.open(tmp_path / "AB/train/1.png") as pair:
        assert pair.size == (8, 4)
        left, right = pair.getpixel((0, 0)), pair.getpixel((7, 3))
    assert left == (255, 0, 0) and right[2] > 200 and right[0] < 50
    assert (tmp_path / "AB/train/sub/2.png").exists() and (tmp_path / "AB/val/3.png").exists()


def test_combine_refuses_size_mismatch_before_writing(tmp_path):
    _save(tmp_path / "A/train/1.png", "red")
    _save(tmp_path / "A/train/2.png", "red")
    _save(tmp_path / "B/train/1.png", "blue")
    _save(tmp_path / "B/train/2.png", "blue", size=(6, 4))
    with pytest.raises(dl.PrepareError, match=r"2\.png is 4x4 but .*2\.png is 6x4"):
        dl.combine_a_and_b(tmp_path / "A", tmp_path / "B", tmp_path / "AB", progress=False)
    assert not (tmp_path / "AB").exists()


def test_combine_use_ab_and_workers(tmp_path):
    for i in range(3):
        _save(tmp_path / f"A/test/{i}_A.png", "red")
        _save(tmp_path / f"B/test/{i}_B.png", "blue")
    report = dl.combine_a_and_b(tmp_path / "A", tmp_path / "B", tmp_path / "AB", use_ab=True, workers=2,
                                num_imgs=2, progress=False)
    assert report.written == 2
    assert sorted(p.name for p in (tmp_path / "AB/test").iterdir()) == ["0.png", "1.png"]


# ----------------------------------------------------------------------------------------------- cityscapes

CITY_IDS = {"train": ["aachen_000000_000019", "aachen_000001_000019"], "val": ["frankfurt_000000_000294"]}


def _cityscapes(tmp_path: Path, as_zip: bool) -> tuple[Path, Path]:
    labels = {f"gtFine/{phase}/{i.split('_')[0]}/{i}_gtFine_color.png": _image_bytes("blue", (16, 8))
              for phase, ids in CITY_IDS.items() for i in ids}
    labels["gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"] = _image_bytes("black", (16, 8))
    photos = {f"leftImg8bit/{phase}/{i.split('_')[0]}/{i}_leftImg8bit.png": _image_bytes("red", (16, 8))
              for phase, ids in CITY_IDS.items() for i in ids}
    if as_zip:
        return _zip(tmp_path / "gtFine_trainvaltest.zip", labels), _zip(tmp_path / "leftImg8bit_trainvaltest.zip",
                                                                        photos)
    for name, data in {**labels, **photos}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path / "gtFine", tmp_path / "leftImg8bit"


@pytest.mark.parametrize("as_zip", [True, False], ids=["zips", "folders"])
def test_prepare_cityscapes(tmp_path, as_zip):
    gtfine, leftimg = _cityscapes(tmp_path, as_zip)
    out = dl.prepare_cityscapes(gtfine, leftimg, tmp_path / "out", size=8, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["test", "testA", "testB", "train", "trainA", "trainB"]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["0.jpg", "1.jpg"]
    assert [p.name for p in (out / "testA").iterdir()] == ["0_A.jpg"]
    with Image.open(out / "train/0.jpg") as pair:
        assert pair.size == (16, 8)
        photo, label = pair.getpixel((1, 4)), pair.getpixel((14, 4))
    assert photo[0] > 200 and label[2] > 200  # photo (A) left, label (B) right
    with pytest.raises(dl.PrepareError, match="--force"):
        dl.prepare_cityscapes(gtfine, leftimg, out, size=8, progress=False)


def test_prepare_cityscapes_wrong_input(tmp_path):
    with pytest.raises(dl.PrepareError, match="_gtFine_color.png"):
        dl.prepare_cityscapes(tmp_path, tmp_path, tmp_path / "out", progress=False)


# ----------------------------------------------------------------------------------------------- scripts


def _script(name: str):
    """Load a datasets/ script as a module, to call its main(argv) in this process."""
    spec = importlib.util.spec_from_file_location(f"datasets_{name[:-3]}", REPO / "datasets" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HELP_RUNNER = """
import runpy, sys
for script in sys.argv[1:]:
    print("=== " + script, flush=True)
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
"""


def test_scripts_help_in_a_fresh_interpreter(tmp_path):
    # One interpreter for all four (the package import is the slow part), started outside the checkout and
    # without PYTHONPATH: the scripts must make the package importable themselves.
    needles = {"download_pix2pix_dataset.py": "edges2handbags", "download_cyclegan_dataset.py": "horse2zebra",
               "combine_A_and_B.py": "--fold_AB", "prepare_cityscapes.py": "leftImg8bit_trainvaltest.zip"}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scripts = [str(REPO / "datasets" / name) for name in needles]
    run = subprocess.run([sys.executable, "-c", HELP_RUNNER, *scripts], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    sections = run.stdout.split("=== ")[1:]
    assert len(sections) == 4
    for section, (name, needle) in zip(sections, needles.items()):
        header, text = section.split("\n", 1)
        assert header.endswith(name) and text.startswith("usage:") and needle in text, section


def test_download_scripts(tmp_path, capsys):
    cyclegan, pix2pix = _script("download_cyclegan_dataset.py"), _script("download_pix2pix_dataset.py")
    archive = _zip(tmp_path / "h.zip", _cyclegan_files())
    assert cyclegan.main(["horse2zebra", "--root", str(tmp_path / "data"), "--archive", str(archive)]) == 0
    assert (tmp_path / "data/horse2zebra/trainA/1.jpg").exists()
    assert "data.dataset_mode=unaligned" in capsys.readouterr().out

    url = f"http://127.0.0.1:{_closed_port()}/facades.tar.gz"
    assert pix2pix.main(["facades", "--root", str(tmp_path / "off"), "--url", url, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach 127.0.0.1") and "manually to" in err
    assert f"download_pix2pix_dataset.py facades --archive {tmp_path / 'off' / 'facades.tar.gz'}" in err

    with pytest.raises(SystemExit) as exit_:
        pix2pix.main(["horse2zebra"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_combine_and_cityscapes_scripts(tmp_path, capsys):
    _save(tmp_path / "A/train/1.png", "red")
    _save(tmp_path / "B/train/1.png", "blue")
    _save(tmp_path / "B/train/2.png", "blue")
    argv = ["--fold_A", str(tmp_path / "A"), "--fold_B", str(tmp_path / "B"), "--fold_AB", str(tmp_path / "AB")]
    assert _script("combine_A_and_B.py").main([*argv, "--no_multiprocessing", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 aligned pairs" in out and "2.png" in out
    gtfine, leftimg = _cityscapes(tmp_path, as_zip=True)
    argv = ["--gtFine_dir", str(gtfine), "--leftImg8bit_dir", str(leftimg), "--output_dir", str(tmp_path / "city"),
            "--size", "8", "--no-progress"]
    assert _script("prepare_cityscapes.py").main(argv) == 0
    assert (tmp_path / "city/trainB/1_B.jpg").exists()
