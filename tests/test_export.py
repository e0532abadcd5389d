"""ONNX export: every registered generator exports with dynamic batch/height/width and matches PyTorch."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from translate.inference.export import OnnxGenerator, export_onnx, sample_size  # noqa: E402
from translate.inference.reference import import_reference  # noqa: E402
from translate.networks import GENERATORS, create_generator  # noqa: E402
from translate.networks.pretrained import generator_spec, load_pretrained, save_pretrained  # noqa: E402

DATA = Path(__file__).parent / "data" / "reference"
REPO = Path(__file__).resolve().parents[1]


def tiny_model_dir(path: Path, netG: str, names=("G",)) -> Path:
    norm = "batch" if netG.startswith("unet") else "instance"
    torch.manual_seed(0)
    nets = {name: create_generator(netG, ngf=8, norm=norm) for name in names}
    specs = {name: generator_spec(netG, 8, norm, False, 3, 3) for name in names}
    directions = {"AtoB": "G"} if len(names) == 1 else {"AtoB": names[0], "BtoA": names[1]}
    meta = {"recipe": "pix2pix" if len(names) == 1 else "cyclegan", "generators": specs, "directions": directions,
            "step": 0, "ema": False, "source": "test"}
    return save_pretrained(path, nets, meta)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "translate.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO)


@pytest.mark.parametrize("netG", sorted(n for n, e in GENERATORS.items() if e.kind == "image" and e.scale == 1))
def test_every_generator_matches_pytorch_at_two_sizes(tmp_path, netG):
    model_dir = tiny_model_dir(tmp_path / "model", netG)
    path = export_onnx(model_dir, log=lambda _: None)["G"]
    assert path == model_dir / "model.onnx"
    onnx_net = OnnxGenerator(path)
    stride, size = GENERATORS[netG].stride, sample_size(netG)
    assert (onnx_net.stride, onnx_net.netG) == (stride, netG)
    _, nets = load_pretrained(model_dir)
    for shape in [(1, 3, size, size), (2, 3, size + stride, size)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
        with torch.no_grad():
            expected = nets["G"](x)
        y = onnx_net(x)
        assert y.shape == expected.shape and (y - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("netG", ["resnet_6blocks", "unet_128"])
def test_residual_generator_exports_to_onnx(tmp_path, netG):
    torch.manual_seed(0)
    net = create_generator(netG, ngf=8, norm="instance", residual=True)
    with torch.no_grad():  # away from the identity: the change and the input's atanh both matter
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    spec = generator_spec(netG, 8, "instance", False, 3, 3, residual=True)
    model_dir = save_pretrained(tmp_path / "model", {"G": net.eval()},
                                {"generators": {"G": spec}, "directions": {"AtoB": "G"}, "step": 0, "ema": False})
    path = export_onnx(model_dir, log=lambda _: None)["G"]
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2)) * 2 - 1
    x[..., :4, :4] = 1.0  # the ends of the range, where the input's atanh is clamped
    with torch.no_grad():
        expected = net(x)
    assert (expected - x).abs().max() > 0.05
    assert (OnnxGenerator(path)(x) - expected).abs().max().item() < 1e-4


def test_train_norm_mode_exports_batch_statistics(tmp_path):
    # A reference checkpoint imported like plain test.py: batch norm on the statistics of the input itself.
    model_dir = import_reference(DATA / "resnet_9blocks_batch.pth", tmp_path / "model", netG="resnet_9blocks",
                                 norm="batch", ngf=8, test_mode="train")
    path = export_onnx(model_dir, log=lambda _: None)["G"]
    x = torch.from_numpy(np.load(DATA / "resnet_9blocks_batch_input.npy"))
    expected = torch.from_numpy(np.load(DATA / "resnet_9blocks_batch_output_train.npy"))
    assert (OnnxGenerator(path)(x) - expected).abs().max().item() < 1e-4


def test_cyclegan_files_and_direction(tmp_path):
    model_dir = tiny_model_dir(tmp_path / "model", "resnet_6blocks", names=("G_A", "G_B"))
    paths = export_onnx(model_dir, direction="BtoA", log=lambda _: None)
    assert paths == {"G_B": model_dir / "G_B.onnx"} and not (model_dir / "G_A.onnx").exists()
    assert set(export_onnx(model_dir, verify=False, log=lambda _: None)) == {"G_A", "G_B"}
    assert (model_dir / "G_A.onnx").is_file()
    with pytest.raises(ValueError, match="--direction"):
        export_onnx(model_dir, tmp_path / "one.onnx")
    with pytest.raises(ValueError, match="unknown direction"):
        export_onnx(model_dir, direction="CtoD")


def test_missing_onnxruntime_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ImportError, match=r"translate\[onnx\]"):
        OnnxGenerator(tmp_path / "model.onnx")


def test_cli_end_to_end(tmp_path):
    model_dir = tiny_model_dir(tmp_path / "model", "resnet_6blocks")
    result = run_cli("export", str(model_dir), "--format", "onnx")
    assert result.returncode == 0, result.stderr
    assert "max abs diff" in result.stdout and (model_dir / "model.onnx").is_file()
    # OUT after the options, as in the documented usage.
    result = run_cli("export", str(model_dir), "--opset", "18", "--no-verify", str(tmp_path / "out.onnx"))
    assert result.returncode == 0, result.stderr
    assert OnnxGenerator(tmp_path / "out.onnx").stride == 4
    result = run_cli("export", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "config.json" in result.stderr


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_exported_model_gets_the_umask_modes(tmp_path, umask):
    # A colleague's pipeline on a shared machine must be able to read the model: 0755/0644 under umask 022, group
    # writable under 002 (mkdtemp's 0700 and mkstemp's 0600 locked them out).
    old = os.umask(umask)
    try:
        model_dir = tiny_model_dir(tmp_path / "model", "resnet_6blocks")
        tiny_model_dir(model_dir, "resnet_6blocks")  # replacing an existing export too
    finally:
        os.umask(old)
    assert stat.S_IMODE(model_dir.stat().st_mode) == 0o777 & ~umask
    files = sorted(model_dir.iterdir())
    assert [f.name for f in files] == ["G.safetensors", "config.json"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask for f in files)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp or old copies left beside it
