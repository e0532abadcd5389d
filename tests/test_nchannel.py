"""Any channel count, any bit depth (issue #31), the data and training side: multi-page / multi-channel / float TIFF,
.npy / .npz and 16-bit PNG read exactly; each side's channel count checked at scan time; data.normalize (auto,
minmax, percentile, fixed, meanstd) fitted once, cached, written into the config and inverted exactly; the geometric
augmentations, DiffAugment and sample grids with N channels; tiny training runs on such data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch.utils.data import default_collate

import translate.data.scan as scan
from translate.config import ConfigError, from_dict, load_config
from translate.data import DatasetError, build_dataset
from translate.data.transforms import Transform, resize
from translate.diffaugment import DiffAugment
from translate.engine.samples import save_samples, to_rgb
from translate.imageio import BadImageError, decode_data, probe_data
from translate.networks import DISCRIMINATORS, GENERATORS, create_discriminator, create_generator
from translate.normalization import MEANSTD_SPAN, Normalization, Stats, fit


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Each test's own scan cache."""
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def config(root, *overrides: str, **data):
    values = {"load_size": 32, "crop_size": 32, "num_workers": 0, **data}
    return load_config(None, [f"data.root={root}", "train.progress=false", "model.cyclegan.lambda_identity=0",
                              *(f"data.{k}={v}" for k, v in values.items()), *overrides])


# --- reading: every format, values exact --------------------------------------------------------------------------
def test_multi_page_and_multi_sample_tiff_keep_every_channel_and_the_sample_type(tmp_path):
    bands = rng().integers(0, 4096, (5, 12, 20)).astype(np.uint16)  # 5 pages of 12×20
    hwc = np.moveaxis(bands, 0, -1)
    tifffile.imwrite(tmp_path / "pages.tif", bands, photometric="minisblack")
    tifffile.imwrite(tmp_path / "samples.tif", hwc, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "planar.tif", bands, photometric="minisblack", planarconfig="separate")
    tifffile.imwrite(tmp_path / "plain.tif", hwc)  # what tifffile.imwrite of an H×W×C array gives (pages of H×W)
    for name in ("pages", "samples", "planar", "plain"):
        pixels, info = decode_data(tmp_path / f"{name}.tif")
        assert pixels.dtype == np.uint16 and np.array_equal(pixels, hwc), name
        assert (info.channels, info.kind, info.dtype) == (5, "data", "uint16")
        assert probe_data(tmp_path / f"{name}.tif") == info  # the header alone says the same
    # More axes (e.g. time × channel pages): all but Y and X become channels, in order.
    stack = rng(1).integers(0, 255, (3, 2, 12, 20)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    folded = np.moveaxis(stack, (2, 3), (0, 1)).reshape(12, 20, 6)
    assert np.array_equal(decode_data(tmp_path / "stack.tif")[0], folded)


def test_float_tiff_is_read_as_float32_unclipped(tmp_path):
    gray = (rng().random((12, 20)) * 5000 - 100).astype(np.float32)  # beyond [0, 1] both ways: nothing clipped
    rgb = rng(1).random((12, 20, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "g.tif", gray)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    pixels, info = decode_data(tmp_path / "g.tif")
    assert pixels.dtype == np.float32 and np.array_equal(pixels[..., 0], gray) and info.kind == "gray"
    pixels, info = decode_data(tmp_path / "c.tif")
    assert pixels.dtype == np.float32 and np.array_equal(pixels, rgb) and info.kind == "rgb"


def test_arrays_in_each_layout(tmp_path):
    hwc = rng().random((12, 20, 4)).astype(np.float32)
    chw = np.ascontiguousarray(np.moveaxis(hwc, -1, 0))
    np.save(tmp_path / "hwc.npy", hwc)
    np.save(tmp_path / "chw.npy", chw)
    np.save(tmp_path / "gray.npy", hwc[..., 0])
    np.save(tmp_path / "big_endian.npy", chw.astype(">f8"))
    np.savez_compressed(tmp_path / "one.npz", image=chw)
    for name in ("hwc.npy", "chw.npy", "one.npz"):  # auto: the smallest axis, first or last, is the channels
        pixels, info = decode_data(tmp_path / name)
        assert pixels.dtype == np.float32 and np.array_equal(pixels, hwc), name
        assert (info.channels, info.kind) == (4, "data")
    assert np.array_equal(decode_data(tmp_path / "gray.npy")[0], hwc[..., :1])
    pixels, info = decode_data(tmp_path / "big_endian.npy")
    assert pixels.dtype == np.float64 and np.array_equal(pixels, hwc) and info.dtype == "float64"
    # Stated layouts, and the cases auto cannot tell.
    assert decode_data(tmp_path / "chw.npy", array_layout="chw")[0].shape == (12, 20, 4)
    assert decode_data(tmp_path / "chw.npy", array_layout="hwc")[0].shape == (4, 12, 20)
    np.save(tmp_path / "cube.npy", np.zeros((8, 8, 8), np.uint16))
    with pytest.raises(BadImageError, match=r"cube\.npy: cannot tell the channel axis .*array_layout=hwc or chw"):
        decode_data(tmp_path / "cube.npy")
    assert decode_data(tmp_path / "cube.npy", array_layout="chw")[0].shape == (8, 8, 8)
    np.savez(tmp_path / "two.npz", a=hwc, b=hwc)
    with pytest.raises(BadImageError, match=r"two\.npz: .* holds one array, this one 2 \(a, b\)"):
        decode_data(tmp_path / "two.npz")
    np.save(tmp_path / "objects.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(BadImageError, match="Python objects"):  # never unpickled
        decode_data(tmp_path / "objects.npy")


def test_16_bit_png_gray_and_colour_stay_16_bit(tmp_path):
    gray = rng().integers(0, 65536, (12, 20)).astype(np.uint16)
    rgb = rng(1).integers(0, 65536, (12, 20, 3)).astype(np.uint16)
    rgba = rng(2).integers(0, 65536, (12, 20, 4)).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "a.png"), rgba[..., [2, 1, 0, 3]])
    pixels, info = decode_data(tmp_path / "g.png")
    assert pixels.dtype == np.uint16 and np.array_equal(pixels[..., 0], gray) and info.kind == "gray"
    pixels, info = decode_data(tmp_path / "c.png")
    assert pixels.dtype == np.uint16 and np.array_equal(pixels, rgb) and (info.kind, info.alpha) == ("rgb", False)
    pixels, info = decode_data(tmp_path / "a.png")
    assert np.array_equal(pixels, rgba) and (info.channels, info.alpha) == (4, True)
    assert probe_data(tmp_path / "a.png") == info


def test_the_dataset_item_is_the_files_values_normalised_without_rounding(tmp_path):
    """16-bit and float samples reach the tensor unrounded: one unit of a 16-bit file is visible in it."""
    root = tmp_path / "data"
    (root / "train" / "A").mkdir(parents=True)
    (root / "train" / "B").mkdir(parents=True)
    a = rng().integers(1000, 1100, (3, 32, 32)).astype(np.uint16)  # a narrow range: an 8-bit trip would flatten it
    b = (rng(1).random((32, 32)) * 0.001).astype(np.float32)
    tifffile.imwrite(root / "train" / "A" / "x.tif", a, photometric="minisblack")
    tifffile.imwrite(root / "train" / "B" / "x.tif", b)
    cfg = config(root, "model.input_nc=3", "model.output_nc=1", dataset_mode="paired", preprocess="none",
                 no_flip="true", normalize="minmax")
    item = build_dataset(cfg, "train")[0]
    lo, hi = a.reshape(3, -1).min(1)[:, None, None], a.reshape(3, -1).max(1)[:, None, None]
    torch.testing.assert_close(item["A"], torch.from_numpy(((a - lo) / (hi - lo) * 2 - 1).astype(np.float32)))
    torch.testing.assert_close(item["B"][0], torch.from_numpy(((b - b.min()) / (b.max() - b.min()) * 2 - 1)
                                                              .astype(np.float32)))
    assert len(torch.unique(item["A"][0])) == len(np.unique(a[0]))  # every 16-bit level kept apart


# --- the scan: each side's channels -------------------------------------------------------------------------------
def test_a_file_with_another_channel_count_is_named_in_one_line(tmp_path):
    root = tmp_path / "data" / "train"
    root.mkdir(parents=True)
    for i in range(4):
        np.save(root / f"{i}.npy", rng(i).random((16, 16, 5)).astype(np.float32))
    np.save(root / "2.npy", rng(9).random((16, 16, 4)).astype(np.float32))
    good = config(tmp_path / "data", "model.input_nc=5", dataset_mode="single")
    bad = config(tmp_path / "data", "model.input_nc=4", dataset_mode="single")
    with pytest.raises(DatasetError) as info:
        build_dataset(good)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{root / '2.npy'} has 4 channels, not 5 (model.input_nc=5)")
    assert "set model.input_nc to the channel count of the data" in message
    with pytest.raises(DatasetError, match=r"0\.npy has 5 channels, not 4 \(model\.input_nc=4, as do 2 more files\)"):
        build_dataset(bad)
    # The header scan tells as much.
    with pytest.raises(DatasetError, match=r"2\.npy has 4 channels, not 5"):
        build_dataset(config(tmp_path / "data", "model.input_nc=5", dataset_mode="single", verify="header"))


@pytest.mark.parametrize("layout", ["aligned", "paired", "unaligned"])
def test_each_layout_checks_each_side(tmp_path, layout):
    """A 6-channel side and a 2-channel side: the files of each are checked against their own setting."""
    root = tmp_path / layout
    a, b = rng().random((16, 16, 6)).astype(np.float32), rng(1).random((16, 16, 2)).astype(np.float32)
    if layout == "aligned":
        (root / "train").mkdir(parents=True)
        np.save(root / "train" / "0.npy", np.concatenate([a, a], 1))
    else:
        folders = ("train/A", "train/B") if layout == "paired" else ("trainA", "trainB")
        for folder, x in zip(folders, (a, b)):
            (root / folder).mkdir(parents=True)
            np.save(root / folder / "0.npy", x)
    ok = (6, 6) if layout == "aligned" else (6, 2)
    item = build_dataset(config(root, f"model.input_nc={ok[0]}", f"model.output_nc={ok[1]}", dataset_mode=layout))[0]
    assert (item["A"].shape[0], item["B"].shape[0]) == ok
    with pytest.raises(DatasetError, match=rf"has {ok[1]} channels, not 3 \(model\.output_nc=3\)"):
        build_dataset(config(root, f"model.input_nc={ok[0]}", "model.output_nc=3", dataset_mode=layout))
    if layout == "paired":  # the B file is the one named
        with pytest.raises(DatasetError, match=r"train/B/0\.npy has 2 channels"):
            build_dataset(config(root, "model.input_nc=6", "model.output_nc=3", dataset_mode=layout))


def test_gray_and_rgb_images_still_convert_and_alpha_counts_where_asked(tmp_path):
    root = tmp_path / "data" / "train"
    root.mkdir(parents=True)
    rgba = rng().integers(0, 256, (16, 16, 4)).astype(np.uint8)
    Image.fromarray(rgba).save(root / "0.png")
    for nc in (1, 3, 4):  # luma of the composite, the composite, RGBA as 4 channels
        item = build_dataset(config(tmp_path / "data", f"model.input_nc={nc}", dataset_mode="single",
                                    preprocess="none", no_flip="true"))[0]
        assert item["A"].shape == (nc, 16, 16)
    assert torch.equal(item["A"], torch.from_numpy(rgba.transpose(2, 0, 1) / np.float32(127.5) - np.float32(1)))
    with pytest.raises(DatasetError, match=r"has 4 channels \(the last one alpha\), not 2"):
        build_dataset(config(tmp_path / "data", "model.input_nc=2", dataset_mode="single"))


# --- normalisation: each method by hand, and back ------------------------------------------------------------------
def parts(*arrays) -> Stats:
    total = None
    for i, a in enumerate(arrays):
        s = Stats.of(a, f"file{i}", sample_every=1)
        total = s if total is None else total.merge(s)
    return total


DATA = [rng(i).integers(0, 4096, (8, 10, 3)).astype(np.uint16) for i in range(3)]
ALL = np.concatenate([d.reshape(-1, 3) for d in DATA]).astype(np.float64)


def test_stats_merge_exactly_in_any_order():
    merged, backwards = parts(*DATA), parts(*DATA[::-1])
    whole = Stats.of(np.concatenate(DATA, 0), sample_every=1)
    for s in (merged, backwards):
        assert s.count == len(ALL) and s.minimum == ALL.min(0).tolist() and s.maximum == ALL.max(0).tolist()
        np.testing.assert_allclose(s.mean, ALL.mean(0), rtol=1e-12)
        np.testing.assert_allclose(s.std, ALL.std(0), rtol=1e-12)
        np.testing.assert_allclose(s.std, whole.std, rtol=1e-12)


def test_minmax_by_hand_and_back():
    n = fit("minmax", parts(*DATA))
    lo, hi = ALL.min(0), ALL.max(0)
    x = DATA[1]
    np.testing.assert_allclose(n.apply(x), (x - lo) / (hi - lo) * 2 - 1, rtol=0, atol=1e-6)
    back = n.invert(n.apply(x))
    assert back.dtype == np.uint16 and np.array_equal(back, x)  # 16-bit data round-trips exactly
    assert n.to_dict() == {"method": "minmax", "dtype": "uint16", "channels": 3, "low": lo.tolist(),
                           "high": hi.tolist()}
    assert Normalization.from_dict(n.to_dict()) == n


def test_percentile_matches_numpy_and_clips():
    n = fit("percentile", parts(*DATA), percentiles=(2.0, 97.0))
    lo, hi = np.percentile(ALL, [2.0, 97.0], axis=0)
    d = n.to_dict()
    np.testing.assert_array_equal(d["low"], lo)
    np.testing.assert_array_equal(d["high"], hi)
    assert d["percentiles"] == [2.0, 97.0]
    x = DATA[0]
    y = n.apply(x)
    np.testing.assert_allclose(y, np.clip((x - lo) / (hi - lo) * 2 - 1, -1, 1), atol=1e-6)
    inside = (x >= np.ceil(lo)) & (x <= np.floor(hi))
    assert np.array_equal(n.invert(y)[inside], x[inside])  # what was not clipped comes back exactly


def test_fixed_range_by_hand_back_and_refusing_data_outside_it():
    n = fit("fixed", parts(*DATA), value_range=(0, 4095))
    x = DATA[2]
    np.testing.assert_allclose(n.apply(x), x / 4095 * 2 - 1, atol=1e-6)
    assert np.array_equal(n.invert(n.apply(x)), x)
    # A torch tensor in (N, C, H, W), as a network returns it.
    out = torch.from_numpy(n.apply(x)).permute(2, 0, 1)[None]
    assert np.array_equal(n.invert(out, channel_axis=1)[0], x.transpose(2, 0, 1))
    with pytest.raises(ValueError, match=r"file\d: channel \d holds 40\d\d, outside the fixed range \[0, 4000\]"):
        fit("fixed", parts(*DATA), value_range=(0, 4000))


def test_meanstd_by_hand_and_back():
    floats = [(d / 4095).astype(np.float32) for d in DATA]
    values = np.concatenate([f.reshape(-1, 3) for f in floats]).astype(np.float64)
    n = fit("meanstd", parts(*floats))
    d = n.to_dict()
    np.testing.assert_allclose(d["mean"], values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(d["std"], values.std(0), rtol=1e-12)
    x = floats[0]
    np.testing.assert_allclose(n.apply(x), (x - values.mean(0)) / (MEANSTD_SPAN * values.std(0)), atol=1e-6)
    back = n.invert(n.apply(x))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=1e-6, atol=1e-7)


def test_auto_keeps_the_8_bit_rule_bit_for_bit_and_scales_16_bit_and_float():
    u8 = rng().integers(0, 256, (8, 8, 3)).astype(np.uint8)
    old = np.ascontiguousarray(u8, dtype=np.float32)
    old /= 127.5
    old -= 1.0  # the rule of translate.data.transforms.to_tensor before issue #31
    auto = Normalization()
    assert auto.apply(u8).tobytes() == old.tobytes()
    assert np.array_equal(auto.invert(auto.apply(u8)), u8)
    u16 = DATA[0]
    np.testing.assert_allclose(auto.apply(u16), u16 / 65535 * 2 - 1, atol=1e-6)
    assert np.array_equal(Normalization("auto", "uint16").invert(auto.apply(u16)), u16)
    f = rng().random((4, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(auto.apply(f), f * 2 - 1, atol=1e-7)
    with pytest.raises(ValueError, match="auto knows uint8, uint16 and float samples, not int16"):
        fit("auto", Stats.of(u16.astype(np.int16)))


def test_a_channel_without_spread_maps_to_zero():
    flat = np.full((4, 4, 2), 7, np.uint16)
    for method in ("minmax", "meanstd"):
        n = fit(method, Stats.of(flat))
        assert np.array_equal(n.apply(flat), np.zeros((4, 4, 2), np.float32))
        assert np.array_equal(n.invert(n.apply(flat)), flat)


def unaligned_uint16(root: Path) -> dict[str, list[np.ndarray]]:
    data = {}
    for side, (low, high, nc) in {"A": (100, 900, 2), "B": (20000, 60000, 3)}.items():
        (root / f"train{side}").mkdir(parents=True)
        data[side] = [rng(i + ord(side)).integers(low, high, (16, 16, nc)).astype(np.uint16) for i in range(5)]
        for i, x in enumerate(data[side]):
            tifffile.imwrite(root / f"train{side}" / f"{i}.tif", x, photometric="minisblack", planarconfig="contig")
    return data


@pytest.mark.parametrize("method", ["minmax", "percentile", "meanstd"])
def test_statistics_per_side_at_scan_time_cached_and_in_the_config(tmp_path, method, monkeypatch):
    data = unaligned_uint16(tmp_path / "data")
    cfg = config(tmp_path / "data", "model.input_nc=2", "model.output_nc=3", dataset_mode="unaligned",
                 normalize=method, normalize_percentiles="[1,99]")
    assert cfg.data.normalize_stats == {}
    ds = build_dataset(cfg)
    for side in "AB":
        values = np.concatenate([x.reshape(-1, x.shape[-1]) for x in data[side]]).astype(np.float64)
        stats = cfg.data.normalize_stats[side]
        assert ds.normalization[side] == Normalization.from_dict(stats)
        assert (stats["method"], stats["dtype"], stats["channels"]) == (method, "uint16", values.shape[1])
        if method == "minmax":
            assert (stats["low"], stats["high"]) == (values.min(0).tolist(), values.max(0).tolist())
        elif method == "percentile":
            np.testing.assert_array_equal([stats["low"], stats["high"]], np.percentile(values, [1, 99], axis=0))
        else:
            np.testing.assert_allclose([stats["mean"], stats["std"]], [values.mean(0), values.std(0)], rtol=1e-12)
    # Written into the resolved config, which reads back with them.
    assert from_dict(json.loads(json.dumps(_as_dict(cfg)))).data.normalize_stats == cfg.data.normalize_stats
    # Cached: a second start decodes each file once for the scan check... no: not at all.
    decodes = []
    real = scan.decode_data
    monkeypatch.setattr(scan, "decode_data", lambda path, **kw: decodes.append(path) or real(path, **kw))
    again = config(tmp_path / "data", "model.input_nc=2", "model.output_nc=3", dataset_mode="unaligned",
                   normalize=method, normalize_percentiles="[1,99]")
    build_dataset(again)
    assert decodes == [] and again.data.normalize_stats == cfg.data.normalize_stats
    # A changed file is measured again.
    os.utime(tmp_path / "data" / "trainA" / "0.tif", ns=(0, 10**18))
    build_dataset(config(tmp_path / "data", "model.input_nc=2", "model.output_nc=3", dataset_mode="unaligned",
                         normalize=method, normalize_percentiles="[1,99]"))
    assert len(decodes) == 1 + 5  # the scan decodes the changed file, the statistics every file of its side


def _as_dict(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg))


def test_other_splits_use_the_train_statistics_and_given_ones_are_kept(tmp_path):
    data = unaligned_uint16(tmp_path / "data")
    for side in "AB":
        (tmp_path / "data" / f"test{side}").mkdir()
        tifffile.imwrite(tmp_path / "data" / f"test{side}" / "t.tif", data[side][0][:8] // 2,
                         photometric="minisblack", planarconfig="contig")
    overrides = ("model.input_nc=2", "model.output_nc=3")
    cfg = config(tmp_path / "data", *overrides, dataset_mode="unaligned", normalize="minmax")
    test = build_dataset(cfg, "test")
    train = config(tmp_path / "data", *overrides, dataset_mode="unaligned", normalize="minmax")
    build_dataset(train)
    assert cfg.data.normalize_stats == train.data.normalize_stats
    assert test.normalization["A"].to_dict()["low"] == np.concatenate(data["A"]).reshape(-1, 2).min(0).tolist()
    # Given statistics of the method asked for are used as they are (a run's config.yaml, a model's).
    given = {"A": {"method": "minmax", "dtype": "uint16", "channels": 2, "low": [0, 0], "high": [1000, 1000]},
             "B": {"method": "minmax", "dtype": "uint16", "channels": 3, "low": [0] * 3, "high": [65535] * 3}}
    kept = config(tmp_path / "data", *overrides, dataset_mode="unaligned", normalize="minmax")
    kept.data.normalize_stats = json.loads(json.dumps(given))
    assert build_dataset(kept).normalization["A"] == Normalization.from_dict(given["A"])
    # ...and fitted again for another method.
    other = config(tmp_path / "data", *overrides, dataset_mode="unaligned", normalize="meanstd")
    other.data.normalize_stats = json.loads(json.dumps(given))
    build_dataset(other)
    assert other.data.normalize_stats["A"]["method"] == "meanstd"


def test_fixed_ranges_per_side_and_the_errors_that_name_a_file(tmp_path):
    unaligned_uint16(tmp_path / "data")
    cfg = config(tmp_path / "data", "model.input_nc=2", "model.output_nc=3", dataset_mode="unaligned",
                 normalize="fixed", normalize_range="[0,1000]", normalize_range_B="[0,65535]")
    ds = build_dataset(cfg)
    assert (ds.normalization["A"].to_dict()["high"], ds.normalization["B"].to_dict()["high"]) == ([1000.0] * 2,
                                                                                                 [65535.0] * 3)
    with pytest.raises(DatasetError, match=r"trainB/\d\.tif: channel \d holds \d+, outside the fixed range "
                                           r"\[0, 1000\]; widen it"):
        build_dataset(config(tmp_path / "data", "model.input_nc=2", "model.output_nc=3", dataset_mode="unaligned",
                             normalize="fixed", normalize_range="[0,1000]"))
    with pytest.raises(ConfigError, match=r"data\.normalize=fixed needs data\.normalize_range"):
        config(tmp_path / "data", normalize="fixed")
    # auto: int16 data and float data beyond [0, 1] are named, not squeezed or clipped.
    root = tmp_path / "floats" / "train"
    root.mkdir(parents=True)
    np.save(root / "0.npy", np.full((16, 16, 2), 0.5, np.float32))
    np.save(root / "1.npy", np.full((16, 16, 2), 3.5, np.float32))
    with pytest.raises(DatasetError, match=r"1\.npy holds float samples from 3\.5 to 3\.5, but data\.normalize=auto "
                                           r"takes floats to be in \[0, 1\]"):
        build_dataset(config(tmp_path / "floats", "model.input_nc=2", dataset_mode="single"))
    np.save(root / "1.npy", np.full((16, 16, 2), np.nan, np.float32))
    with pytest.raises(DatasetError, match=r"1\.npy: holds NaN or infinite values"):
        build_dataset(config(tmp_path / "floats", "model.input_nc=2", dataset_mode="single"))


def test_aligned_halves_have_their_own_statistics(tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    a = rng().integers(0, 100, (16, 16, 1)).astype(np.uint16)
    b = rng(1).integers(5000, 9000, (16, 16, 1)).astype(np.uint16)
    Image.fromarray(np.concatenate([a, b], 1)[..., 0]).save(tmp_path / "data" / "train" / "0.png")
    for direction, (first, second) in (("AtoB", (a, b)), ("BtoA", (b, a))):
        cfg = config(tmp_path / "data", "model.input_nc=1", "model.output_nc=1", dataset_mode="aligned",
                     normalize="minmax", direction=direction)
        build_dataset(cfg)
        stats = cfg.data.normalize_stats
        assert (stats["A"]["low"], stats["A"]["high"]) == ([first.min()], [first.max()])
        assert (stats["B"]["low"], stats["B"]["high"]) == ([second.min()], [second.max()])


# --- augmentation, DiffAugment, sample grids with N channels ----------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_geometric_augmentation_moves_every_channel_alike(dtype):
    base = (rng().random((40, 40, 1)) * (255 if dtype == np.uint8 else 60000)).astype(dtype)
    image = np.repeat(base, 7, axis=2)  # 7 equal channels: any channel moved otherwise would differ
    t = Transform(load_size=36, crop_size=32, augment=("rotate", "affine", "vflip"))
    for seed in range(4):
        params = t.sample((40, 40), rng(seed))
        out = t.apply(image, params)
        single = t.apply(base, params)  # the same parameters on one channel alone: the same pixels
        assert out.shape == (32, 32, 7) and out.dtype == dtype
        assert all(np.array_equal(out[..., c], single[..., 0]) for c in range(7))
    distinct = (rng(1).random((40, 40, 7)) * 200).astype(dtype)  # OpenCV's area resize in groups of 4 channels
    for size in ((17, 23), (64, 48)):
        out = resize(distinct, size)
        for c in range(7):  # (OpenCV's float kernels round differently by channel count: close, not equal)
            np.testing.assert_allclose(out[..., c], resize(distinct[..., c : c + 1], size)[..., 0], atol=1e-3)


def test_a_pair_keeps_its_geometry_across_sides_of_other_channel_counts(tmp_path):
    root = tmp_path / "data"
    (root / "train" / "A").mkdir(parents=True)
    (root / "train" / "B").mkdir(parents=True)
    for i in range(3):
        a = rng(i).integers(0, 4096, (40, 40, 5)).astype(np.uint16)
        np.save(root / "train" / "A" / f"{i}.npy", a)
        Image.fromarray(a[..., 2]).save(root / "train" / "B" / f"{i}.png")  # B = band 2 of A, as 16-bit PNG
    cfg = config(root, "model.input_nc=5", "model.output_nc=1", dataset_mode="paired", load_size=36,
                 normalize="fixed", normalize_range="[0,4095]", augment="[rotate,affine,vflip]")
    ds = build_dataset(cfg)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(3):
            item = ds[i]
            assert torch.equal(item["B"][0], item["A"][2])


def test_colour_jitter_is_refused_for_data_that_is_not_8_bit_gray_or_rgb(tmp_path):
    root = tmp_path / "data" / "train"
    root.mkdir(parents=True)
    np.save(root / "0.npy", rng().random((16, 16, 5)).astype(np.float32))
    with pytest.raises(ConfigError, match=r"data\.augment=color_jitter changes the colours of 8-bit gray or RGB "
                                          r"images, but model\.input_nc=5"):
        build_dataset(config(tmp_path / "data", "model.input_nc=5", dataset_mode="single", augment="[color_jitter]"))
    np.save(root / "0.npy", rng().random((16, 16, 3)).astype(np.float32))  # 3 channels, but float data
    with pytest.raises(ConfigError, match=r"0\.npy holds 3-channel float32 data"):
        build_dataset(config(tmp_path / "data", dataset_mode="single", augment="[color_jitter]"))
    assert len(build_dataset(config(tmp_path / "data", dataset_mode="single", augment="[rotate]"))) == 1


def test_diffaugment_with_n_channels(tiny_config):
    with pytest.raises(ConfigError, match=r"train\.diffaugment='color,cutout': its color op .* model\.input_nc=5; "
                                          r"use translation,cutout"):
        tiny_config("pix2pix", "model.input_nc=5", "train.diffaugment=color,cutout")
    tiny_config("pix2pix", "model.input_nc=5", "train.diffaugment=translation,cutout")
    tiny_config("pix2pix", "model.input_nc=1", "train.diffaugment=color")  # gray and RGB as before
    augment = DiffAugment(("translation", "cutout"))
    x = torch.arange(1.0, 14.0).view(1, 13, 1, 1).expand(2, 13, 16, 16).contiguous()
    torch.manual_seed(0)
    y = augment(x)
    moved = y != 0  # shifted in zeros and the cutout square: the same pixels in every channel
    assert moved[:, :1].logical_not().any() and all(torch.equal(moved[:, 0], moved[:, c]) for c in range(13))


def test_sample_grids_map_channels_to_rgb_as_stated(tmp_path):
    x = torch.stack([torch.full((2, 8, 8), float(v)) for v in (-1.0, -0.5, 0.0, 0.5, 1.0)], 1)  # 5 channels
    assert torch.equal(to_rgb(x), x[:, :3])  # the first three
    assert torch.equal(to_rgb(x, [4, 2, 0]), x[:, [4, 2, 0]])
    assert torch.equal(to_rgb(x, [3]), x[:, [3, 3, 3]])  # one index: gray
    assert torch.equal(to_rgb(x[:, :2]), x[:, [0, 0, 0]])  # one or two channels: the first as gray
    assert torch.equal(to_rgb(x[:, :3], [4, 2, 0]), x[:, :3])  # too few for the mapping: the default
    save_samples(tmp_path / "s.png", [x, x[:, :1]], channels=[4, 2, 0])
    grid = np.asarray(Image.open(tmp_path / "s.png"))
    # First cell: R = channel 4 (1.0 → 255), G = channel 2 (0.0 → 128), B = channel 0 (-1 → 0); second: gray of ch 0.
    assert grid[4, 4].tolist() == [255, 128, 0] and grid[4, 4 + 10].tolist() == [0, 0, 0]
    with pytest.raises(ConfigError, match=r"train\.sample_channels=\[1, 2\] must be 3 channel indices"):
        load_config(None, ["data.root=x", "train.sample_channels=[1,2]"])
    # The trainer's sample job passes train.sample_channels on.
    from types import SimpleNamespace

    from translate.engine.samples import Samples

    trainer = SimpleNamespace(run_dir=tmp_path, state=SimpleNamespace(step=3),
                              accelerator=SimpleNamespace(is_main_process=True),
                              config=load_config(None, ["data.root=x", "train.sample_channels=[4,2,0]"]),
                              recipe=SimpleNamespace(visuals=lambda batch, ctx: [x]))
    (tmp_path / "samples").mkdir()
    Samples(trainer).save({}, {})
    assert np.asarray(Image.open(tmp_path / "samples" / "step_000003.png"))[4, 4].tolist() == [255, 128, 0]


# --- networks of any channel count ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n, e in GENERATORS.items() if e.kind == "image"])
def test_every_image_generator_builds_with_any_channel_count(name):
    entry = GENERATORS[name]
    input_nc, output_nc = (4, 4) if "sr" in name else (5, 2)  # super-resolution keeps the channels
    size = max(entry.min_size, 32)
    options = {"ngf": 4} if "sr" in name else {"ngf": 4, "norm": "instance"}
    net = create_generator(name, input_nc=input_nc, output_nc=output_nc, **options)
    with torch.no_grad():
        y = net(torch.rand(1, input_nc, size, size) * 2 - 1)
    assert y.shape == (1, output_nc, size * entry.scale, size * entry.scale) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_every_discriminator_builds_with_any_channel_count(name):
    net = create_discriminator(name, input_nc=7, ndf=4, n_layers=3, norm="instance")
    with torch.no_grad():
        assert torch.isfinite(net(torch.rand(1, 7, 64, 64))).all()


def test_identity_terms_need_as_many_channels_on_both_sides(tiny_config):
    with pytest.raises(ConfigError, match=r"model\.cyclegan\.lambda_identity=0\.5 .* \(5 != 3\); set it to 0"):
        tiny_config("cyclegan", "model.input_nc=5")
    with pytest.raises(ConfigError, match=r"model\.cut\.nce_idt=true .* \(5 != 3\); set it to false"):
        tiny_config("cut", "model.input_nc=5")
    assert tiny_config("cyclegan", "model.input_nc=13", "model.cyclegan.lambda_identity=0").model.input_nc == 13


# --- end to end: a few training steps on 16-bit, float and 5-channel data ------------------------------------------
def train_briefly(cfg) -> Path:
    from translate.engine.trainer import train

    train(cfg)
    run = Path(cfg.train.output_dir)
    losses = [json.loads(line) for line in (run / "logs" / "losses.jsonl").read_text().splitlines()]
    assert [row["step"] for row in losses] == [1, 2]
    assert all(np.isfinite(v) for row in losses for k, v in row.items() if k.startswith("loss"))
    assert (run / "samples" / "step_000002.png").is_file() and (run / "model" / "config.json").is_file()
    return run


TINY = ["model.ngf=8", "model.ndf=8", "model.netG=resnet_6blocks", "data.num_workers=0", "train.max_steps=2",
        "train.log_every=1", "train.sample_every=2", "train.report=false", "train.progress=false",
        "train.mixed_precision=no"]


def test_pix2pix_trains_on_the_builtin_5_band_16_bit_data(tmp_path):
    from translate.data.builtin import CHANNELS, MODES

    assert (MODES["multispectral"], CHANNELS["multispectral"]) == ("paired", (5, 1))
    cfg = load_config(None, ["model.recipe=pix2pix", "data.builtin=multispectral", f"data.root={tmp_path / 'ms'}",
                             "data.dataset_mode=paired", "model.input_nc=5", "model.output_nc=1",
                             "data.normalize=fixed", "data.normalize_range=[0,4095]",
                             "data.normalize_range_B=[0,65535]", "data.load_size=36", "data.crop_size=32",
                             "train.sample_channels=[2,1,0]", *TINY, f"train.output_dir={tmp_path / 'run'}"])
    batch = default_collate([build_dataset(cfg)[i] for i in range(2)])
    assert batch["A"].shape == (2, 5, 32, 32) and batch["B"].shape == (2, 1, 32, 32)
    a = decode_data(tmp_path / "ms" / "train" / "A" / "0000.tif")[0]
    assert a.dtype == np.uint16 and a.shape == (64, 64, 5) and 0 <= a.min() and a.max() <= 4095
    run = train_briefly(cfg)
    resolved = from_dict(__import__("yaml").safe_load((run / "config.yaml").read_text()))
    assert resolved.data.normalize_stats["A"] == {"method": "fixed", "dtype": "uint16", "channels": 5,
                                                  "low": [0.0] * 5, "high": [4095.0] * 5}
    assert resolved.data.normalize_stats["B"]["high"] == [65535.0]


def test_cyclegan_trains_on_float_arrays_against_16_bit_colour_images(tmp_path):
    root = tmp_path / "data"
    for folder in ("trainA", "trainB"):
        (root / folder).mkdir(parents=True)
    for i in range(4):  # 4-channel float32 arrays, channels first, in physical units
        np.save(root / "trainA" / f"{i}.npy", (rng(i).random((4, 40, 40)) * 300 - 50).astype(np.float32))
    for i in range(3):
        cv2.imwrite(str(root / "trainB" / f"{i}.png"), rng(10 + i).integers(0, 65536, (40, 40, 3), dtype=np.uint16))
    cfg = load_config(None, ["model.recipe=cyclegan", f"data.root={root}", "data.dataset_mode=unaligned",
                             "model.input_nc=4", "model.output_nc=3", "model.cyclegan.lambda_identity=0",
                             "model.cyclegan.pool_size=2", "data.normalize=percentile", "data.load_size=36",
                             "data.crop_size=32", *TINY, f"train.output_dir={tmp_path / 'run'}"])
    run = train_briefly(cfg)
    stats = __import__("yaml").safe_load((run / "config.yaml").read_text())["data"]["normalize_stats"]
    assert (stats["A"]["dtype"], stats["A"]["channels"], stats["B"]["dtype"]) == ("float32", 4, "uint16")
    assert stats["A"]["low"][0] < 0 < 200 < stats["A"]["high"][0]


def test_pix2pix_trains_on_16_bit_gray_to_float_with_meanstd(tmp_path):
    root = tmp_path / "data"
    (root / "train" / "A").mkdir(parents=True)
    (root / "train" / "B").mkdir(parents=True)
    for i in range(3):
        a = rng(i).integers(0, 65536, (32, 32)).astype(np.uint16)
        Image.fromarray(a).save(root / "train" / "A" / f"{i}.png")
        tifffile.imwrite(root / "train" / "B" / f"{i}.tif", (a / 65535.0 * 7).astype(np.float32))
    cfg = load_config(None, ["model.recipe=pix2pix", f"data.root={root}", "data.dataset_mode=paired",
                             "model.input_nc=1", "model.output_nc=1", "data.normalize=meanstd", "data.load_size=32",
                             "data.crop_size=32", *TINY, f"train.output_dir={tmp_path / 'run'}"])
    run = train_briefly(cfg)
    stats = __import__("yaml").safe_load((run / "config.yaml").read_text())["data"]["normalize_stats"]
    assert (stats["A"]["method"], stats["A"]["dtype"], stats["B"]["dtype"]) == ("meanstd", "uint16", "float32")
