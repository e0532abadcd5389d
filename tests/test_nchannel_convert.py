"""Any channel count, any bit depth (issue #31), the conversion side: ``Translator`` takes and gives arrays of any
channel count and sample type, normalised with the model's input side and inverted through its output side; ``translate
convert`` reads the data formats and writes results in the targets' type (TIFF, .npy, 16-bit PNG); metrics per channel
on the data's range; the report's channel → RGB mapping; ONNX export and reference checkpoints with other channel
counts. One end-to-end test per layout: train a few steps, export, convert with the exported model alone, read back.

The values are checked with a generator forced to the identity (or to picking channels): what is left between the
files is the normalise → invert path, which must give the input's values back within the normalisation's round trip
(exactly, for integers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch import nn

from translate import Translator
from translate.cli import main
from translate.config import load_config
from translate.evaluation.evaluate import evaluate_details, evaluate_model, format_table
from translate.imageio import decode_data
from translate.inference.convert import convert_folder, model_output
from translate.networks import create_generator
from translate.networks.description import ModelDescription, describe
from translate.networks.pretrained import generator_spec, save_pretrained
from translate.normalization import Normalization

TINY = ["model.ngf=8", "model.ndf=8", "model.netG=resnet_6blocks", "data.num_workers=0", "train.max_steps=2",
        "train.log_every=1", "train.sample_every=2", "train.report=false", "train.progress=false",
        "train.mixed_precision=no", "data.load_size=32", "data.crop_size=32"]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def smooth(seed: int, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    """A smooth random field (H, W, C) from ``low`` to ``high``: bilinear upsampling of 4×4 noise."""
    h, w, c = shape
    small = torch.from_numpy(rng(seed).random((1, c, 4, 4)))
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=True)[0]
    return (low + big.permute(1, 2, 0).numpy() * (high - low))


def picking(description: ModelDescription, channels=None, name: str = "G", **options) -> Translator:
    """A Translator of ``description`` whose generator returns, in [-1, 1], its input's ``channels`` (default: the
    first output_nc ones): the identity for as many channels in as out."""
    spec = description.generators[name]
    conv = nn.Conv2d(spec["input_nc"], spec["output_nc"], 1, bias=False)
    weight = torch.zeros_like(conv.weight)
    for o, i in enumerate(channels or range(spec["output_nc"])):
        weight[o, i] = 1
    conv.weight.data = weight
    return Translator({name: conv}, description, **options)


def load_generators(model) -> dict[str, nn.Module]:
    from translate.networks.pretrained import load_pretrained

    return load_pretrained(describe(model))[1]


def described(input_nc: int, output_nc: int, normalize: dict | None, **config) -> ModelDescription:
    spec = generator_spec("resnet_6blocks", 8, "instance", False, input_nc, output_nc)
    return ModelDescription.from_config({"generators": {"G": spec}, "directions": {"AtoB": "G"},
                                         "normalize": normalize, **config})


def minmax(low, high, dtype: str) -> dict:
    return {"method": "minmax", "dtype": dtype, "channels": len(low), "low": list(low), "high": list(high)}


# --- the model's sides: which normalisation each generator reads and writes --------------------------------------
def test_each_generator_reads_and_writes_its_own_sides():
    stats = {"A": minmax([0], [10], "uint16"), "B": minmax([0, 0, 0], [1, 1, 1], "float32")}
    spec = generator_spec("resnet_6blocks", 8, "instance", False, 1, 3)
    back = generator_spec("resnet_6blocks", 8, "instance", False, 3, 1)
    cyclegan = {"generators": {"G_A": spec, "G_B": back}, "normalize": stats}
    d = ModelDescription.from_config({**cyclegan, "directions": {"AtoB": "G_A", "BtoA": "G_B"}})
    assert (d.units("G_A"), d.units("G_B")) == ((stats["A"], stats["B"]), (stats["B"], stats["A"]))
    # data.direction=BtoA: the folders' BtoA is the network's A → B (the stats are the network's sides).
    swapped = ModelDescription.from_config({**cyclegan, "directions": {"BtoA": "G_A", "AtoB": "G_B"},
                                            "config": {"data": {"direction": "BtoA"}}})
    assert swapped.units("G_A") == (stats["A"], stats["B"]) and swapped.units("G_B") == (stats["B"], stats["A"])
    pix2pix = ModelDescription.from_config({"generators": {"G": spec}, "directions": {"BtoA": "G"},
                                            "normalize": stats, "config": {"data": {"direction": "BtoA"}}})
    assert pix2pix.units("G") == (stats["A"], stats["B"])
    one_folder = described(1, 1, {"A": stats["A"]})  # super-resolution: side A in and out
    assert one_folder.units("G") == (stats["A"], stats["A"]) and described(3, 3, None).units("G") == (None, None)


# --- Translator: normalise → generator → invert, any channels and sample type ----------------------------------
def test_identity_gives_back_integers_exactly_and_floats_within_their_rounding():
    x16 = rng().integers(1000, 60000, (20, 24, 2)).astype(np.uint16)
    stats16 = minmax(x16.reshape(-1, 2).min(0).tolist(), x16.reshape(-1, 2).max(0).tolist(), "uint16")
    t = picking(described(2, 2, {"A": stats16, "B": stats16}))
    out = t(x16)
    assert out.dtype == np.uint16 and np.array_equal(out, x16)
    xf = smooth(1, (20, 24, 3), -50, 300).astype(np.float32)
    statsf = minmax([-50] * 3, [300] * 3, "float32")
    out = picking(described(3, 3, {"A": statsf, "B": statsf}))(xf)
    assert out.dtype == np.float32 and np.abs(out - xf).max() <= 350 * 1e-6
    # One channel: a 2-D array in, a 2-D array out; a PIL "F" image of data units in, one out.
    gray = statsf | {"channels": 1, "low": [-50], "high": [300]}
    t = picking(described(1, 1, {"A": gray, "B": gray}))
    assert t(xf[..., 0]).shape == (20, 24) and np.abs(t(xf[..., 0]) - xf[..., 0]).max() <= 350 * 1e-6
    image = t(Image.fromarray(xf[..., 0]))
    assert image.mode == "F" and np.abs(np.asarray(image) - xf[..., 0]).max() <= 350 * 1e-6


def test_five_bands_to_one_channel_in_the_targets_units_and_type():
    bands = rng().integers(0, 4096, (16, 20, 5)).astype(np.uint16)
    stats = {"A": {"method": "fixed", "dtype": "uint16", "channels": 5, "low": [0.0] * 5, "high": [4095.0] * 5},
             "B": {"method": "fixed", "dtype": "uint16", "channels": 1, "low": [0.0], "high": [65535.0]}}
    t = picking(described(5, 1, stats), channels=[3])
    out = t(bands)
    expected = Normalization.from_dict(stats["B"]).invert(Normalization.from_dict(stats["A"]).apply(bands)[..., 3:4])
    assert out.dtype == np.uint16 and out.shape == (16, 20, 1) and np.array_equal(out, expected)
    assert np.array_equal(out[..., 0], np.rint(bands[..., 3] / 4095 * 65535))  # the same, by hand
    # float32 targets: the output comes back float32 whatever the input's type; CHW tensors too.
    floats = {**stats, "B": minmax([-1.5], [2.5], "float32")}
    out = picking(described(5, 1, floats), channels=[0])(torch.from_numpy(bands).permute(2, 0, 1))
    assert out.dtype == torch.float32 and out.shape == (1, 16, 20)
    torch.testing.assert_close(out[0], torch.from_numpy(bands[..., 0] / 4095 * 4 - 1.5).float())
    # Beyond what a PIL image holds: said so; the wrong channel count: said so.
    with pytest.raises(ValueError, match="5-channel uint16, which a PIL image cannot hold: pass a numpy array"):
        one = stats["A"] | {"channels": 1, "low": [0.0], "high": [4095.0]}
        picking(described(1, 5, {"A": one, "B": stats["A"]}), channels=[0] * 5)(Image.fromarray(bands[..., 0]))
    with pytest.raises(ValueError, match="cannot feed a 4-channel image to a generator with 5 input channels"):
        t(bands[..., :4])


def test_percentile_clips_and_meanstd_keeps_what_lies_beyond():
    x = np.linspace(-10, 110, 24 * 20, dtype=np.float32).reshape(20, 24, 1)
    pct = {"method": "percentile", "dtype": "float32", "channels": 1, "low": [0.0], "high": [100.0],
           "percentiles": [1.0, 99.0]}
    out = picking(described(1, 1, {"A": pct, "B": pct}))(x)
    assert np.allclose(out, np.clip(x, 0, 100), atol=1e-4)
    ms = {"method": "meanstd", "dtype": "float32", "channels": 1, "mean": [50.0], "std": [5.0]}  # ±3 std: 35..65
    out = picking(described(1, 1, {"A": ms, "B": ms}))(x)
    assert np.allclose(out, x, atol=1e-4)


def test_tiles_give_the_whole_image_result_for_data():
    x = rng(3).integers(0, 65536, (40, 56, 3)).astype(np.uint16)
    stats = minmax([0] * 3, [65535] * 3, "uint16")
    t = picking(described(3, 3, {"A": stats, "B": stats}))
    assert np.array_equal(t(x, tile=16, tile_overlap=8), x) and np.array_equal(t(x, tile=0), x)


def test_image_models_behave_as_they_always_did():
    """An 8-bit model (auto on both sides, as new exports state it) is bit for bit what a model without any stated
    normalisation gives, for every input kind; a model whose targets were 16-bit returns 16-bit from 8-bit inputs."""
    torch.manual_seed(0)
    net = create_generator("resnet_6blocks", ngf=8, norm="instance")
    auto8 = {"method": "auto", "dtype": "uint8", "channels": 3}
    old, new = (Translator({"G": net}, described(3, 3, n)) for n in (None, {"A": auto8, "B": auto8}))
    photo = rng().integers(0, 256, (20, 28, 3)).astype(np.uint8)
    inputs = [Image.fromarray(photo), photo, (photo.astype(np.uint16) * 257), photo[..., 0],
              torch.from_numpy(photo).permute(2, 0, 1).float() / 255, np.dstack([photo, photo[..., :1]])]
    for x in inputs:
        a, b = old(x), new(x)
        a, b = (np.asarray(v) if not isinstance(v, torch.Tensor) else v.numpy() for v in (a, b))
        assert a.dtype == b.dtype and np.array_equal(a, b)
    depth = Translator({"G": net}, described(3, 3, {"A": auto8, "B": auto8 | {"dtype": "uint16"}}))
    assert depth(photo).dtype == np.uint16 and depth(photo.astype(np.float32) / 255).dtype == np.float32


@pytest.mark.parametrize("suffix", [".tif", ".npy", ".npz"])
def test_data_outputs_read_back_as_written(tmp_path, suffix):
    from translate.imageio import write_image

    for c in (1, 2, 3, 5):
        for dtype in ("uint8", "uint16", "int16", "float32"):
            x = (rng(c).random((7, 9, c)) * 1000).astype(dtype)
            write_image(tmp_path / f"{c}{dtype}{suffix}", x, data=True)
            back, info = decode_data(tmp_path / f"{c}{dtype}{suffix}")
            assert back.dtype == x.dtype and np.array_equal(back, x) and info.channels == c, (c, dtype)


def test_auto_dtype_keeps_fp32_for_results_finer_than_8_bits(tmp_path, monkeypatch):
    """bf16 keeps 8 bits of mantissa: a model of 16-bit or float results runs fp32 even on bf16 hardware, where an
    8-bit model of the same network would take bf16 (its probe is mocked at 50 dB)."""
    from translate import devices
    from translate.inference import autotune

    monkeypatch.setattr(devices, "cpu_bf16_unit", lambda: "AMX")
    monkeypatch.setattr(autotune, "measure_bf16_psnr", lambda model_dir, device: {"G": 50.0})
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "cache"))
    net = create_generator("resnet_6blocks", ngf=8, norm="instance")
    auto = {"method": "auto", "dtype": "uint8", "channels": 3}
    for dtype, expected in (("uint8", torch.bfloat16), ("uint16", torch.float32)):
        spec = generator_spec("resnet_6blocks", 8, "instance", False, 3, 3)
        model = save_pretrained(tmp_path / dtype, {"G": net}, {"generators": {"G": spec}, "directions": {"AtoB": "G"},
                                                              "normalize": {"A": auto, "B": auto | {"dtype": dtype}}})
        choice = autotune.choose(model, torch.device("cpu"))
        assert choice.dtype == expected, choice.reason
    assert choice.reason.startswith("fp32: the model's results are uint16 data, finer than bf16 keeps")


# --- end to end, one per layout: train, export, convert with the exported model alone, read back --------------
@pytest.fixture(scope="module")
def scan_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSLATE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def train_and_move(root: Path, out: Path, *overrides: str) -> Path:
    """Train 2 steps, then move the exported model away from its run (and its data): the model directory alone."""
    from translate.engine.trainer import train

    cfg = load_config(None, [f"data.root={root}", *TINY, f"train.output_dir={out / 'run'}", *overrides])
    run = train(cfg)
    model = shutil.copytree(run / "model", out / "model_alone")
    shutil.rmtree(run / "model")
    return model


def paired(root: Path, write, n: int = 3) -> dict[str, list[np.ndarray]]:
    """``root/{train,test}/{A,B}``: B = A (so both sides have the same statistics), ``write(path_stem, array)``."""
    made = {}
    for split in ("train", "test"):
        for side in "AB":
            (root / split / side).mkdir(parents=True, exist_ok=True)
        made[split] = []
        for i in range(n):
            x = write(root / split / "A" / f"{i}", seed=10 * i + (split == "test"))
            write(root / split / "B" / f"{i}", array=x)
            made[split].append(x)
    return made


def png16(stem: Path, seed: int = 0, array=None) -> np.ndarray:
    x = array if array is not None else np.rint(smooth(seed, (40, 48, 1), 3000, 50000))[..., 0].astype(np.uint16)
    Image.fromarray(x).save(stem.with_suffix(".png"))
    return x


def tiff32(stem: Path, seed: int = 0, array=None) -> np.ndarray:
    x = array if array is not None else smooth(seed, (40, 48, 2), -40.0, 250.0).astype(np.float32)
    tifffile.imwrite(stem.with_suffix(".tif"), x, photometric="minisblack", planarconfig="contig")
    return x


def convert(model, src: Path, dst: Path, *args: str) -> dict:
    code = main(["convert", str(model), str(src), str(dst), "--device", "cpu", "--dtype", "fp32", "--workers", "1",
                 "--quiet", *args])
    assert code == 0
    return json.loads((dst / "convert_summary.json").read_text())


def test_16_bit_png_in_16_bit_png_out(tmp_path, scan_cache):
    made = paired(tmp_path / "data", png16)
    model = train_and_move(tmp_path / "data", tmp_path, "model.recipe=pix2pix", "data.dataset_mode=paired",
                           "model.input_nc=1", "model.output_nc=1", "data.normalize=minmax")
    description = describe(model)
    assert description.normalize["B"]["dtype"] == "uint16" and model_output(model).dtype == "uint16"
    src = tmp_path / "data" / "test" / "A"
    convert(model, src, tmp_path / "out")
    translator = Translator.from_pretrained(model, device="cpu", dtype="fp32")
    for i, x in enumerate(made["test"]):
        out, info = decode_data(tmp_path / "out" / f"{i}.png")
        assert out.dtype == np.uint16 and out.shape == (40, 48, 1) and info.kind == "gray"
        assert np.array_equal(out[..., 0], translator(x))  # the file is what Translator gives
    # The identity between the files: the input's values exactly (both sides share their statistics).
    summary = convert_folder(picking(description), src, tmp_path / "same", progress=False, workers=1)
    assert summary["converted"] == 3
    for i, x in enumerate(made["test"]):
        assert np.array_equal(decode_data(tmp_path / "same" / f"{i}.png")[0][..., 0], x)
    # An 8-bit JPEG in: JPEG cannot hold the 16-bit results, so they go to TIFF.
    (tmp_path / "jpg").mkdir()
    Image.fromarray((made["test"][0] >> 8).astype(np.uint8)).save(tmp_path / "jpg" / "photo.jpg")
    convert(model, tmp_path / "jpg", tmp_path / "from_jpg")
    out = decode_data(tmp_path / "from_jpg" / "photo.tif")[0]
    assert out.dtype == np.uint16 and out.shape == (40, 48, 1)
    # Metrics on the data's range, per channel; the RGB-only ones skipped in one line.
    result = evaluate_model(model, tmp_path / "data", device="cpu")
    assert {"psnr", "psnr_ch0", "ssim", "ssim_ch0", "diversity"} <= set(result.metrics)
    assert "lpips: skipped, they compare RGB images and the outputs have 1 channel (uint16 data)" in result.notes
    assert "PSNR (dB), channel 0" in format_table(result)


def test_float32_tiff_in_float32_tiff_out(tmp_path, scan_cache):
    made = paired(tmp_path / "data", tiff32)
    model = train_and_move(tmp_path / "data", tmp_path, "model.recipe=pix2pix", "data.dataset_mode=paired",
                           "model.input_nc=2", "model.output_nc=2", "data.normalize=minmax")
    src = tmp_path / "data" / "test" / "A"
    convert(model, src, tmp_path / "out")
    for i in range(3):
        out, info = decode_data(tmp_path / "out" / f"{i}.tif")
        assert out.dtype == np.float32 and out.shape == (40, 48, 2) and info.kind == "data"
    convert_folder(picking(describe(model)), src, tmp_path / "same", progress=False, workers=1)
    stats = describe(model).normalize["A"]
    span = max(h - lo for lo, h in zip(stats["low"], stats["high"]))
    for i, x in enumerate(made["test"]):
        out = decode_data(tmp_path / "same" / f"{i}.tif")[0]
        assert np.abs(out - x).max() <= span * 1e-6  # float32 rounding of [-1, 1] and back
    convert(model, src, tmp_path / "npy", "--format", "npy")
    assert np.load(tmp_path / "npy" / "0.npy").shape == (40, 48, 2)


@pytest.fixture(scope="module")
def multispectral(tmp_path_factory, scan_cache):
    """The built-in 5-band 12-bit TIFF → 16-bit depth PNG set, a pix2pix trained 2 steps on it, its model alone."""
    root = tmp_path_factory.mktemp("ms")
    model = train_and_move(root / "data", root, "model.recipe=pix2pix", "data.builtin=multispectral",
                           "data.dataset_mode=paired", "model.input_nc=5", "model.output_nc=1",
                           "data.normalize=fixed", "data.normalize_range=[0,4095]",
                           "data.normalize_range_B=[0,65535]", "train.sample_channels=[2,1,0]")
    return root, model


def test_five_channel_tiff_and_npy_to_one_channel(multispectral, tmp_path):
    root, model = multispectral
    src = root / "data" / "test" / "A"
    bands = {p.stem: decode_data(p)[0] for p in sorted(src.glob("*.tif"))[:3]}
    (tmp_path / "in").mkdir()
    for stem, x in bands.items():
        shutil.copy(src / f"{stem}.tif", tmp_path / "in" / f"{stem}.tif")
        np.save(tmp_path / "in" / f"{stem}_chw.npy", np.moveaxis(x, -1, 0))  # channels first: the smallest axis
    summary = convert(model, tmp_path / "in", tmp_path / "out")
    assert summary["converted"] == 6 and summary["failed"] == 0
    translator = Translator.from_pretrained(model, device="cpu", dtype="fp32")
    for stem, x in bands.items():
        tif, info = decode_data(tmp_path / "out" / f"{stem}.tif")
        npy = np.load(tmp_path / "out" / f"{stem}_chw.npy")
        assert tif.dtype == npy.dtype == np.uint16 and tif.shape == (64, 64, 1) and npy.shape == (64, 64)
        assert np.array_equal(tif[..., 0], npy) and np.array_equal(npy, translator(x)[..., 0])
    # The generator picking band 2: its 12 bits scaled to the depth's 16, through both sides' fixed ranges.
    convert_folder(picking(describe(model), channels=[2]), tmp_path / "in", tmp_path / "band2", progress=False,
                   workers=1)
    for stem, x in bands.items():
        expected = np.rint(x[..., 2].astype(np.float64) * 65535 / 4095)
        assert np.array_equal(decode_data(tmp_path / "band2" / f"{stem}.tif")[0][..., 0], expected)
    # Formats that cannot hold 16-bit results are refused before anything is written; npy holds everything.
    assert main(["convert", str(model), str(tmp_path / "in"), str(tmp_path / "jpg"), "--format", "jpg",
                 "--device", "cpu", "--quiet"]) == 2 and not (tmp_path / "jpg").exists()
    convert(model, tmp_path / "in", tmp_path / "npy", "--format", "npy")
    assert sorted(p.name for p in (tmp_path / "npy").glob("*.npy")) == sorted(
        [f"{s}.npy" for s in bands] + [f"{s}_chw.npy" for s in bands])


def test_onnx_export_of_five_bands_to_one(multispectral, tmp_path):
    pytest.importorskip("onnxruntime")
    from translate.inference.export import OnnxGenerator, export_onnx, sample_input

    root, model = multispectral
    model = shutil.copytree(model, tmp_path / "model")
    path = export_onnx(model, log=lambda *_: None)["G"]
    onnx_net = OnnxGenerator(path)
    assert json.loads(onnx_net.metadata["normalize_input"])["channels"] == 5
    assert json.loads(onnx_net.metadata["normalize_output"])["high"] == [65535.0]
    nets = load_generators(model)
    x = sample_input(describe(model), "G", 64, 96, seed=3)
    with torch.no_grad():
        assert x.shape == (1, 5, 64, 96) and (onnx_net(x) - nets["G"].eval()(x)).abs().max() < 1e-4
    # The onnxruntime backend normalises and inverts as the torch one: 1e-4 in [-1, 1] is ~3 units of 16 bits.
    bands = decode_data(sorted((root / "data" / "test" / "A").glob("*.tif"))[0])[0]
    by_torch = Translator.from_pretrained(model, device="cpu", dtype="fp32")(bands).astype(np.int64)
    by_onnx = Translator.from_pretrained(model, backend="onnxruntime")(bands).astype(np.int64)
    assert by_onnx.dtype == by_torch.dtype and np.abs(by_onnx - by_torch).max() <= 4


def test_metrics_per_channel_and_the_report_shows_n_channels_as_stated(multispectral, tmp_path):
    from translate.evaluation.report import write_report

    root, model = multispectral
    cfg = load_config(root / "run" / "config.yaml")
    # A stub generator: band 2 exactly, as depth; the metrics are of that against the real depth, per channel.
    description = describe(model)
    result = evaluate_details({"G": picking(description, channels=[2]).generators["G"]}, cfg, "test",
                              ("psnr", "ssim", "lpips"), keep_images=2)
    assert result.notes == ["lpips: skipped, they compare RGB images and the outputs have 1 channel (uint16 data)"]
    assert result.metrics["psnr"] == result.metrics["psnr_ch0"] and 0 < result.metrics["psnr"] < 60
    assert result.images[0]["input"].shape[0] == 5
    # A Translator is measured the same way: data in its units, through its own sides.
    by_dict = evaluate_details(load_generators(model), cfg, "test", ("psnr", "ssim"))
    by_translator = evaluate_details(Translator.from_pretrained(model, device="cpu", dtype="fp32"), cfg, "test",
                                     ("psnr", "ssim"))
    assert by_translator.metrics == pytest.approx(by_dict.metrics, rel=1e-3)
    # The report's gallery runs the run's model: 5 bands shown through train.sample_channels, as it says.
    shutil.copytree(model, root / "run" / "model")
    try:
        report = write_report(root / "run", gallery_size=2).read_text()
    finally:
        shutil.rmtree(root / "run" / "model")
    assert "input: channels 2, 1, 0 as R, G, B" in report and "output: channel 0 as gray" in report
    assert "PSNR (dB), channel 0" in report
    gallery = sorted((root / "run" / "report" / "gallery").glob("*.png"))
    assert len(gallery) == 6 and Image.open(gallery[0]).mode == "RGB"
    from translate.data import build_dataset

    bands = (build_dataset(cfg, "test")[0]["A"] + 1) / 2  # what the gallery shows of the first input, in [0, 1]
    shown = np.asarray(Image.open(gallery[0]))
    assert np.array_equal(shown, (bands[[2, 1, 0]] * 255 + 0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy())


def test_psnr_of_data_is_on_each_channels_range(tmp_path, scan_cache):
    """Two uint16 channels of very different ranges: a shift of one code value in the network's [-1, 1] units costs
    each channel the same PSNR, measured on its own range, and a perfect channel reads as the cap."""
    from translate.evaluation.metrics import PSNR_MAX

    root = tmp_path / "data"
    for split in ("train", "test"):
        for side in "AB":
            (root / split / side).mkdir(parents=True)
        for i in range(2):
            x = np.dstack([np.rint(smooth(i, (32, 32, 1), 100, 200)), np.rint(smooth(i + 5, (32, 32, 1), 0, 60000))])
            for side in "AB":
                tifffile.imwrite(root / split / side / f"{i}.tif", x.astype(np.uint16), photometric="minisblack",
                                 planarconfig="contig")
    cfg = load_config(None, [f"data.root={root}", "data.dataset_mode=paired", "model.input_nc=2", "model.output_nc=2",
                             "data.normalize=fixed", "data.normalize_range=[0,65535]", *TINY,
                             f"train.output_dir={tmp_path / 'run'}", "data.preprocess=none"])

    class Shift(nn.Module):  # channel 1 moved by 0.01 in [-1, 1]: 327.7 code values of 65535
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x + torch.tensor([0.0, 0.01]).view(1, 2, 1, 1)

    result = evaluate_details({"G": Shift()}, cfg, "test", ("psnr", "ssim"))
    assert result.metrics["psnr_ch0"] == PSNR_MAX and result.metrics["ssim_ch0"] == pytest.approx(1, abs=1e-4)
    assert result.metrics["psnr_ch1"] == pytest.approx(10 * np.log10(1 / (328 / 65535) ** 2), abs=0.05)
    assert result.metrics["psnr"] == pytest.approx((result.metrics["psnr_ch0"] + result.metrics["psnr_ch1"]) / 2)


# --- reference checkpoints with other channel counts -------------------------------------------------------------
def test_reference_checkpoints_of_any_channel_count(tmp_path):
    from translate.inference.reference import import_reference

    torch.manual_seed(0)
    g_a = create_generator("resnet_6blocks", input_nc=5, output_nc=1, ngf=8, norm="instance")
    g_b = create_generator("resnet_6blocks", input_nc=1, output_nc=5, ngf=8, norm="instance")
    torch.save(g_a.state_dict(), tmp_path / "latest_net_G_A.pth")
    torch.save(g_b.state_dict(), tmp_path / "latest_net_G_B.pth")
    for given in ({}, {"input_nc": 5, "output_nc": 1}):  # read from the files, or stated (G_B's swapped)
        out = import_reference(tmp_path / "latest_net_G_A.pth", tmp_path / f"imported{len(given)}",
                               netG="resnet_6blocks", ngf=8, G_B=tmp_path / "latest_net_G_B.pth", **given)
        d = describe(out)
        assert (d.input_nc, d.output_nc) == (5, 1)
        assert (d.generators["G_B"]["input_nc"], d.generators["G_B"]["output_nc"]) == (1, 5)
    bands = rng().integers(0, 256, (24, 32, 5)).astype(np.uint8)
    t = Translator.from_pretrained(out, device="cpu", dtype="fp32")
    with torch.no_grad():
        y = g_a.eval()(torch.from_numpy(bands).permute(2, 0, 1)[None].float() / 127.5 - 1)
    expected = ((y[0, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(t(bands)[..., 0], expected) and t(bands[..., 0], direction="BtoA").shape == (24, 32, 5)
    assert main(["import-reference", str(tmp_path / "latest_net_G_A.pth"), str(tmp_path / "cli"), "--netG",
                 "resnet_6blocks", "--ngf", "8", "--input_nc", "5", "--output_nc", "1"]) == 0
    assert describe(tmp_path / "cli").generators["G"]["input_nc"] == 5
