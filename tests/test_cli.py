"""`translate train` end to end in a temp dir: train, resume, the exported model loads; bad input fails cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from translate.config import to_yaml
from translate.networks import create_generator
from translate.networks.pretrained import generator_spec, save_pretrained

ROOT = Path(__file__).parent.parent
TINY_DEMO = ["model.netG=resnet_6blocks", "model.ngf=8", "model.ndf=8", "data.load_size=32", "data.crop_size=32",
             "data.num_workers=0", "train.max_steps=1", "train.progress=false", "train.mixed_precision=no",
             "train.report=false"]


def cli(*args, cwd=None, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
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
    assert model["step"] == 6 and model["recipe"] == "pix2pix" and model["format_version"] == 2
    assert model["kind"] == "translation"

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
    assert "output_dir: runs/tiny\n" in printed.stdout  # the directory the run will use, not ''
    assert not (tmp_path / "runs").exists()


def test_overrides_are_taken_before_and_after_flags(config_file, tmp_path):
    # As users type them (#33): an override after a flag was refused with the top-level usage line.
    after = cli("train", config_file, "--print-config", "data.batch_size=3", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert "batch_size: 3\n" in after.stdout
    both = cli("train", config_file, "model.ngf=4", "--resume", "train.max_steps=7", "--print-config", cwd=tmp_path)
    assert both.returncode == 0 and "ngf: 4\n" in both.stdout and "max_steps: 7\n" in both.stdout, both.stderr
    # What is neither a flag nor key=value is refused in the subcommand's own usage.
    bad = cli("train", config_file, "--print-config", "--bogus", "oops", cwd=tmp_path)
    assert bad.returncode == 2 and "usage: translate train" in bad.stderr
    assert "unrecognized arguments: --bogus oops" in bad.stderr
    assert "usage: translate convert" in cli("convert", "m", "in", "out", "x=1").stderr
    bare = cli("train")
    assert bare.returncode == 2 and "the following arguments are required: config\n" in bare.stderr
    assert not (tmp_path / "runs").exists()


def test_a_misspelled_recipe_is_reported_alone_with_the_closest_name(tmp_path):
    result = cli("train", ROOT / "configs" / "cyclegan_recommended.yaml", "model.recipe=cyclgan", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("error: model.recipe='cyclgan' is not registered; did you mean 'cyclegan'? known: cut, "
                             "cyclegan, dcgan, fastcut, pix2pix, sr\n")


@pytest.mark.slow
def test_sr_trains_on_its_builtin_photos_as_the_readme_says(tmp_path):
    line = "translate train configs/sr_x4.yaml data.builtin=photos train.max_steps=200"
    assert line in (ROOT / "README.md").read_text() and line in (ROOT / "configs" / "sr_x4.yaml").read_text()
    args = line.split()[1:]
    args[1] = ROOT / args[1]
    # As printed, with a tiny network and one step (the printed run trains the paper's SRResNet for 200 steps).
    tiny = ["model.ngf=8", "model.ndf=8", "model.sr.n_blocks=1", "data.batch_size=2", "train.max_steps=1",
            "train.progress=false", "train.report=false", "train.mixed_precision=no"]
    result = cli(*args, *tiny, cwd=tmp_path, env={"TRANSLATE_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "sr_x4" / "model" / "config.json").is_file()
    assert len(list((tmp_path / "cache" / "builtin" / "photos" / "train").glob("*.png"))) == 210


@pytest.mark.slow
def test_a_builtin_config_trains_on_the_users_folder(unpaired_root, tmp_path):
    env = {"TRANSLATE_CACHE": str(tmp_path / "cache")}
    args = ["train", ROOT / "configs" / "demo_cyclegan.yaml", f"data.root={unpaired_root}", *TINY_DEMO]
    implicit = cli(*args, "train.output_dir=run1", cwd=tmp_path, env=env)
    assert implicit.returncode == 0, implicit.stderr[-2000:]
    assert "holds images of your own" in implicit.stderr and "data.builtin=none" in implicit.stderr
    explicit = cli(*args, "data.builtin=none", "train.output_dir=run2", cwd=tmp_path, env=env)
    assert explicit.returncode == 0, explicit.stderr[-2000:]
    assert "holds images of your own" not in explicit.stderr
    assert not (tmp_path / "cache" / "builtin").exists() and not (unpaired_root / ".builtin").exists()  # none made


@pytest.fixture
def model_dir(tmp_path):
    nets = {"G": create_generator("resnet_6blocks", ngf=8, norm="instance")}
    meta = {"recipe": "pix2pix", "directions": {"AtoB": "G"},
            "generators": {"G": generator_spec("resnet_6blocks", 8, "instance", False, 3, 3)}}
    return save_pretrained(tmp_path / "model", nets, meta)


def test_convert_that_fails_on_its_model_leaves_no_output_folder(model_dir, tmp_path):
    _images(tmp_path / "in", 2, seed=0)
    bad_direction = cli("convert", model_dir, tmp_path / "in", tmp_path / "out", "--direction", "BtoA")
    assert bad_direction.returncode == 2 and "unknown direction 'BtoA'" in bad_direction.stderr
    (model_dir / "G.safetensors").unlink()
    no_weights = cli("convert", model_dir, tmp_path / "in", tmp_path / "out")
    assert no_weights.returncode == 2 and "G.safetensors" in no_weights.stderr, no_weights.stderr
    assert "Traceback" not in bad_direction.stderr + no_weights.stderr
    assert not (tmp_path / "out").exists()


def _images(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.parametrize("layout, folders, dataset_mode, metrics", [
    ("paired", ("A", "B"), "paired", ["psnr,ssim"]),
    ("paired_split", ("test/A", "test/B"), "paired", ["psnr", "ssim"]),
    ("unaligned", ("trainA", "testA", "testB"), "unaligned", ["diversity"]),
])
def test_eval_detects_the_folder_layout(model_dir, tmp_path, layout, folders, dataset_mode, metrics):
    data = tmp_path / layout
    for folder in folders:
        _images(data / folder, 3, seed=0)  # same names and seed on both sides: pairs
    out = tmp_path / "result.json"
    result = cli("eval", model_dir, data, "--metrics", *metrics, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert saved["info"]["dataset_mode"] == dataset_mode and saved["metrics"]["images"] == 3
    if dataset_mode == "paired":
        assert {"psnr", "ssim"} <= set(saved["metrics"]) and "PSNR (dB)" in result.stdout


def test_report_shows_metrics_the_run_computed(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "logs" / "metrics.jsonl").write_text('{"step": 4, "psnr": 17.25, "ssim": 0.5}\n')
    assert cli("report", run_dir).returncode == 0
    page = (run_dir / "report" / "index.html").read_text()
    assert "no evaluation results yet" not in page and "17.25" in page and "step 4" in page
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "test_AtoB.json").write_text(json.dumps(
        {"info": {"split": "test", "direction": "AtoB", "step": 4}, "metrics": {"psnr": 18.5}, "notes": []}))
    assert cli("report", run_dir).returncode == 0
    page = (run_dir / "report" / "index.html").read_text()
    assert "test_AtoB.json" in page and "18.50" in page
