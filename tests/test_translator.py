"""Translator: model directory round trip, types in = types out, any size, alpha, channels, tiling ≈ whole image."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from translate import Translator
from translate.inference.tiling import feather_weights, pad_index, pad_to_stride, tile_positions, translate_tiled
from translate.networks import create_generator
from translate.networks.pretrained import generator_spec, save_pretrained


def make_model(directory, nets: dict[str, tuple[str, str]], *, input_nc=3, output_nc=3, norm_mode="eval", seed=0):
    """A tiny (ngf 8) model directory: ``nets`` = {generator name: (netG, norm)}; directions as the trainer's."""
    torch.manual_seed(seed)
    generators, specs = {}, {}
    for name, (netG, norm) in nets.items():
        generators[name] = create_generator(netG, input_nc=input_nc, output_nc=output_nc, ngf=8, norm=norm)
        specs[name] = generator_spec(netG, 8, norm, False, input_nc, output_nc)
    directions = {"AtoB": "G_A", "BtoA": "G_B"} if "G_B" in nets else {"AtoB": next(iter(nets))}
    meta = {"recipe": "cyclegan" if "G_B" in nets else "pix2pix", "generators": specs, "directions": directions,
            "norm_mode": norm_mode, "ema": False, "step": 0}
    return save_pretrained(directory, generators, meta), generators


@pytest.fixture(scope="module")
def cyclegan_dir(tmp_path_factory):
    path, _ = make_model(tmp_path_factory.mktemp("models") / "cyclegan",
                         {"G_A": ("resnet_9blocks", "instance"), "G_B": ("resnet_6blocks", "instance")})
    return path


@pytest.fixture(scope="module")
def translator(cyclegan_dir):
    return Translator.from_pretrained(cyclegan_dir, device="cpu", dtype="fp32")


def smooth_image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Photo-like content: smooth colour fields with a few edges, uint8 HWC."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((5, 7, 3)) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    a = np.array(small)
    a[h // 3: h // 2, w // 4: w // 2] = (20, 200, 90)  # a hard-edged block
    return a if channels == 3 else a[..., :1]


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_round_trip_matches_the_saved_network(tmp_path):
    model_dir, nets = make_model(tmp_path / "m", {"G": ("resnet_6blocks", "instance")})
    config = json.loads((model_dir / "config.json").read_text())
    assert config["directions"] == {"AtoB": "G"}
    t = Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")
    x = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        expected = (nets["G"].eval()(x * 2 - 1) + 1) / 2
    out = t(x, batch_size=2)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, expected.clamp(0, 1), atol=1e-5, rtol=0)
    out[0, 0, 0, 0] = 0.5  # an ordinary tensor, not an inference-mode one


def test_types_in_equal_types_out(translator):
    rgb = smooth_image(30, 41)
    pil = translator(Image.fromarray(rgb))
    assert isinstance(pil, Image.Image) and pil.size == (41, 30) and pil.mode == "RGB"
    a8 = translator(rgb)
    assert a8.dtype == np.uint8 and a8.shape == (30, 41, 3)
    np.testing.assert_array_equal(np.asarray(pil), a8)
    a16 = translator(rgb.astype(np.uint16) * 257)
    assert a16.dtype == np.uint16 and a16.shape == (30, 41, 3)
    # 16 bits carry the same picture with finer steps
    assert np.abs(a16.astype(np.int64) // 257 - a8).max() <= 1
    f = translator(rgb.astype(np.float32) / 255)
    assert f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    chw = translator(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    assert chw.shape == (3, 30, 41) and chw.dtype == torch.float32
    u8 = translator(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
    assert u8.dtype == torch.uint8
    np.testing.assert_array_equal(u8.permute(1, 2, 0).numpy(), a8)
    mixed = translator([Image.fromarray(rgb), rgb, torch.rand(1, 3, 16, 16)], batch_size=8)
    assert [type(m) for m in mixed] == [Image.Image, np.ndarray, torch.Tensor]
    assert mixed[2].shape == (1, 3, 16, 16)


def test_batching_does_not_change_results(translator):
    images = [smooth_image(24, 28, seed=i) for i in range(3)] + [smooth_image(20, 20, seed=9)]
    one_by_one = [translator(a) for a in images]
    batched = translator(images, batch_size=3)
    for a, b in zip(one_by_one, batched):
        np.testing.assert_allclose(a.astype(int), b.astype(int), atol=1)


@pytest.mark.parametrize("netG", ["unet_256", "resnet_9blocks"])
def test_output_keeps_odd_input_size(tmp_path, netG):
    model_dir, _ = make_model(tmp_path / netG, {"G": (netG, "batch")})
    t = Translator.from_pretrained(model_dir, device="cpu")
    out = t(Image.fromarray(smooth_image(37, 53)))
    assert out.size == (53, 37)
    assert t(np.zeros((9, 5, 3), np.uint8)).shape == (9, 5, 3)  # reflection, then replication


def test_directions(translator):
    x = torch.rand(3, 16, 20)
    a, b = translator(x), translator(x, direction="BtoA")
    assert not torch.allclose(a, b)
    torch.testing.assert_close(translator(x, direction="G_B"), b)
    with pytest.raises(ValueError, match="unknown direction"):
        translator(x, direction="CtoD")


def test_alpha_is_carried_through_unchanged(translator):
    rgba = np.concatenate([smooth_image(21, 19), np.arange(21 * 19, dtype=np.uint8).reshape(21, 19, 1)], 2)
    out = translator(rgba)
    assert out.shape == (21, 19, 4)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    pil = translator(Image.fromarray(rgba, "RGBA"))
    assert pil.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(pil)[..., 3], rgba[..., 3])
    la = translator(Image.fromarray(rgba[..., [0, 3]], "LA"))  # gray + alpha into an RGB model: gray + alpha out
    assert la.mode == "LA"
    np.testing.assert_array_equal(np.asarray(la)[..., 1], rgba[..., 3])


def test_gray_in_gray_out_through_a_colour_model(translator):
    gray = smooth_image(20, 24, channels=1)[..., 0]
    rgb_out = translator(np.repeat(gray[..., None], 3, 2))  # what the RGB generator makes of it
    luma = np.asarray(Image.fromarray(rgb_out).convert("L")).astype(int)  # PIL's own ITU-R 601-2 conversion
    out = translator(gray)
    assert out.shape == (20, 24) and out.dtype == np.uint8  # HW in, HW out
    np.testing.assert_allclose(out.astype(int), luma, atol=1)
    pil = translator(Image.fromarray(gray))
    assert pil.mode == "L"
    np.testing.assert_array_equal(np.asarray(pil), out)
    pil16 = translator(Image.fromarray(gray.astype(np.uint16) * 257))
    assert pil16.mode == "I;16"  # 16-bit gray stays 16-bit gray
    np.testing.assert_allclose(np.asarray(pil16).astype(int) / 257, luma, atol=1)
    assert translator(gray[..., None]).shape == (20, 24, 1)


def test_colour_in_colour_out_through_a_gray_model(tmp_path):
    model_dir, _ = make_model(tmp_path / "gray", {"G": ("resnet_6blocks", "instance")}, input_nc=1, output_nc=1)
    t = Translator.from_pretrained(model_dir, device="cpu")
    out = t(smooth_image(20, 24))
    assert out.shape == (20, 24, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])  # the gray result, repeated
    gray = smooth_image(20, 24, channels=1)[..., 0]
    out = t(np.repeat(gray[..., None], 3, 2))  # a gray picture stored as RGB: its luma is the gray itself
    np.testing.assert_allclose(out[..., 1].astype(int), t(gray).astype(int), atol=1)


def test_colourisation_model_makes_colour_from_gray(tmp_path):
    model_dir, _ = make_model(tmp_path / "colourise", {"G": ("resnet_6blocks", "instance")}, input_nc=1, output_nc=3)
    t = Translator.from_pretrained(model_dir, device="cpu")
    assert t(smooth_image(20, 24, channels=1)[..., 0]).shape == (20, 24, 3)
    assert t(Image.fromarray(smooth_image(20, 24, channels=1)[..., 0])).mode == "RGB"


@pytest.mark.parametrize("bad", [np.full((8, 8, 3), 255.0, np.float32), np.full((8, 8), -0.5), np.full((8, 8), np.nan)])
def test_float_pixels_outside_0_1_are_refused(translator, bad):
    with pytest.raises(ValueError, match=r"float pixels must lie in \[0, 1\]"):
        translator(bad)
    with pytest.raises(ValueError, match=r"float pixels must lie in \[0, 1\]"):
        translator(torch.from_numpy(np.atleast_3d(bad)).permute(2, 0, 1))


def test_norm_mode_train_normalises_each_image_by_itself(tmp_path):
    model_dir, nets = make_model(tmp_path / "p2p", {"G": ("unet_128", "batch")}, norm_mode="train")
    t = Translator.from_pretrained(model_dir, device="cpu")
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        reference = [(nets["G"].train()(x[i:i + 1] * 2 - 1) + 1) / 2 for i in range(2)]  # test.py: batch of 1
    out = t(x, batch_size=2)
    torch.testing.assert_close(out, torch.cat(reference).clamp(0, 1), atol=1e-4, rtol=0)


def test_tiling_geometry():
    assert tile_positions(256, 512, 64, 4) == [0]
    positions = tile_positions(1000, 256, 64, 4)
    assert positions[0] == 0 and positions[-1] == 1000 - 256 and all(p % 4 == 0 for p in positions)
    assert all(b - a <= 256 - 64 for a, b in zip(positions, positions[1:]))
    total = torch.zeros(1000)
    for p, w in zip(positions, feather_weights(positions, 256)):
        total[p:p + 256] += w
    assert total.min() > 0.99  # the ramps form a partition of unity
    x = torch.arange(5.0).view(1, 1, 1, 5)
    torch.testing.assert_close(pad_to_stride(x, 8)[0, 0, 0], torch.tensor([0, 1, 2, 3, 4, 3, 2, 1.0]))
    assert pad_index(2, 8).tolist() == [0, 1, 0, 0, 0, 0, 0, 0]  # reflect while possible, then replicate


def test_tiled_output_matches_whole_image(tmp_path):
    # Instance norm: each tile alone would get its own colour statistics, and naive tiling fails the bound below;
    # the translator gives every tile the whole image's statistics.
    model_dir, _ = make_model(tmp_path / "m", {"G": ("resnet_9blocks", "instance")}, seed=3)
    t = Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")
    image = smooth_image(200, 168, seed=4)
    whole = t(image, tile=0)
    tiled = t(image, tile=96, tile_overlap=48, batch_size=4)
    assert tiled.shape == whole.shape and psnr8(tiled, whole) >= 35

    source = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.inference_mode():
        naive = translate_tiled(partial(t._forward, "G"), source, lambda x: x / 127.5 - 1, out_channels=3, tile=96,
                                overlap=48, stride=4, batch_size=4, norms=None)
    naive = ((naive[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    assert psnr8(naive, whole) < 30


def test_auto_tiling_above_the_pixel_budget(tmp_path):
    model_dir, _ = make_model(tmp_path / "m", {"G": ("resnet_6blocks", "instance")})
    t = Translator.from_pretrained(model_dir, device="cpu", whole_pixels=64 * 64)
    t.tile_size = 64
    image = smooth_image(150, 130)
    whole = t(image, tile=0)
    auto = t(image)  # 150×130 > 64² pixels: tiled, statistics from a downscaled pass
    assert auto.shape == image.shape and psnr8(auto, whole) > 20


def test_bf16_on_cpu_is_close_to_fp32(cyclegan_dir):
    x = torch.rand(1, 3, 32, 32)
    fp32 = Translator.from_pretrained(cyclegan_dir, device="cpu", dtype="fp32")(x)
    bf16 = Translator.from_pretrained(cyclegan_dir, device="cpu", dtype="bf16")(x)
    assert (fp32 - bf16).abs().max() < 0.05


def test_from_reference_checkpoint(tmp_path):
    torch.manual_seed(1)
    net = create_generator("resnet_6blocks", ngf=8, norm="instance").eval()
    torch.save(net.state_dict(), tmp_path / "latest_net_G.pth")  # what the reference code saves
    t = Translator.from_reference(tmp_path / "latest_net_G.pth", tmp_path / "model", netG="resnet_6blocks", ngf=8,
                                  device="cpu")
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        expected = ((net(x * 2 - 1) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(t(x), expected, atol=1e-5, rtol=0)


def test_onnxruntime_backend_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from translate.inference.export import export_onnx

    model_dir, _ = make_model(tmp_path / "m", {"G": ("resnet_6blocks", "instance")})
    export_onnx(model_dir, log=lambda *_: None)
    x = torch.rand(2, 3, 37, 53)
    torch_out = Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")(x, batch_size=2)
    onnx_out = Translator.from_pretrained(model_dir, backend="onnxruntime")(x, batch_size=2)
    torch.testing.assert_close(onnx_out, torch_out, atol=1e-4, rtol=0)


def test_out_of_memory_on_a_whole_image_falls_back_to_tiles(translator):
    forward = translator._forward

    def small_only(name, x):  # a device that holds 80² but not the whole 100² image
        if x.shape[-2] * x.shape[-1] > 80 * 80:
            raise torch.OutOfMemoryError("out of memory")
        return forward(name, x)

    translator._forward, translator.tile_size = small_only, 64
    try:
        with pytest.warns(UserWarning, match="out of memory"):
            out = translator(smooth_image(100, 100))
    finally:
        del translator._forward
        translator.tile_size, translator.whole_pixels = 512, 1 << 20
    assert out.shape == (100, 100, 3)
