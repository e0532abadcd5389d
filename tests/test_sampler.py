"""Noise models: ``Sampler`` and ``translate sample`` (seeded, byte-identical files), and the one-line refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from translate.inference.sampler import Sampler
from translate.inference.translator import Translator
from translate.networks import create_generator
from translate.networks.pretrained import save_pretrained

SPEC = {"netG": "dcgan", "nz": 16, "ngf": 8, "output_nc": 1, "image_size": 28}


@pytest.fixture(scope="module")
def dcgan_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = create_generator("dcgan", **{k: v for k, v in SPEC.items() if k != "netG"})
    net(torch.randn(16, 16))  # move the batch-norm running statistics off their initial values
    return save_pretrained(tmp_path_factory.mktemp("m") / "model", {"G": net.eval()},
                           {"generators": {"G": SPEC}, "directions": {}})


@pytest.fixture(scope="module")
def translation_dir(tmp_path_factory):
    net = create_generator("resnet_6blocks", ngf=4, norm="instance")
    spec = {"netG": "resnet_6blocks", "ngf": 4, "norm": "instance", "use_dropout": False, "input_nc": 3,
            "output_nc": 3}
    return save_pretrained(tmp_path_factory.mktemp("t") / "model", {"G": net},
                           {"generators": {"G": spec}, "directions": {"AtoB": "G"}})


def cli(*args):
    return subprocess.run([sys.executable, "-m", "translate", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def main(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process (the subprocess test below covers the real command)."""
    from translate.cli import main as translate_main

    code = translate_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_samples_are_the_generator_on_seeded_normal_latents(dcgan_dir):
    sampler = Sampler.from_pretrained(dcgan_dir, device="cpu", dtype="fp32")
    # What the sampler must compute, done by hand: N(0, 1) latents from a CPU generator seeded with the seed.
    net = create_generator("dcgan", **{k: v for k, v in SPEC.items() if k != "netG"}, init_type=None)
    from safetensors.torch import load_file

    net.load_state_dict(load_file(dcgan_dir / "G.safetensors"))
    with torch.no_grad():
        expected = (net.eval()(torch.randn(6, 16, generator=torch.Generator().manual_seed(5))) + 1) / 2
    torch.testing.assert_close(sampler.tensor(6, seed=5), expected.clamp(0, 1))
    assert torch.equal(sampler.tensor(6, seed=5), sampler.tensor(6, seed=5))
    assert not torch.equal(sampler.tensor(6, seed=5), sampler.tensor(6, seed=6))
    # Eval-mode batch norm: an image depends on its latent only, not on how the batch is split.
    torch.testing.assert_close(sampler.tensor(6, seed=5, batch_size=4), sampler.tensor(6, seed=5), rtol=0,
                               atol=1e-6)


def test_sampler_returns_pil_images_and_tensors(dcgan_dir):
    sampler = Sampler.from_pretrained(dcgan_dir)
    images = sampler(3, seed=1)
    assert [(im.mode, im.size) for im in images] == [("L", (28, 28))] * 3
    tensor = sampler(3, seed=1, output="tensor")
    assert tensor.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(np.asarray(images[2]), (tensor[2, 0] * 255).round().byte().numpy())


def test_sample_cli_writes_byte_identical_pngs(dcgan_dir, tmp_path, capsys):
    runs = [main(capsys, "sample", dcgan_dir, tmp_path / name, "--n", 5, "--seed", 3, "--grid") for name in "ab"]
    assert [code for code, _, _ in runs] == [0, 0], runs[0][2]
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["00000.png", "00001.png", "00002.png", "00003.png", "00004.png", "grid.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # 5 images in a 3-wide grid: 3 × (28 + 2) + 2 by 2 × (28 + 2) + 2, gray.
    grid = Image.open(tmp_path / "a" / "grid.png")
    assert (grid.mode, grid.size) == ("L", (92, 62))
    _, out, _ = main(capsys, "sample", dcgan_dir, tmp_path / "c", "--n", 5, "--seed", 4)
    assert (tmp_path / "c" / "00000.png").read_bytes() != (tmp_path / "a" / "00000.png").read_bytes()
    assert "--seed 4" in out


@pytest.mark.slow
def test_sample_command_matches_across_processes(dcgan_dir, tmp_path, capsys):
    r = cli("sample", dcgan_dir, tmp_path / "a", "--n", 3, "--seed", 3)
    assert r.returncode == 0, r.stderr
    main(capsys, "sample", dcgan_dir, tmp_path / "b", "--n", 3, "--seed", 3)
    assert [p.read_bytes() for p in sorted((tmp_path / "a").iterdir())] == \
        [p.read_bytes() for p in sorted((tmp_path / "b").iterdir())]


def test_noise_model_refused_by_translator_and_convert(dcgan_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="this model generates from noise: use translate sample"):
        Translator.from_pretrained(dcgan_dir)
    (tmp_path / "in").mkdir()
    Image.new("RGB", (28, 28)).save(tmp_path / "in" / "x.png")
    code, _, err = main(capsys, "convert", dcgan_dir, tmp_path / "in", tmp_path / "out", "--quiet")
    assert code == 2
    assert err.strip().splitlines() == [f"error: {dcgan_dir}: this model generates from noise: use translate sample"]
    assert not (tmp_path / "out").exists()  # a failed command leaves no empty output folder
    typed = cli("convert", dcgan_dir, tmp_path / "in", tmp_path / "out2")  # as a user types it
    assert typed.returncode == 2 and "use translate sample" in typed.stderr and not (tmp_path / "out2").exists()


def test_translation_model_refused_by_sample(translation_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="use translate convert"):
        Sampler.from_pretrained(translation_dir)
    code, _, err = main(capsys, "sample", translation_dir, tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "translate convert" in err
    assert not (tmp_path / "out").exists()


def test_latent_size_mismatch_is_one_line(dcgan_dir, tmp_path, capsys):
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "G.safetensors").write_bytes((dcgan_dir / "G.safetensors").read_bytes())
    config = json.loads((dcgan_dir / "config.json").read_text())
    config["generators"]["G"]["nz"] = 100
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="latent size mismatch: config.json says nz=100, the weights take 16$"):
        Sampler.from_pretrained(broken)
    code, _, err = main(capsys, "sample", broken, tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nz=100" in err


def test_noise_model_exports_to_onnx(dcgan_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from translate.inference.export import OnnxGenerator, export_onnx

    path = export_onnx(dcgan_dir, tmp_path / "g.onnx", log=lambda *_: None)["G"]
    onnx_net = OnnxGenerator(path)
    assert onnx_net.metadata["kind"] == "noise" and onnx_net.metadata["nz"] == "16"
    z = torch.randn(7, 16, generator=torch.Generator().manual_seed(0))
    sampler = Sampler.from_pretrained(dcgan_dir, device="cpu", dtype="fp32")
    torch.testing.assert_close(onnx_net(z), sampler.net(z), rtol=0, atol=1e-5)
