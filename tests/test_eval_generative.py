"""``translate eval`` of the two models that translate nothing: a noise model (DCGAN: FID, KID, IS and diversity of
seeded samples against real images) and a ×4 super-resolution model (pixel metrics next to bicubic upscaling), each
checked against numbers worked out here, with a stand-in Inception network whose features are simple pixel moments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.linalg import sqrtm
from scipy.spatial.distance import pdist
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from translate.evaluation import evaluate_model, format_table
from translate.evaluation import metrics as M
from translate.inference.sampler import Sampler
from translate.networks import create_generator
from translate.networks.pretrained import save_pretrained

ROOT = Path(__file__).resolve().parents[1]
DCGAN = {"netG": "dcgan", "nz": 16, "ngf": 8, "output_nc": 1, "image_size": 28}
SR = {"netG": "sr_resnet_x4", "input_nc": 3, "output_nc": 3, "ngf": 8, "n_blocks": 1}
N_REAL = 12


class PixelMoments(nn.Module):
    """A stand-in Inception in NVIDIA's TorchScript format ([0, 255] RGB of any size in): features (mean, mean square
    / 255) of all pixels; class probabilities (p, 1 - p) with p = mean / 255. Refuses anything but 3 channels."""

    def forward(self, img, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False):
        assert img.shape[1] == 3, "the Inception network takes RGB"
        mean = img.mean((1, 2, 3))
        if return_features:
            return torch.stack([mean, img.pow(2).mean((1, 2, 3)) / 255], 1)
        return torch.stack([mean / 255, 1 - mean / 255], 1)


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "moments.pt"
    torch.jit.script(PixelMoments()).save(str(path))
    return path


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).resize(size, Image.BICUBIC))


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    """Gray 28² images under test/ (the split eval reads) and train/."""
    root = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", N_REAL)):
        (root / split).mkdir()
        for i in range(n):
            Image.fromarray(_smooth(rng, (5, 5), (28, 28))).save(root / split / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def dcgan_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = create_generator("dcgan", **{k: v for k, v in DCGAN.items() if k != "netG"})
    net(torch.randn(16, 16))  # batch-norm running statistics off their initial values: samples that vary
    return save_pretrained(tmp_path_factory.mktemp("dcgan") / "model", {"G": net.eval()},
                           {"recipe": "dcgan", "generators": {"G": DCGAN}, "directions": {}})


def _moments(images: np.ndarray) -> np.ndarray:
    """The stand-in's features of uint8 gray images (N, H, W): repeating gray to RGB changes no moment."""
    x = images.reshape(len(images), -1).astype(np.float64)
    return np.stack([x.mean(1), (x**2).mean(1) / 255], 1)


def _fid(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * sqrtm(sa @ sb).real))


def _kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² with the kernel (x·y / d + 1)³, the diagonals left out (one subset: the whole sets)."""
    k = lambda p, q: (p @ q.T / a.shape[1] + 1) ** 3  # noqa: E731
    m, n = len(a), len(b)
    return float((k(a, a).sum() - np.trace(k(a, a))) / (m * (m - 1)) + (k(b, b).sum() - np.trace(k(b, b)))
                 / (n * (n - 1)) - 2 * k(a, b).mean())


def _spread(images: np.ndarray) -> float:
    """Mean RMS distance over pairs of images (N, H, W) in [0, 1], compared at 64² (bilinear, as the toolkit), each
    image standardised first (zero mean, unit sample standard deviation)."""
    x = F.interpolate(torch.from_numpy(images)[:, None].float(), size=(64, 64), mode="bilinear", align_corners=False)
    x = x.flatten(1).double().numpy()
    x = (x - x.mean(1, keepdims=True)) / x.std(1, ddof=1, keepdims=True)
    return float(pdist(x).mean() / 64)


def test_noise_model_fid_kid_is_diversity_by_hand(dcgan_dir, digits_root, inception):
    result = evaluate_model(dcgan_dir, digits_root, inception=inception, seed=3, batch_size=5, device="cpu")
    samples = (Sampler.from_pretrained(dcgan_dir, device="cpu", dtype="fp32").tensor(N_REAL, seed=3)[:, 0] * 255)
    samples = samples.round().numpy().astype(np.uint8)  # 8 bits, as a saved sample
    real = np.stack([np.asarray(Image.open(p)) for p in sorted((digits_root / "test").glob("*.png"))])
    fake_f, real_f = _moments(samples), _moments(real)
    m = result.metrics
    assert (m["images"], m["real_images"]) == (N_REAL, N_REAL)  # default --n: as many as the real images
    assert m["fid"] == pytest.approx(_fid(fake_f, real_f), rel=1e-6)
    assert m["kid"] == pytest.approx(_kid(fake_f, real_f), rel=1e-6) and m["kid_std"] == 0
    p = torch.from_numpy(fake_f[:, :1] / 255)
    assert m["is"] == pytest.approx(M.inception_score(torch.cat([p, 1 - p], 1))[0], rel=1e-6)
    assert m["diversity"] == pytest.approx(_spread(samples / 255) / _spread(real / 255), rel=1e-4)
    assert "diversity_real" not in m and m["fid"] > 1
    assert result.info["kind"] == "noise" and result.info["seed"] == 3
    table = format_table(result)
    assert "samples (seed 3) vs real images of" in table and "diversity (samples / real images)" in table


def test_noise_model_same_seed_same_numbers(dcgan_dir, digits_root, inception):
    runs = [evaluate_model(dcgan_dir, digits_root, inception=inception, n=6, seed=s, device="cpu",
                           metrics=["fid", "kid"]).metrics for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0]["fid"] != runs[2]["fid"]
    assert runs[0]["images"] == 6 and runs[0]["real_images"] == N_REAL


def _cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "translate", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


def test_cli_evaluates_a_trained_dcgan_run_on_its_own_data(digits_root, inception, tmp_path):
    import translate.methods.dcgan  # noqa: F401  (registers the recipe)
    from translate.config import load_config
    from translate.engine.trainer import train

    run = train(load_config(None, [
        "model.recipe=dcgan", f"data.root={digits_root}", "data.load_size=28", "data.crop_size=28", "model.ngf=8",
        "model.ndf=8", "model.input_nc=1", "model.output_nc=1", "model.dcgan.nz=8", "model.dcgan.n_samples=4",
        "data.batch_size=4", "data.num_workers=0", "train.max_steps=2", "train.report=false",
        "train.progress=false", "train.mixed_precision=no", f"train.output_dir={tmp_path / 'run'}"]))
    done = _cli("eval", run, "--inception", inception, "--n", 10, "--seed", 4)
    assert done.returncode == 0, done.stderr
    assert "FID" in done.stdout and "generated samples" in done.stdout
    data = json.loads((run / "eval" / "test_samples.json").read_text())
    assert data["metrics"]["images"] == 10 and data["metrics"]["real_images"] == N_REAL  # its data's test split
    assert {"fid", "kid", "is", "diversity"} <= set(data["metrics"]) and data["info"]["seed"] == 4
    # Without Inception weights the default metrics skip fid, kid and is, saying how to get the weights; asked for
    # by name, they are an error.
    no_weights = {"TRANSLATE_CACHE": str(tmp_path / "cache"), "TRANSLATE_INCEPTION": ""}
    auto = _cli("eval", run, "--out", tmp_path / "x.json", env=no_weights)
    assert auto.returncode == 0, auto.stderr
    assert "note: fid, kid, is: skipped" in auto.stdout and "default_1.pt" in auto.stdout
    assert "diversity" in json.loads((tmp_path / "x.json").read_text())["metrics"]
    missing = _cli("eval", run, "--metrics", "fid", "--out", tmp_path / "y.json", env=no_weights)
    assert missing.returncode == 2 and "default_1.pt" in missing.stderr and "Traceback" not in missing.stderr


def _main(capsys, *args) -> tuple[int, str, str]:
    from translate.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("args", "message"), [
    (["--n", "1"], "--n 1: fid, kid, diversity need at least 2 images on each side"),
    (["--metrics", "psnr"], "psnr needs paired images; a noise model is scored with fid, kid, is, diversity"),
    (["--direction", "AtoB"], "generates images from noise: it has no direction"),
    (["--metrics", "sharpness"], "unknown metric sharpness"),
])
def test_noise_model_bad_input_is_one_line(dcgan_dir, digits_root, inception, capsys, args, message):
    code, _, err = _main(capsys, "eval", dcgan_dir, digits_root, "--inception", inception, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_folder_without_images_is_one_line(dcgan_dir, sr_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for model in (dcgan_dir, sr_dir):
        code, _, err = _main(capsys, "eval", model, tmp_path / "empty", "--metrics", "diversity" if model ==
                             dcgan_dir else "psnr")
        assert code == 2 and "no images" in err and str(tmp_path / "empty") in err, err
        assert len(err.strip().splitlines()) == 1, err


# --- super-resolution -------------------------------------------------------------------------------------------------
def _sr_model(directory: Path, bias: float) -> Path:
    """A ×4 model whose learned residual is the constant ``bias``: its output is bicubic + bias, exactly."""
    torch.manual_seed(0)
    net = create_generator("sr_resnet_x4", **{k: v for k, v in SR.items() if k != "netG"})
    last = net.tail[-1]
    nn.init.zeros_(last.weight)
    nn.init.constant_(last.bias, bias)
    return save_pretrained(directory, {"G": net},
                           {"recipe": "sr", "generators": {"G": SR}, "directions": {"AtoB": "G"}})


@pytest.fixture(scope="module")
def sr_dir(tmp_path_factory):
    return _sr_model(tmp_path_factory.mktemp("sr") / "model", 0.0)


@pytest.fixture(scope="module")
def hr_root(tmp_path_factory):
    """High-res RGB images, sides not multiples of 4 (the evaluation crops them), in a plain folder."""
    root = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(7)
    for i, size in enumerate([(42, 38), (42, 38), (33, 50)]):
        Image.fromarray(_smooth(rng, (7, 7, 3), size)).save(root / f"{i}.png")
    return root


def _psnr_by_hand(hr_root: Path, bias: float = 0.0) -> tuple[float, float]:
    """Mean PSNR of (bicubic + bias, bicubic) on the images of ``hr_root``: crop to multiples of 4, ×4 bicubic
    antialiased downscale (PIL's kernel), plain bicubic ×4 upscale, 8 bits; scikit-image's PSNR."""
    with_bias, bicubic = [], []
    for path in sorted(hr_root.glob("*.png")):
        image = np.asarray(Image.open(path))
        h, w = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
        hr = image[:h, :w]
        x = torch.from_numpy(hr.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        lr = F.interpolate(x, size=(h // 4, w // 4), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
        up = F.interpolate(lr, size=(h, w), mode="bicubic", align_corners=False)
        for out, values in ((up + bias, with_bias), (up, bicubic)):
            pixels = ((out.clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).numpy().astype(np.uint8)
            values.append(peak_signal_noise_ratio(hr, pixels, data_range=255))
    return float(np.mean(with_bias)), float(np.mean(bicubic))


def test_sr_model_next_to_bicubic_by_hand(sr_dir, hr_root, tmp_path):
    expected_model, expected_bicubic = _psnr_by_hand(hr_root, bias=0.2)
    assert expected_model < expected_bicubic - 1  # the offset costs PSNR: the two rows must differ
    result = evaluate_model(_sr_model(tmp_path / "biased", 0.2), hr_root, metrics=["psnr", "ssim"], device="cpu")
    m = result.metrics
    assert m["images"] == 3 and [r["input"] for r in result.per_image] == [str(p) for p in sorted(hr_root.glob("*"))]
    assert m["psnr"] == pytest.approx(expected_model, abs=1e-3)
    assert m["psnr_bicubic"] == pytest.approx(expected_bicubic, abs=1e-3)
    assert 0 < m["ssim"] < m["ssim_bicubic"] <= 1
    # A model that adds nothing to bicubic scores exactly as bicubic.
    same = evaluate_model(sr_dir, hr_root, metrics=["psnr", "ssim"], device="cpu").metrics
    assert same["psnr"] == same["psnr_bicubic"] == pytest.approx(expected_bicubic, abs=1e-3)
    assert same["ssim"] == same["ssim_bicubic"]


def test_sr_default_metrics_table_and_json(sr_dir, hr_root, tmp_path, capsys):
    code, out, err = _main(capsys, "eval", sr_dir, hr_root, "--out", tmp_path / "sr.json")
    assert code == 0, err
    header, images, columns, psnr = out.splitlines()[:4]
    assert "x4 super-resolution vs bicubic" in header and images.split() == ["images", "3"]
    assert columns.split() == ["model", "bicubic"] and psnr.split()[:2] == ["PSNR", "(dB)"] and len(psnr.split()) == 4
    data = json.loads((tmp_path / "sr.json").read_text())
    assert {"psnr", "psnr_bicubic", "ssim", "ssim_bicubic"} <= set(data["metrics"])
    assert ("lpips" in data["metrics"]) == ("lpips_bicubic" in data["metrics"])
    assert "lpips" in data["metrics"] or any(n.startswith("lpips: skipped") for n in data["notes"])


@pytest.mark.parametrize(("args", "message"), [
    (["--metrics", "fid"], "fid is not for a super-resolution model"),
    (["--n", "5"], "--n and --seed are for noise models"),
    (["--dataset-mode", "aligned"], "evaluated on one folder of images"),
])
def test_sr_bad_input_is_one_line(sr_dir, hr_root, capsys, args, message):
    code, _, err = _main(capsys, "eval", sr_dir, hr_root, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_sr_image_too_small_to_downscale_is_one_line(sr_dir, tmp_path, capsys):
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(np.zeros((3, 40, 3), np.uint8)).save(folder / "thin.png")
    code, _, err = _main(capsys, "eval", sr_dir, folder)
    assert code == 2 and "thin.png: 40×3 px is too small to downscale ×4" in err, err
    assert len(err.strip().splitlines()) == 1
