"""``Translator(dtype="auto", backend="auto")``: bf16 only on bf16 hardware and only where the model's output stays
40 dB from fp32, onnxruntime only where faster; measured once per model, cached beside it or in $TRANSLATE_CACHE."""

from __future__ import annotations

import json
import os
import warnings

import kornia
import pytest
import torch

from translate import Translator, devices
from translate.inference import autotune
from translate.networks import create_generator
from translate.networks.pretrained import generator_spec, load_pretrained, save_pretrained


def make_model(directory, norm="instance", netG="resnet_6blocks"):
    torch.manual_seed(0)
    net = create_generator(netG, ngf=8, norm=norm, use_dropout=False)
    save_pretrained(directory, {"G": net}, {"recipe": "pix2pix", "generators": {
        "G": generator_spec(netG, 8, norm, False, 3, 3)}, "directions": {"AtoB": "G"}, "norm_mode": "eval"})
    return directory


@pytest.fixture(autouse=True)
def small_probe(tmp_path, monkeypatch):
    """A 64-px probe (bf16 is emulated, slowly, on CPUs without it) and a cache directory of the test's own."""
    monkeypatch.setattr(autotune, "PROBE_SIDE", 64)
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def model_dir(tmp_path):
    return make_model(tmp_path / "model")


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(devices, "cpu_bf16_unit", lambda: "AMX")
    # This CPU emulates bf16 (slowly): the warning meant for users who ask for bf16 on such a CPU is expected here.
    warnings.filterwarnings("ignore", message=".*no bf16 instructions")


def count_calls(monkeypatch, name, replacement=None):
    """Replace ``autotune.<name>`` by a counting wrapper (around ``replacement`` or the real function)."""
    calls = []
    target = replacement or getattr(autotune, name)
    monkeypatch.setattr(autotune, name, lambda *a, **k: calls.append(a) or target(*a, **k))
    return calls


def test_psnr_by_hand():
    a = torch.zeros(3, 8, 8)
    assert autotune.psnr_db(a, a + 0.01) == pytest.approx(40.0)  # mse 1e-4 on a peak of 1
    assert autotune.psnr_db(a, a) == float("inf")


def test_without_bf16_hardware_auto_is_fp32_and_probes_nothing(model_dir, monkeypatch):
    calls = count_calls(monkeypatch, "measure_bf16_psnr")
    t = Translator.from_pretrained(model_dir, device="cpu")
    assert t.dtype == torch.float32 and t.backend == "torch" and not calls
    assert not (model_dir / autotune.PROBE_NAME).exists()


def test_bf16_hardware_probes_once_and_reuses_the_cache(model_dir, bf16_cpu, monkeypatch):
    calls = count_calls(monkeypatch, "measure_bf16_psnr")
    t = Translator.from_pretrained(model_dir, device="cpu")
    assert t.dtype == torch.bfloat16 and len(calls) == 1
    probe = model_dir / autotune.PROBE_NAME
    written = probe.read_bytes(), probe.stat().st_mtime_ns
    (machine,) = set(json.loads(written[0])) - {"fingerprint"}
    psnr = json.loads(written[0])[machine]["bf16_psnr_db"]["G"]

    # The cached figure is the PSNR of the plain network's bf16 autocast output against its fp32 output on the
    # probe, computed here with kornia.
    G = load_pretrained(model_dir)[1]["G"]
    x = autotune.probe_pixels(3, 64)[None] * 2 - 1
    with torch.no_grad():
        ref = ((G(x) + 1) / 2).clamp(0, 1)
        with torch.autocast("cpu", torch.bfloat16):
            low = ((G(x).float() + 1) / 2).clamp(0, 1)
    assert psnr == pytest.approx(kornia.metrics.psnr(low, ref, 1.0).item(), abs=0.5)
    assert 40 <= psnr < 100  # bf16 really ran: not the fp32 output again

    assert Translator.from_pretrained(model_dir, device="cpu").dtype == torch.bfloat16
    assert len(calls) == 1 and (probe.read_bytes(), probe.stat().st_mtime_ns) == written

    os.utime(model_dir / "G.safetensors", ns=(written[1] + 10**9,) * 2)  # re-exported weights: measured again
    Translator.from_pretrained(model_dir, device="cpu")
    assert len(calls) == 2


@pytest.mark.parametrize(("psnr", "dtype"), [(39.9, torch.float32), (40.0, torch.bfloat16)])
def test_bf16_is_used_only_at_40_db_or_more(model_dir, bf16_cpu, monkeypatch, psnr, dtype):
    monkeypatch.setattr(autotune, "measure_bf16_psnr", lambda model_dir, device: {"G": psnr})
    choice = autotune.choose(model_dir, torch.device("cpu"))
    assert choice.dtype == dtype
    assert f"{psnr:.1f} dB" in choice.reason
    assert Translator.from_pretrained(model_dir, device="cpu").dtype == dtype


def test_read_only_model_dir_keeps_the_probe_in_the_cache_dir(model_dir, tmp_path, bf16_cpu, monkeypatch):
    real = autotune.write_text

    def write_text(path, text):  # what a read-only mount (or another user's folder) does
        if os.path.samefile(path.parent, model_dir):
            raise PermissionError(30, "Read-only file system", str(path))
        return real(path, text)

    monkeypatch.setattr(autotune, "write_text", write_text)
    calls = count_calls(monkeypatch, "measure_bf16_psnr", lambda model_dir, device: {"G": 45.0})
    assert autotune.choose(model_dir, torch.device("cpu")).dtype == torch.bfloat16
    cached = autotune.fallback_dir(model_dir) / "probe.json"
    assert cached.is_relative_to(tmp_path / "cache") and cached.is_file()
    assert not (model_dir / autotune.PROBE_NAME).exists()
    assert autotune.choose(model_dir, torch.device("cpu")).dtype == torch.bfloat16
    assert len(calls) == 1


@pytest.mark.slow
def test_backend_auto_picks_the_faster_and_builds_the_export(tmp_path, monkeypatch):
    model_dir = make_model(tmp_path / "p2p", norm="batch")
    timings = count_calls(monkeypatch, "measure_seconds")
    choice = autotune.choose(model_dir, torch.device("cpu"), backend="auto")
    data = json.loads((model_dir / autotune.PROBE_NAME).read_text())
    measured = next(v for k, v in data.items() if k != "fingerprint")["seconds float32"]
    assert len(timings) == 1 and measured["torch"] > 0 and measured["onnxruntime"] > 0
    assert choice.backend == min(measured, key=measured.get)
    assert (model_dir / "model.onnx").is_file()  # built next to the model, translate export's name

    for faster in ("onnxruntime", "torch"):
        slower = "torch" if faster == "onnxruntime" else "onnxruntime"
        monkeypatch.setattr(autotune, "measure_seconds", lambda *a, f=faster, s=slower: {f: 1.0, s: 2.0})
        (model_dir / autotune.PROBE_NAME).unlink()
        t = Translator.from_pretrained(model_dir, device="cpu", backend="auto")
        assert t.backend == faster
        x = torch.rand(1, 3, 32, 32)
        torch.testing.assert_close(t(x), Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")(x),
                                   atol=1e-4, rtol=0)


def test_backend_auto_keeps_torch_for_instance_norm(model_dir, monkeypatch):
    calls = count_calls(monkeypatch, "measure_seconds")
    choice = autotune.choose(model_dir, torch.device("cpu"), backend="auto")
    assert choice.backend == "torch" and "tiles" in choice.reason and not calls
    assert not (model_dir / "model.onnx").exists()
