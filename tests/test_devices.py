"""Which CPUs and GPUs run bf16 natively (torch's private checks, else /proc/cpuinfo), and what
``train.mixed_precision=auto`` resolves to: the hardware is mocked both ways."""

from __future__ import annotations

import pytest
import torch

from translate import devices
from translate.config import load_config
from translate.devices import cpu_bf16_unit  # the real detection: conftest mocks the module's for other tests

# Flags lines as the kernel prints them (shortened), on the three kinds of CPU this project has run on, and on Arm.
CPUINFO = {
    "xeon_amx": "processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile "
                "amx_int8\n",
    "epyc_zen4": "processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\n",
    "xeon_avx512": "processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n",
    "epyc_avx2": "processor : 0\nflags : fpu sse2 avx2 fma\n",
    "graviton3": "processor : 0\nFeatures : fp asimd sve i8mm bf16\n",
}
TORCH_CHECKS = {"amx": (torch.cpu, "_is_amx_tile_supported"), "avx512_bf16": (torch.cpu, "_is_avx512_bf16_supported")}


@pytest.fixture
def cpuinfo(tmp_path):
    for name, text in CPUINFO.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.fixture
def no_torch_checks(monkeypatch):
    """torch without its private checks (they may vanish in any release): only /proc/cpuinfo can tell."""
    for module, name in TORCH_CHECKS.values():
        monkeypatch.delattr(module, name, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None, raising=False)  # calling it fails


def mock_torch_checks(monkeypatch, **answers):
    for key, (module, name) in TORCH_CHECKS.items():
        monkeypatch.setattr(module, name, lambda key=key: answers.get(key, False), raising=False)


def test_cpuinfo_flags_decide_where_torch_cannot(cpuinfo, no_torch_checks, monkeypatch):
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    assert cpu_bf16_unit(cpuinfo / "xeon_amx") == "AMX"
    assert cpu_bf16_unit(cpuinfo / "epyc_zen4") == "avx512_bf16"
    assert cpu_bf16_unit(cpuinfo / "xeon_avx512") is None  # AVX-512 without bf16: oneDNN would emulate it
    assert cpu_bf16_unit(cpuinfo / "epyc_avx2") is None
    assert cpu_bf16_unit(cpuinfo / "missing") is None
    monkeypatch.setattr(devices.platform, "machine", lambda: "aarch64")
    assert cpu_bf16_unit(cpuinfo / "graviton3") == "Arm bf16"
    assert cpu_bf16_unit(cpuinfo / "xeon_amx") is None  # x86 flags mean nothing on Arm


def test_torch_checks_decide_first(cpuinfo, monkeypatch):
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    mock_torch_checks(monkeypatch, amx=True, avx512_bf16=True)
    assert cpu_bf16_unit(cpuinfo / "epyc_avx2") == "AMX"
    mock_torch_checks(monkeypatch, avx512_bf16=True)
    assert cpu_bf16_unit(cpuinfo / "xeon_amx") == "avx512_bf16"  # e.g. AMX present but not enabled by the OS
    mock_torch_checks(monkeypatch)
    assert cpu_bf16_unit(cpuinfo / "xeon_amx") is None
    # On x86 oneDNN's check also says yes where it emulates bf16 (AVX-512 without bf16): it must not count.
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert cpu_bf16_unit(cpuinfo / "xeon_avx512") is None


def test_a_failing_torch_check_falls_back_to_the_flags(cpuinfo, monkeypatch):
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")

    def broken():
        raise RuntimeError("cpuinfo failed to initialize")

    for module, name in TORCH_CHECKS.values():
        monkeypatch.setattr(module, name, broken, raising=False)
    assert cpu_bf16_unit(cpuinfo / "xeon_amx") == "AMX"
    assert cpu_bf16_unit(cpuinfo / "xeon_avx512") is None


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(devices, "cpu_bf16_unit", lambda: "AMX")
    assert devices.resolve_mixed_precision("auto", "cpu") == ("bf16", "bf16: this CPU has AMX")
    monkeypatch.setattr(devices, "cpu_bf16_unit", lambda: None)
    assert devices.resolve_mixed_precision("auto", "cpu") == ("no", "fp32: this CPU has no bf16 instructions")
    for asked in ("no", "bf16", "fp16"):  # an explicit choice is kept, whatever the hardware
        assert devices.resolve_mixed_precision(asked, "cpu")[0] == asked


def test_auto_precision_on_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert devices.resolve_mixed_precision("auto") == ("bf16", "bf16: NVIDIA H200 supports it")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert devices.resolve_mixed_precision("auto", "cuda:0") == ("no", "fp32: Tesla V100 has no bf16")
    assert devices.resolve_mixed_precision("auto", "mps")[0] == "no"


def test_auto_is_the_default_and_the_trainer_resolves_it(tiny_config, monkeypatch, capsys):
    from translate.engine.trainer import Trainer

    assert load_config(None, ["data.root=/x"]).train.mixed_precision == "auto"
    monkeypatch.setattr(devices, "cpu_bf16_unit", lambda: "avx512_bf16")
    trainer = Trainer(tiny_config("pix2pix", "train.mixed_precision=auto"))
    assert trainer.accelerator.mixed_precision == "bf16"
    assert trainer.config.train.mixed_precision == "auto"  # the request is what config.yaml records
    assert "train.mixed_precision=auto: bf16: this CPU has avx512_bf16" in capsys.readouterr().out
    monkeypatch.setattr(devices, "cpu_bf16_unit", lambda: None)
    trainer = Trainer(tiny_config("pix2pix", "train.mixed_precision=auto"))
    assert trainer.accelerator.mixed_precision == "no"
    assert "fp32: this CPU has no bf16 instructions" in capsys.readouterr().out
