"""The dataset scan decodes every file in full (in worker processes, cached by path, size and mtime) and files that
break after it are named: skipped deterministically, or one picklable error that crosses DataLoader workers."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import translate.data.scan as scan
from translate.config import load_config
from translate.data import BadImageError, DatasetError, build_dataset, check_image
from translate.data.base import BadFileDuringTraining
from translate.data.loader import build_loader


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Each test's own scan cache."""
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def config(root, **data):
    values = {"dataset_mode": "single", "load_size": 16, "crop_size": 16, "num_workers": 0, **data}
    return load_config(None, [f"data.root={root}", "train.progress=false",
                              *(f"data.{k}={v}" for k, v in values.items())])


def write(path: Path, fmt: str = "PNG", seed: int = 0, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, fmt)
    return path


def cut(path: Path, fraction: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def fully_decodable(path: Path) -> bool:
    """Pillow's own verdict, independent of the code under test."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception:  # OSError for cut data, zlib.error for garbled PNG data, ...
        return False
    return True


@pytest.fixture
def folder(tmp_path) -> Path:
    """root/: 4 good images, a JPEG and a PNG cut at 60 % of their bytes (their headers still parse)."""
    root = tmp_path / "data"
    for i in range(4):
        write(root / f"good{i}.png", seed=i)
    cut(write(root / "cut.jpg", "JPEG", seed=10, size=64))  # large enough that the cut spares the header
    cut(write(root / "cut.png", "PNG", seed=11))
    return root


def count_decodes(monkeypatch) -> list[str]:
    calls = []
    real = scan.decode_data

    def counted(path, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, **kwargs)

    monkeypatch.setattr(scan, "decode_data", counted)
    return calls


def test_full_scan_names_truncated_jpeg_and_png_that_pass_a_header_check(folder, caplog):
    paths = sorted(folder.iterdir())
    cut_files = {folder / "cut.jpg", folder / "cut.png"}
    assert {p for p in paths if not fully_decodable(p)} == cut_files
    assert all(check_image(p) is None for p in cut_files)  # headers parse: what a header-only scan sees
    assert scan.check_files(paths, max_pixels=None, on_bad_file="error", verify="header") == set()

    with pytest.raises(DatasetError) as info:
        build_dataset(config(folder))
    message = str(info.value)
    assert "2 of 6 files" in message and "data.on_bad_file=skip" in message
    assert "cut.jpg: cannot decode" in message and "cut.png: cannot decode" in message
    assert set(info.value.bad_files) == cut_files

    with caplog.at_level(logging.WARNING, logger="translate.data"):
        ds = build_dataset(config(folder, on_bad_file="skip"))
    assert sorted(Path(p).name for p in ds.paths) == [f"good{i}.png" for i in range(4)]
    assert "skipping 2 of 6 files" in caplog.text and "cut.jpg" in caplog.text and "cut.png" in caplog.text
    assert len(build_dataset(config(folder, verify="header"))) == 6  # the old header check lets both through


def test_worker_processes_give_the_same_verdicts(tmp_path, monkeypatch):
    root = tmp_path / "many"
    for i in range(40):
        write(root / f"{i:02d}.jpg", "JPEG", seed=i, size=16)
    for i in (3, 31):
        cut(root / f"{i:02d}.jpg")
    pools = []
    real_pool = scan.ProcessPoolExecutor
    monkeypatch.setattr(scan, "ProcessPoolExecutor", lambda n, **kw: pools.append(n) or real_pool(n, **kw))
    paths = sorted(root.iterdir())
    expected = {p for p in paths if not fully_decodable(p)}
    assert len(expected) == 2
    assert scan.check_files(paths, max_pixels=None, on_bad_file="skip", num_workers=2) == expected
    assert pools == [2]
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "other_cache"))  # in process, from scratch
    assert scan.check_files(paths, max_pixels=None, on_bad_file="skip", num_workers=0) == expected
    assert pools == [2]


def test_second_scan_of_an_unchanged_folder_decodes_nothing(folder, cache, monkeypatch):
    good = [folder / f"good{i}.png" for i in range(4)]
    decodes = count_decodes(monkeypatch)
    assert scan.check_files(good, max_pixels=None, on_bad_file="error") == set()
    assert sorted(decodes) == [p.name for p in good]
    [cache_file] = (cache / "verified").iterdir()
    assert cache_file == scan.cache_file([str(p) for p in good])
    entries = json.loads(cache_file.read_text())["files"]
    # size, mtime, pixels, what the file holds (channels, alpha, kind, sample type, float range), array layout
    assert entries == {str(p): [p.stat().st_size, p.stat().st_mtime_ns, 24 * 24, [3, False, "rgb", "uint8", None, None],
                                "auto"] for p in good}
    assert not [p for p in cache_file.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind

    decodes.clear()
    assert scan.check_files(good, max_pixels=None, on_bad_file="error") == set()
    assert build_dataset(config(folder, on_bad_file="skip")).paths == good
    assert sorted(decodes) == ["cut.jpg", "cut.png"]  # bad files are never cached: decoded again, named again


def test_a_change_of_size_or_mtime_means_decoding_again(folder, monkeypatch):
    good = [folder / f"good{i}.png" for i in range(4)]
    scan.check_files(good, max_pixels=None, on_bad_file="error")
    decodes = count_decodes(monkeypatch)

    # Cut, with the old mtime put back: the size alone tells.
    st = good[0].stat()
    cut(good[0])
    os.utime(good[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    # Same size, bytes zeroed in the middle, a newer mtime: the mtime alone tells.
    st = good[1].stat()
    data = bytearray(good[1].read_bytes())
    data[60:-20] = bytes(len(data) - 80)
    good[1].write_bytes(bytes(data))
    os.utime(good[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert good[1].stat().st_size == st.st_size
    assert not fully_decodable(good[0]) and not fully_decodable(good[1])

    assert scan.check_files(good, max_pixels=None, on_bad_file="skip") == {good[0], good[1]}
    assert sorted(decodes) == ["good0.png", "good1.png"]

    # A lower data.max_pixels than the cached files have: refused again, with the setting named.
    with pytest.raises(DatasetError, match=r"good2\.png: 24×24 = 576 pixels is more than data\.max_pixels=100"):
        scan.check_files(good[2:], max_pixels=100, on_bad_file="error")


def test_a_broken_or_unwritable_cache_only_costs_time(folder, cache, monkeypatch, caplog):
    good = [folder / f"good{i}.png" for i in range(4)]
    path = scan.cache_file([str(p) for p in good])
    path.parent.mkdir(parents=True)
    path.write_text('{"version": "1 Pillow')  # what a crash mid-write would leave without the atomic rename
    decodes = count_decodes(monkeypatch)
    assert scan.check_files(good, max_pixels=None, on_bad_file="error") == set()
    assert len(decodes) == 4 and len(json.loads(path.read_text())["files"]) == 4

    blocker = folder.parent / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("TRANSLATE_CACHE", str(blocker))  # a cache dir that cannot be created
    with caplog.at_level(logging.WARNING, logger="translate.data"):
        assert scan.check_files(good, max_pixels=None, on_bad_file="error") == set()
    assert "cannot write the dataset scan cache" in caplog.text


def truncated_after_the_scan(folder: Path, on_bad_file: str):
    """A dataset of the 4 good files whose second one is cut after the scan (as if changed on disk mid-training)."""
    for name in ("cut.jpg", "cut.png"):
        (folder / name).unlink()
    ds = build_dataset(config(folder, on_bad_file=on_bad_file))
    cut(folder / "good1.png")
    return ds


def test_file_truncated_after_the_scan_is_replaced_by_the_next_item_with_skip(folder, caplog):
    ds = truncated_after_the_scan(folder, "skip")
    with caplog.at_level(logging.WARNING, logger="translate.data"):
        item, again = ds[1], ds[1]
    assert item["A_path"].endswith("good2.png") and torch.equal(item["A"], ds[2]["A"])
    assert torch.equal(item["A"], again["A"])
    warnings = [r.getMessage() for r in caplog.records if "good1.png" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipping {folder / 'good1.png'}: cannot decode")

    # The same substitute through DataLoader workers: a resumed run sees the same samples.
    loader = build_loader(ds, config(folder, num_workers=2, serial_batches="true", batch_size=4), "cpu")
    [batch] = list(loader)
    assert [Path(p).name for p in batch["A_path"]] == ["good0.png", "good2.png", "good2.png", "good3.png"]
    assert torch.equal(batch["A"][1], ds[2]["A"])


def test_file_truncated_after_the_scan_with_error_is_one_line_naming_it_also_from_a_worker(folder):
    ds = truncated_after_the_scan(folder, "error")
    path = str(folder / "good1.png")
    with pytest.raises(BadFileDuringTraining) as info:
        ds[1]
    direct = info.value
    assert isinstance(direct, BadImageError) and direct.path == path and "\n" not in str(direct)
    assert str(direct).startswith(f"{path}: cannot decode (OSError: image file is truncated")
    assert "data.on_bad_file=skip" in str(direct)
    copy = pickle.loads(pickle.dumps(direct))
    assert (type(copy), str(copy), copy.path, copy.reason) == (type(direct), str(direct), path, direct.reason)

    # Through a real worker process the DataLoader rebuilds it as type(e)(the worker's whole traceback).
    loader = build_loader(ds, config(folder, num_workers=1, serial_batches="true"), "cpu")
    with pytest.raises(BadFileDuringTraining) as info:
        list(loader)
    rebuilt = info.value
    assert (str(rebuilt), rebuilt.path, rebuilt.reason) == (str(direct), path, direct.reason)


def test_one_argument_forms_of_the_error():
    line = "/data/x.png: cannot decode (OSError: broken) (" + BadFileDuringTraining.hint + ")"
    traceback_text = ("Caught BadFileDuringTraining in DataLoader worker process 0.\nOriginal Traceback (most recent "
                      "call last):\n  File \"...\", line 1, in load\n"
                      f"translate.data.base.BadFileDuringTraining: {line}\n")
    for text in (line, traceback_text):
        e = BadFileDuringTraining(text)
        assert (str(e), e.path, e.reason) == (line, "/data/x.png", "cannot decode (OSError: broken)")
    assert str(BadFileDuringTraining("/a.png", "bad\ndata")) == f"/a.png: bad data ({BadFileDuringTraining.hint})"

