"""×4 super-resolution: the generator, ×4 outputs through ``Translator`` (whole, tiled, ONNX), the tile-size guard."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from translate.inference.translator import Translator
from translate.networks import GENERATORS, create_generator
from translate.networks.pretrained import save_pretrained

SPEC = {"netG": "sr_resnet_x4", "input_nc": 3, "output_nc": 3, "ngf": 8, "n_blocks": 2}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * torch.log10(1 / ((a.double() - b.double()) ** 2).mean()).item()


@pytest.fixture(scope="module")
def sr_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = create_generator("sr_resnet_x4", **{k: v for k, v in SPEC.items() if k != "netG"}, init_type="kaiming")
    return save_pretrained(tmp_path_factory.mktemp("sr") / "model", {"G": net},
                           {"generators": {"G": SPEC}, "directions": {"AtoB": "G"}})


def test_registered_as_a_x4_image_generator():
    entry = GENERATORS["sr_resnet_x4"]
    assert (entry.kind, entry.scale) == ("image", 4)
    net = create_generator("sr_resnet_x4", ngf=4, n_blocks=1)
    y = net(torch.rand(2, 3, 61, 97) * 2 - 1)
    assert y.shape == (2, 3, 244, 388)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_starts_as_bicubic():
    # With the reference's N(0, 0.02) initialisation the learned residual is tiny: the output is the bicubic
    # upscaling, as computed by torch's own interpolate.
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    assert (create_generator("sr_resnet_x4", ngf=8, n_blocks=2)(x) - bicubic).abs().max() < 1e-3


@pytest.mark.parametrize("n_blocks", [1, 3])
def test_receptive_field_matches_autograd(n_blocks):
    # The input pixels one output pixel depends on, found by backpropagating from it (leaky ReLU: no dead zeros).
    torch.manual_seed(0)
    net = create_generator("sr_resnet_x4", ngf=4, n_blocks=n_blocks, init_type="kaiming")
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    net(x)[0, :, 130, 130].sum().backward()
    rows = x.grad.abs().sum((0, 1, 3)).nonzero().flatten()
    assert net.receptive_field == rows.max().item() - rows.min().item() + 1


def test_translator_returns_x4_images_with_alpha(sr_dir):
    t = Translator.from_pretrained(sr_dir, device="cpu", dtype="fp32")
    rgba = (np.random.default_rng(0).random((61, 97, 4)) * 255).astype(np.uint8)
    out = t(Image.fromarray(rgba, "RGBA"))
    assert (out.mode, out.size) == ("RGBA", (388, 244))
    # Alpha is upscaled with the image (bilinear), a smooth alpha stays in range
    alpha = np.asarray(out)[..., 3].astype(int)
    assert alpha.min() >= rgba[..., 3].min() and alpha.max() <= rgba[..., 3].max()
    x = torch.rand(2, 3, 20, 36)
    assert t(x).shape == (2, 3, 80, 144)


def test_tiles_on_the_scaled_grid_match_the_whole_image(sr_dir):
    t = Translator.from_pretrained(sr_dir, device="cpu", dtype="fp32")
    x = torch.rand(3, 61, 97, generator=torch.Generator().manual_seed(1))
    whole = t(x, tile=0)
    tiled = t(x, tile=32, tile_overlap=16)  # 3 × 4 tiles
    assert tiled.shape == whole.shape == (3, 244, 388)
    assert psnr(tiled, whole) >= 35


def test_tile_smaller_than_the_receptive_field_is_refused(sr_dir, tmp_path, capsys):
    field = create_generator("sr_resnet_x4", ngf=8, n_blocks=2).receptive_field  # 17 input px
    with pytest.raises(ValueError, match=f"smaller than the receptive field of sr_resnet_x4 \\({field} input px\\)"):
        Translator.from_pretrained(sr_dir, tile=field - 1)
    Translator.from_pretrained(sr_dir, tile=field)
    t = Translator.from_pretrained(sr_dir)
    with pytest.raises(ValueError, match="receptive field"):
        t(torch.rand(3, 8, 8), tile=8)


def test_convert_refuses_a_tile_below_the_receptive_field_in_one_line(sr_dir, tmp_path, capsys):
    from translate.cli import main

    (tmp_path / "in").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "in" / "a.png")
    assert main(["convert", str(sr_dir), str(tmp_path / "in"), str(tmp_path / "out"), "--tile", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "receptive field" in err


def test_convert_writes_x4_files(sr_dir, tmp_path):
    from translate.inference.convert import convert_folder

    (tmp_path / "in").mkdir()
    Image.fromarray((np.random.default_rng(2).random((61, 97, 3)) * 255).astype(np.uint8)).save(tmp_path / "in/a.png")
    convert_folder(sr_dir, tmp_path / "in", tmp_path / "out", progress=False)
    assert Image.open(tmp_path / "out" / "a.png").size == (388, 244)


def test_onnx_export_has_dynamic_sizes(sr_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from translate.inference.export import OnnxGenerator, export_onnx

    path = export_onnx(sr_dir, tmp_path / "sr.onnx", log=lambda *_: None)["G"]
    onnx_net = OnnxGenerator(path)
    assert onnx_net.metadata["scale"] == "4"
    net = Translator.from_pretrained(sr_dir, device="cpu", dtype="fp32").generators["G"]
    for shape in ((1, 3, 61, 97), (2, 3, 17, 40)):
        x = torch.rand(*shape) * 2 - 1
        y = onnx_net(x)
        assert y.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
        torch.testing.assert_close(y, net(x), rtol=0, atol=1e-4)


# -- the recipe, end to end on tiny data --------------------------------------------------------------------------
def test_low_res_inputs_are_pils_bicubic_downscale():
    from translate.methods.sr import downscale

    rng = np.random.default_rng(0)
    image = np.asarray(Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).resize((64, 64)))
    expected = np.asarray(Image.fromarray(image).resize((16, 16), Image.BICUBIC)).astype(np.float32)
    hr = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    lr = (downscale(hr)[0].permute(1, 2, 0).numpy() + 1) * 127.5
    assert np.abs(lr - expected).max() <= 1.0  # PIL rounds to 8 bits


@pytest.fixture(scope="module")
def hr_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(3)
    for i in range(8):
        small = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((40, 40), Image.BICUBIC).save(root / f"{i}.png")
    return root


def sr_config(hr_root, tmp_path, *overrides):
    import translate.methods.sr  # noqa: F401  (registers the recipe)
    from translate.config import load_config

    return load_config(None, ["model.recipe=sr", f"data.root={hr_root}", "data.crop_size=32", "model.ngf=8",
                              "model.ndf=8", "model.sr.n_blocks=1", "data.batch_size=4", "data.num_workers=0",
                              "train.max_steps=2", "train.log_every=1", "train.sample_every=2", "train.report=false",
                              "train.progress=false", "train.mixed_precision=no",
                              f"train.output_dir={tmp_path / 'run'}", *overrides])


def test_recipe_defaults_and_a_wrong_generator(hr_root, tmp_path):
    from translate.config import ConfigError

    c = sr_config(hr_root, tmp_path)
    assert (c.model.netG, c.data.preprocess, c.train.lr, c.train.beta1) == ("sr_resnet_x4", "crop", 0.0001, 0.9)
    with pytest.raises(ConfigError, match="does not upscale ×4"):  # when the config loads, before any building
        sr_config(hr_root, tmp_path, "model.netG=resnet_6blocks")


def test_trains_exports_and_converts_x4(hr_root, tmp_path):
    from translate.engine.trainer import train

    run = train(sr_config(hr_root, tmp_path))
    rows = (run / "logs" / "losses.jsonl").read_text().splitlines()
    assert len(rows) == 2 and '"loss_G_L1"' in rows[0] and '"loss_G_GAN"' in rows[0]
    # Samples: bicubic | SR | truth, all at the high-res size (4 rows of 32² + padding).
    assert Image.open(run / "samples" / "step_000002.png").size == (3 * 34 + 2, 4 * 34 + 2)
    t = Translator.from_pretrained(run / "model")
    out = t(Image.new("RGB", (97, 61), (40, 120, 200)))
    assert out.size == (388, 244)
