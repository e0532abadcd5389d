"""Importing pytorch-CycleGAN-and-pix2pix checkpoints: fixtures written by the reference code itself (README in
tests/data/reference) must load and reproduce its stored eval- and train-mode outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.inference.reference import (
    CheckpointMismatchError,
    UnsafeCheckpointError,
    describe_checkpoint,
    import_reference,
    read_checkpoint,
)
from translate.networks import create_generator
from translate.networks.pretrained import load_pretrained, read_config

DATA = Path(__file__).parent / "data" / "reference"
MANIFEST = {case["name"]: case for case in json.loads((DATA / "manifest.json").read_text())}
REPO = Path(__file__).resolve().parents[1]


def case_options(name: str) -> tuple[dict, str]:
    """The reference options of a fixture and the name of the case whose input/outputs it shares."""
    case = MANIFEST[name]
    base = MANIFEST[case.get("same_outputs_as", name)]
    return dict(netG=base["netG"], norm=base["norm"], ngf=base["ngf"], use_dropout=base["use_dropout"]), base["name"]


def run_network(net: torch.nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    net.train(mode == "train")
    with torch.no_grad():
        return net(x)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "translate.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fixture_reproduces_reference_outputs(tmp_path, name, mode):
    options, base = case_options(name)
    out = import_reference(DATA / f"{name}.pth", tmp_path / "model", test_mode=mode, **options)
    config, nets = load_pretrained(out)
    assert config["norm_mode"] == mode and config["directions"] == {"AtoB": "G"}
    x = torch.from_numpy(np.load(DATA / f"{base}_input.npy"))
    expected = torch.from_numpy(np.load(DATA / f"{base}_output_{mode}.npy"))
    assert (run_network(nets["G"], x, mode) - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("netG,norm", [("resnet_6blocks", "instance"), ("resnet_9blocks", "batch"),
                                       ("unet_128", "batch"), ("unet_256", "instance")])
def test_round_trip_at_another_width(tmp_path, netG, norm):
    torch.manual_seed(0)
    net = create_generator(netG, ngf=16, norm=norm)
    torch.save(net.state_dict(), tmp_path / "net.pth")
    guess = describe_checkpoint(read_checkpoint(tmp_path / "net.pth"))
    assert (guess["netG"], guess["norm"], guess["ngf"]) == (netG, norm, 16)
    out = import_reference(tmp_path / "net.pth", tmp_path / "model", netG=netG, norm=norm, ngf=16)
    _, nets = load_pretrained(out)
    loaded = nets["G"].state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in net.state_dict().items())


def test_wrapped_and_data_parallel_checkpoints(tmp_path):
    options, base = case_options("resnet_6blocks_instance")
    state = torch.load(DATA / "resnet_6blocks_instance.pth", weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "a.pth")
    torch.save({"model": state}, tmp_path / "b.pth")
    x = torch.from_numpy(np.load(DATA / f"{base}_input.npy"))
    expected = torch.from_numpy(np.load(DATA / f"{base}_output_eval.npy"))
    for file in ("a.pth", "b.pth"):
        _, nets = load_pretrained(import_reference(tmp_path / file, tmp_path / file.replace(".pth", ""), **options))
        assert (run_network(nets["G"], x, "eval") - expected).abs().max().item() < 1e-5


def test_batch_norm_without_num_batches_tracked(tmp_path):
    # Checkpoints saved with PyTorch < 0.4.1 have no num_batches_tracked; it plays no part in the outputs.
    options, base = case_options("resnet_9blocks_batch")
    state = torch.load(DATA / "resnet_9blocks_batch.pth", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "old.pth")
    _, nets = load_pretrained(import_reference(tmp_path / "old.pth", tmp_path / "model", **options))
    x = torch.from_numpy(np.load(DATA / f"{base}_input.npy"))
    expected = torch.from_numpy(np.load(DATA / f"{base}_output_eval.npy"))
    assert (run_network(nets["G"], x, "eval") - expected).abs().max().item() < 1e-5


def test_cyclegan_pair(tmp_path):
    options, _ = case_options("resnet_9blocks_instance")
    out = import_reference(DATA / "resnet_9blocks_instance.pth", tmp_path / "model", G_B=DATA /
                           "resnet_9blocks_instance_legacy_keys.pth", **options)
    config, nets = load_pretrained(out)
    assert config["directions"] == {"AtoB": "G_A", "BtoA": "G_B"} and config["recipe"] == "cyclegan"
    assert set(nets) == {"G_A", "G_B"}


def test_family_defaults(tmp_path):
    out = import_reference(DATA / "unet_128_batch.pth", tmp_path / "unet", netG="unet_128", ngf=8)
    spec = read_config(out)["generators"]["G"]
    assert (spec["norm"], spec["use_dropout"]) == ("batch", True)  # the released pix2pix models use dropout
    out = import_reference(DATA / "resnet_6blocks_instance.pth", tmp_path / "resnet", netG="resnet_6blocks", ngf=8)
    spec = read_config(out)["generators"]["G"]
    assert (spec["norm"], spec["use_dropout"]) == ("instance", False)


@pytest.mark.parametrize("name,options,layer,hint", [
    ("resnet_6blocks_instance", dict(netG="resnet_9blocks", ngf=8), "model.16.conv_block.1.weight",
     "--netG resnet_6blocks"),
    ("resnet_9blocks_batch", dict(netG="resnet_9blocks", norm="instance", ngf=8), "model.1.bias", "--norm batch"),
    ("unet_128_batch", dict(netG="unet_128", norm="batch", ngf=64), "model.model.0.weight", "--ngf 8"),
    ("unet_256_batch", dict(netG="unet_128", norm="batch", ngf=8), "model.model.1.model.3", "--netG unet_256"),
])
def test_mismatch_names_layer_and_suggests(tmp_path, name, options, layer, hint):
    with pytest.raises(CheckpointMismatchError) as e:
        import_reference(DATA / f"{name}.pth", tmp_path / "model", **options)
    assert layer in str(e.value) and hint in str(e.value)
    assert not (tmp_path / "model").exists()


class RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model.1.weight": torch.zeros(8, 3, 7, 7), "payload": RunsCode(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        import_reference(tmp_path / "evil.pth", tmp_path / "model", netG="resnet_9blocks")
    assert not marker.exists() and not (tmp_path / "model").exists()


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "model"
    result = run_cli("import-reference", str(DATA / "unet_256_batch.pth"), "--netG", "unet_256", "--ngf", "8",
                     "--no-dropout", "--test-mode", "train", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and read_config(out)["norm_mode"] == "train"
    _, nets = load_pretrained(out)
    x = torch.from_numpy(np.load(DATA / "unet_256_batch_input.npy"))
    expected = torch.from_numpy(np.load(DATA / "unet_256_batch_output_train.npy"))
    assert (run_network(nets["G"], x, "train") - expected).abs().max().item() < 1e-5

    result = run_cli("import-reference", str(DATA / "unet_128_batch.pth"), "--netG", "unet_128", "--ngf", "8",
                     "--test-mode", "train", str(tmp_path / "dropout"))
    assert result.returncode == 0 and "random" in result.stdout

    result = run_cli("import-reference", str(DATA / "unet_128_batch.pth"), "--netG", "unet_256", str(tmp_path / "x"))
    assert result.returncode == 2 and "looks like unet_128" in result.stderr


def test_direction_btoa_checkpoint(tmp_path):
    # pix2pix trained by the reference with --direction BtoA: its G translates B into A.
    out = tmp_path / "model"
    result = run_cli("import-reference", str(DATA / "unet_256_batch.pth"), "--netG", "unet_256", "--ngf", "8",
                     "--no-dropout", "--direction", "BtoA", str(out))
    assert result.returncode == 0, result.stderr
    assert "G (BtoA)" in result.stdout and read_config(out)["directions"] == {"BtoA": "G"}
    pair = import_reference(DATA / "resnet_9blocks_instance.pth", tmp_path / "pair", netG="resnet_9blocks", ngf=8,
                            G_B=DATA / "resnet_9blocks_instance.pth", direction="BtoA")
    assert read_config(pair)["directions"] == {"BtoA": "G_A", "AtoB": "G_B"}
    with pytest.raises(ValueError, match="direction must be"):
        import_reference(DATA / "unet_256_batch.pth", tmp_path / "x", netG="unet_256", ngf=8, direction="AtoC")
