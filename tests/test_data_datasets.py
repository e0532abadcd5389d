"""The dataset layouts on tiny folders: file discovery, pairing, channels, seeded augmentation, bad files."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data._utils import ExceptionWrapper

from translate.config import ConfigError, load_config
from translate.data import (
    BadImageError,
    DatasetError,
    DatasetNotFoundError,
    build_dataset,
    lab_to_rgb,
    list_images,
)


def config(root, *overrides, **data):
    """An aligned config for ``root`` with small sizes; ``data`` keys are data.* overrides."""
    values = {"dataset_mode": "aligned", "load_size": 20, "crop_size": 16, **data}
    # (The default recipe, CycleGAN, without its identity terms: they need as many channels on both sides.)
    return load_config(None, [f"data.root={root}", "model.cyclegan.lambda_identity=0",
                              *(f"data.{k}={v}" for k, v in values.items()), *overrides])


def save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def noise(h, w, c=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[..., 0] if c == 1 else a


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def aligned(tmp_path):
    """root/train/*.png with identical halves (odd total width: 2 × 21 + 1) and root/test/."""
    for i in range(4):
        half = noise(19, 21, seed=i)
        save(tmp_path / "train" / f"{i}.png", np.concatenate([half, half, half[:, :1]], axis=1))
    save(tmp_path / "test" / "t.png", np.concatenate([np.zeros((19, 21, 3), np.uint8)] * 2, axis=1))
    return tmp_path


def test_list_images_recursive_sorted_hidden_ignored(tmp_path):
    for name in ("b.PNG", "a/c.jpg", "a/z.Tiff", ".hidden.png", ".git/x.png", "notes.txt", "A.bmp", "w.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)  # followed, but only once
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "A.bmp", "a/c.jpg", "a/z.Tiff", "b.PNG", "w.webp",
    ]


def test_aligned_halves_get_the_same_crop_and_flip(aligned):
    ds = build_dataset(config(aligned, augment="[color_jitter,rotate,vflip]"))
    assert len(ds) == 4
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert item["A"].shape == item["B"].shape == (3, 16, 16) and item["A"].dtype == torch.float32
            assert -1 <= item["A"].min() and item["A"].max() <= 1
            assert torch.equal(item["A"], item["B"])  # identical halves stay identical pixel for pixel
            assert item["A_path"] == item["B_path"] == str(aligned / "train" / f"{i}.png")


def test_same_seed_epoch_index_same_item_and_epochs_differ(aligned):
    ds, other = build_dataset(config(aligned)), build_dataset(config(aligned))
    ds.set_epoch(1)
    other.set_epoch(1)
    other[3]  # the order of access does not matter: no shared generator
    assert all(torch.equal(ds[i]["A"], other[i]["A"]) for i in range(4))
    first = [ds[i]["A"] for i in range(4)]
    ds.set_epoch(2)
    assert not all(torch.equal(a, ds[i]["A"]) for i, a in enumerate(first))
    reseeded = build_dataset(config(aligned, "train.seed=7"))
    reseeded.set_epoch(1)
    assert not all(torch.equal(a, reseeded[i]["A"]) for i, a in enumerate(first))


def test_dataloader_workers_give_the_same_batches(aligned):
    ds = build_dataset(config(aligned))
    persistent = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True)
    for epoch in (5, 6):
        ds.set_epoch(epoch)  # reaches the persistent workers' copies too
        serial = [b["A"] for b in DataLoader(ds, batch_size=2, num_workers=0)]
        parallel = [b["A"] for b in persistent]
        assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_aligned_direction_channels_and_eval(aligned):
    left, right = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    save(aligned / "val" / "lr.png", np.concatenate([left, right], axis=1))
    item = build_dataset(config(aligned, "model.input_nc=1", direction="BtoA"), "val")[0]
    assert item["A"].shape == (1, 16, 16) and item["A"].min() == 1.0  # A is the right half, in gray
    assert item["B"].shape == (3, 16, 16) and item["B"].max() == -1.0
    a, b = noise(19, 21, seed=5), noise(19, 21, seed=6)
    save(aligned / "test" / "t.png", np.concatenate([a, b], axis=1))
    item = build_dataset(config(aligned, preprocess="crop", load_size=16), "test")[0]
    # Evaluation crops are centred and never flipped: (21 - 16) // 2 = 2 columns and (19 - 16) // 2 = 1 row in.
    for key, half in (("A", a), ("B", b)):
        expected = torch.from_numpy(half[1:17, 2:18].transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)
        torch.testing.assert_close(item[key], expected, atol=1e-6, rtol=0)


def test_preprocess_none_rounds_to_the_generator_stride(aligned):
    item = build_dataset(config(aligned, preprocess="none"), "test")[0]
    assert item["A"].shape == (3, 20, 20)  # 21 × 19 halves → nearest multiples of 4


def test_paired_folders(tmp_path):
    for name in ("x", "sub/y"):
        img = noise(13, 17, seed=len(name))
        save(tmp_path / "train" / "A" / f"{name}.png", img)
        save(tmp_path / "train" / "B" / f"{name}.png", img)  # same pixels: correspondence is checkable
    ds = build_dataset(config(tmp_path, dataset_mode="paired", augment="[rotate]"))
    assert len(ds) == 2 and ds[0]["A_path"].endswith("A/sub/y.png") and ds[0]["B_path"].endswith("B/sub/y.png")
    for i in range(2):
        assert torch.equal(ds[i]["A"], ds[i]["B"])
    swapped = build_dataset(config(tmp_path, dataset_mode="paired", direction="BtoA"))
    assert swapped[1]["A_path"].endswith("B/x.png")


def test_paired_without_split_level_and_different_sizes(tmp_path):
    save(tmp_path / "A" / "x.png", noise(10, 10))
    save(tmp_path / "B" / "x.jpg", noise(20, 20, c=1))
    for split in ("train", "test"):
        item = build_dataset(config(tmp_path, "model.output_nc=1", dataset_mode="paired"), split)[0]
        assert item["A"].shape == (3, 16, 16) and item["B"].shape == (1, 16, 16)


def test_paired_reports_missing_partners_and_duplicates_by_name(tmp_path):
    save(tmp_path / "train" / "A" / "a.png", noise(4, 4))
    save(tmp_path / "train" / "A" / "b.png", noise(4, 4))
    save(tmp_path / "train" / "A" / "b.jpg", noise(4, 4))
    save(tmp_path / "train" / "B" / "b.png", noise(4, 4))
    save(tmp_path / "train" / "B" / "c.png", noise(4, 4))
    with pytest.raises(DatasetError) as info:
        build_dataset(config(tmp_path, dataset_mode="paired"))
    message = str(info.value)
    assert "3 problems" in message and "same name twice" in message and "b.jpg" in message
    assert "no partner" in message and "A/a.png" in message and "B/c.png" in message


def test_unaligned(tmp_path):
    for i in range(3):
        save(tmp_path / "trainA" / f"a{i}.png", noise(20, 24, seed=i))
    for i in range(5):
        save(tmp_path / "trainB" / f"b{i}.png", noise(18, 18, c=1, seed=i))
        save(tmp_path / "testB" / f"b{i}.png", noise(18, 18, seed=i))
    save(tmp_path / "testA" / "a.png", noise(18, 18))
    ds = build_dataset(config(tmp_path, "model.output_nc=1", dataset_mode="unaligned"))
    assert len(ds) == 5
    items = [ds[i] for i in range(5)]
    assert [Path(it["A_path"]).name for it in items] == ["a0.png", "a1.png", "a2.png", "a0.png", "a1.png"]
    assert items[0]["B"].shape == (1, 16, 16)
    again = build_dataset(config(tmp_path, "model.output_nc=1", dataset_mode="unaligned"))
    assert [it["B_path"] for it in items] == [again[i]["B_path"] for i in range(5)]  # from the item's own generator
    drawn = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        drawn |= {ds[i]["B_path"] for i in range(5)}
    assert len(drawn) > 2
    serial = build_dataset(config(tmp_path, dataset_mode="unaligned", serial_batches=True))
    assert [Path(serial[i]["B_path"]).name for i in range(5)] == [f"b{i}.png" for i in range(5)]
    test = build_dataset(config(tmp_path, dataset_mode="unaligned"), "test")
    assert [Path(test[i]["B_path"]).name for i in range(5)] == [f"b{i}.png" for i in range(5)]
    swapped = build_dataset(config(tmp_path, dataset_mode="unaligned", direction="BtoA"), "test")
    assert Path(swapped[0]["A_path"]).parent.name == "testB" and Path(swapped[0]["B_path"]).parent.name == "testA"


def test_single_uses_split_folder_if_present(tmp_path):
    save(tmp_path / "x.png", noise(16, 16))
    save(tmp_path / "test" / "y.png", noise(16, 16))
    train = build_dataset(config(tmp_path, dataset_mode="single"))  # no root/train: all of root, recursively
    assert [Path(train[i]["A_path"]).relative_to(tmp_path).as_posix() for i in range(2)] == ["test/y.png", "x.png"]
    assert set(train[0]) == {"A", "A_path"} and train[0]["A"].shape == (3, 16, 16)
    test = build_dataset(config(tmp_path, dataset_mode="single"), "test")
    assert len(test) == 1 and test[0]["A_path"] == str(tmp_path / "test" / "y.png")


def test_colorization_round_trip(tmp_path):
    rgb = noise(16, 16)
    save(tmp_path / "c.png", rgb)
    ds = build_dataset(config(tmp_path, "model.input_nc=1", "model.output_nc=2", dataset_mode="colorization",
                              preprocess="none"), "test")
    item = ds[0]
    assert item["A"].shape == (1, 16, 16) and item["B"].shape == (2, 16, 16)
    assert item["A"].min() >= -1 and item["A"].max() <= 1 and item["B"].abs().max() <= 1
    back = lab_to_rgb(item["A"][None], item["B"][None])[0]
    expected = torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1
    assert (back - expected).abs().max() < 0.01
    with pytest.raises(ConfigError, match="input_nc=1"):
        build_dataset(config(tmp_path, dataset_mode="colorization"))


def test_alpha_background_from_config(tmp_path):
    save(tmp_path / "t.png", np.zeros((16, 16, 4), np.uint8))  # fully transparent
    white = build_dataset(config(tmp_path, dataset_mode="single"))[0]["A"]
    black = build_dataset(config(tmp_path, dataset_mode="single", background="black"))[0]["A"]
    assert white.min() == 1.0 and black.max() == -1.0


def test_bad_files_are_all_reported_at_once(tmp_path, caplog):
    for i in range(3):
        save(tmp_path / "train" / f"good{i}.png", noise(16, 16))
    (tmp_path / "train" / "text.jpg").write_text("hello")
    (tmp_path / "train" / "empty.png").write_bytes(b"")
    save(tmp_path / "train" / "huge.png", noise(300, 300))
    with pytest.raises(DatasetError) as info:
        build_dataset(config(tmp_path, dataset_mode="single", max_pixels=10_000))
    message = str(info.value)
    assert "3 of 6 files" in message and "data.on_bad_file=skip" in message
    for name in ("text.jpg", "empty.png", "huge.png"):
        assert name in message
    assert "data.max_pixels" in message and len(info.value.bad_files) == 3
    with caplog.at_level(logging.WARNING, logger="translate.data"):
        ds = build_dataset(config(tmp_path, dataset_mode="single", max_pixels=10_000, on_bad_file="skip"))
    assert len(ds) == 3
    assert len([r for r in caplog.records if "skipping 3 of 6" in r.getMessage()]) == 1


def test_truncated_file_at_load_time(tmp_path, caplog):
    for i in range(3):
        save(tmp_path / f"{i}.png", noise(64, 64, seed=i))
    truncate(tmp_path / "1.png")  # the header survives, so only decoding finds it
    # A header-only scan lets it in: the file stands for one that changed on disk after a full scan.
    ds = build_dataset(config(tmp_path, dataset_mode="single", verify="header"))
    assert len(ds) == 3
    with pytest.raises(BadImageError, match=r"1\.png: .*data\.on_bad_file=skip"):
        ds[1]
    try:
        ds[1]
    except BadImageError:
        # What a DataLoader worker sends back and the main process re-raises (type(e)(message)); checked without a
        # worker process because a failed loader's worker shutdown can stall its garbage collection for 5 s.
        wrapped = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 0")
    with pytest.raises(BadImageError, match=r"1\.png: cannot decode"):
        wrapped.reraise()
    skip = build_dataset(config(tmp_path, dataset_mode="single", on_bad_file="skip", verify="header"))
    with caplog.at_level(logging.WARNING, logger="translate.data"):
        item, again = skip[1], skip[1]
    assert item["A_path"].endswith("2.png") and torch.equal(item["A"], skip[2]["A"])  # the next item stands in
    assert torch.equal(item["A"], again["A"]) and list(skip.failed) == [str(tmp_path / "1.png")]
    assert len([r for r in caplog.records if "1.png" in r.getMessage()]) == 1  # logged once per file


def test_empty_and_missing_folders_say_what_is_expected(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match=r"(?s)no images .* found under .*train.*expected layout: root/<split>"):
        build_dataset(config(tmp_path, dataset_mode="aligned"))
    with pytest.raises(DatasetNotFoundError, match=r"(?s)val.*expected layout"):
        build_dataset(config(tmp_path, dataset_mode="aligned"), "val")
    with pytest.raises(DatasetNotFoundError, match="trainA"):
        build_dataset(config(tmp_path, dataset_mode="unaligned"))


def test_max_dataset_size_and_config_checks(aligned):
    assert len(build_dataset(config(aligned, max_dataset_size=2))) == 2
    with pytest.raises(ConfigError) as info:
        build_dataset(config(aligned, augment="[blur]", background="teal"), "dev")
    for problem in ("split='dev'", "blur", "data.background"):
        assert problem in str(info.value)
    # Any channel count is a setting now (issue #31): 2 channels are checked against the files, not refused.
    with pytest.raises(DatasetError, match=r"has 3 channels, not 2 \(model.output_nc=2, as do \d+ more files\)"):
        build_dataset(config(aligned, "model.output_nc=2"))
