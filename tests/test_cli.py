"""`translate train` end to end in a temp dir: train, resume, the exported model loads; bad input fails cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from translate.config import to_yaml

ROOT = Path(__file__).parent.parent


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "translate.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.fixture
def config_file(tiny_config, tmp_path):
    path = tmp_path / "tiny.yaml"
    config = tiny_config("pix2pix", "train.eval_every=4", "train.eval_split=test", "train.best_metric=psnr")
    config.name, config.train.output_dir = "tiny", ""  # the default run directory: runs/<name>
    path.write_text(to_yaml(config))
    return path


@pytest.mark.slow
def test_train_resume_and_load_the_model(config_file, tmp_path):
    first = cli("train", config_file, "train.max_steps=4", "train.eval_every=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "runs" / "tiny"
    assert "run directory: runs/tiny" in first.stdout
    assert (run_dir / "config.yaml").is_file() and (run_dir / "model" / "config.json").is_file()
    assert (run_dir / "model_best" / "G.safetensors").is_file() and (run_dir / "report" / "index.html").is_file()
    metrics = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4] and all("psnr" in m for m in metrics)

    again = cli("train", config_file, "train.max_steps=6", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stdout + again.stderr
    model = json.loads((run_dir / "model" / "config.json").read_text())
    assert model["step"] == 6 and model["recipe"] == "pix2pix" and model["format_version"] == 1

    from translate import Translator

    translator = Translator.from_pretrained(run_dir / "model", device="cpu")
    from PIL import Image

    out = translator(Image.new("RGB", (37, 29), (200, 30, 30)))
    assert out.size == (37, 29)


def test_bad_config_exits_2_listing_problems_and_writes_nothing(config_file, tmp_path):
    result = cli("train", config_file, "data.batch_size=0", "model.netG=unet_256", cwd=tmp_path)
    assert result.returncode == 2
    assert "data.batch_size=0" in result.stderr and "unet_256 needs images of at least 256" in result.stderr
    assert "Traceback" not in result.stderr
    typo = cli("train", config_file, "train.max_step=3", cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean 'train.max_steps'" in typo.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = cli("train", config_file, f"data.root={empty}", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_help_and_print_config(config_file, tmp_path):
    help_text = cli("train", "--help").stdout
    assert "--resume" in help_text and "data.batch_size=4" in help_text
    printed = cli("train", config_file, "model.ngf=4", "--print-config", cwd=tmp_path)
    assert printed.returncode == 0 and "ngf: 4" in printed.stdout
    assert not (tmp_path / "runs").exists()
