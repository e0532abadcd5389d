"""The collapsed-samples watch of noise → image recipes (DCGAN): the diversity measure on hand-worked images, the
values a tiny run logs, one warning for a generator that ignores its latent and none for a healthy one, exact
resume with the watch on, translation recipes untouched, and the report's strip of fixed-latent samples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from translate.engine.evaluation import Evaluation
from translate.engine.trainer import Trainer
from translate.engine.watch import SAMPLES_COLLAPSE, collapse_warning, diversity

WARNING = "samples have collapsed"
N = 64 * 64  # pixels of a diversity thumbnail


def rows(run_dir, name="metrics.jsonl"):
    path = run_dir / "logs" / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


# -- the measure, on hand-worked images ---------------------------------------------------------------------------
def stripes(vertical: bool) -> torch.Tensor:
    """A 64² image of ±1 stripes one pixel wide: zero mean, unit spread; vertical and horizontal ones are
    uncorrelated (every row of one meets both signs of the other equally often)."""
    line = torch.tensor([1.0, -1.0]).repeat(32)
    return (line.view(1, 64).expand(64, 64) if vertical else line.view(64, 1).expand(64, 64)).reshape(1, 1, 64, 64)


def test_diversity_of_hand_worked_pairs():
    a, b = stripes(True), stripes(False)
    # Standardised with the unbiased spread, each image's squared values sum to N - 1. Uncorrelated: RMS distance
    # sqrt(2 (N - 1) / N); opposite (correlation -1): twice the image, sqrt(4 (N - 1) / N).
    assert diversity(torch.cat([a, b])) == pytest.approx(math.sqrt(2 * (N - 1) / N), rel=1e-6)
    assert diversity(torch.cat([a, -a])) == pytest.approx(math.sqrt(4 * (N - 1) / N), rel=1e-6)
    # Brightness and contrast do not count: a faint, darker copy is the same picture.
    assert diversity(torch.cat([a, 0.1 * a - 0.5])) == pytest.approx(0.0, abs=1e-6)
    # Three images: the mean over the three pairs (a,b), (a,-a), (b,-a).
    expected = (math.sqrt(2 * (N - 1) / N) * 2 + math.sqrt(4 * (N - 1) / N)) / 3
    assert diversity(torch.cat([a, b, -a])) == pytest.approx(expected, rel=1e-6)
    # Flat images (a generator stuck on one colour) are all the same picture.
    assert diversity(torch.full((4, 1, 28, 28), 0.3)) == 0.0


def test_warning_threshold_and_text():
    assert SAMPLES_COLLAPSE == 0.5
    assert collapse_warning({"diversity": 0.5, "diversity_real": 1.0}, 7) is None
    message = collapse_warning({"diversity": 0.49, "diversity_real": 1.0}, 7)
    assert "samples have collapsed: their diversity is 0.4900, below 0.5 × the real images' 1.0000 (step 7)" in message
    assert all(k in message for k in ("model.minibatch_stddev=true", "model.spectral_norm=true",
                                      "model.gan_mode=wgangp", "model.n_critic=5", "train.optimizers.D.lr"))


# -- tiny DCGAN runs on 16 digits ---------------------------------------------------------------------------------
def collapse(trainer: Trainer) -> Trainer:
    """G's output for every latent becomes that of the first: a generator that ignores z (gradients still flow)."""
    trainer.nets["G"].register_forward_hook(lambda module, args, out: out[:1].expand_as(out))
    return trainer


@pytest.fixture(scope="module")
def healthy_run(dcgan_config, tmp_path_factory):
    """4 steps, an evaluation every 2 (the watch; a noise model has nothing to translate), the report."""
    out = tmp_path_factory.mktemp("healthy") / "run"
    return Trainer(dcgan_config(out, "train.max_steps=4", "train.eval_every=2", "train.report=true")).fit()


def test_a_run_logs_diversity_against_the_real_images(healthy_run, digits_root):
    logged = rows(healthy_run)
    assert [r["step"] for r in logged] == [2, 4]
    assert all(set(r) == {"step", "diversity", "diversity_real", "diversity_ratio"} for r in logged)
    # The real value: all 16 digits (fewer than the 64 the watch takes), read here with PIL, not the data pipeline.
    digits = torch.stack([torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32))
                          for p in sorted(digits_root.glob("*.png"))])[:, None] / 127.5 - 1
    for r in logged:
        assert r["diversity_real"] == pytest.approx(diversity(digits), rel=1e-5)
        assert r["diversity_ratio"] == pytest.approx(r["diversity"] / r["diversity_real"], rel=1e-9)
        assert r["diversity"] > SAMPLES_COLLAPSE * r["diversity_real"]  # an untrained G's samples differ
    # The same values went to TensorBoard, next to the other metrics (eval/...).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((healthy_run / "logs").rglob("events.out.tfevents.*")).parent)).Reload()
    for tag in ("diversity", "diversity_real", "diversity_ratio"):
        scalars = events.Scalars(f"eval/{tag}")
        assert [(s.step, pytest.approx(s.value, rel=1e-6)) for s in scalars] == [(r["step"], r[tag]) for r in logged]


def test_without_evaluation_the_watch_runs_with_each_sample_grid(dcgan_config, tmp_path, capsys):
    run = Trainer(dcgan_config(tmp_path / "run", "train.sample_every=1", "train.max_steps=3")).fit()
    assert [r["step"] for r in rows(run)] == [1, 2, 3]
    assert WARNING not in capsys.readouterr().out


def test_a_generator_that_ignores_its_latent_is_warned_about_once(dcgan_config, tmp_path, capsys):
    run = collapse(Trainer(dcgan_config(tmp_path / "run", "train.max_steps=4", "train.sample_every=1"))).fit()
    logged = rows(run)
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert all(r["diversity"] < 1e-6 < r["diversity_real"] for r in logged)
    out = capsys.readouterr().out
    assert out.count(WARNING) == 1
    assert "below 0.5 × the real images'" in out and "(step 1)" in out


def test_the_watch_leaves_training_alone(healthy_run, dcgan_config, tmp_path, monkeypatch):
    # Same config without the watch: the same losses, bit for bit, so the watch draws nothing from the training RNG.
    monkeypatch.setattr(Evaluation, "watch_samples", lambda self: {})
    quiet = Trainer(dcgan_config(tmp_path / "run", "train.max_steps=4", "train.eval_every=2")).fit()
    assert rows(quiet) == []
    assert rows(quiet, "losses.jsonl") == rows(healthy_run, "losses.jsonl")


def test_resume_is_exact_with_the_watch_on(dcgan_config, tmp_path, capsys):
    # Random 28² crops of 32² images: the real images' diversity depends on the epoch, so the value measured once
    # must come back from the checkpoint. 2 steps per epoch: the resumed run starts in epoch 1.
    options = ["train.max_steps=4", "data.load_size=32", "train.sample_every=1", "train.checkpoint_every=2"]
    full = collapse(Trainer(dcgan_config(tmp_path / "full", *options))).fit()
    part = tmp_path / "part"
    collapse(Trainer(dcgan_config(part, *options, "train.max_steps=2"))).fit()
    collapse(Trainer(dcgan_config(part, *options), resume=True)).fit()
    assert rows(part) == rows(full) and [r["step"] for r in rows(full)] == [1, 2, 3, 4]
    assert len({r["diversity_real"] for r in rows(full)}) == 1
    assert rows(part, "losses.jsonl")[-1] == rows(full, "losses.jsonl")[-1]
    # Warned once in the full run and once in the first part; the resumed part knows it has warned.
    assert capsys.readouterr().out.count(WARNING) == 2


@pytest.mark.parametrize("recipe, direction, directions", [
    ("pix2pix", "AtoB", {"AtoB": "G"}), ("cyclegan", "AtoB", {"AtoB": "G_A", "BtoA": "G_B"}),
    ("cut", "BtoA", {"BtoA": "G"}),  # a one-generator recipe translates the way its data was read
    ("cyclegan", "BtoA", {"BtoA": "G_A", "AtoB": "G_B"})])
def test_translation_recipes_log_their_distance_from_the_target_colours_not_diversity(tiny_config, recipe, direction,
                                                                                       directions):
    run = Trainer(tiny_config(recipe, "train.max_steps=2", "train.sample_every=1", "train.report=false",
                              f"data.direction={direction}")).fit()
    logged = rows(run)
    keys = sorted(["step"] + [f"colour_gap_{d}{end}" for d in directions for end in ("", "_input")])
    assert [sorted(r) for r in logged] == [keys] * 2
    assert all(0 <= r[f"colour_gap_{d}"] <= 1 for r in logged for d in directions)
    first = f"colour_gap_{direction}_input"
    assert logged[0][first] == logged[1][first]  # the same items each time
    # The exported model names the same directions, so `translate convert --direction` finds its generator.
    assert json.loads((run / "model" / "config.json").read_text())["directions"] == directions


# -- the report -----------------------------------------------------------------------------------------------------
def test_the_report_shows_a_strip_of_fixed_latent_samples(healthy_run):
    html = (healthy_run / "report" / "index.html").read_text()
    assert '<img src="samples_strip.png"' in html and "<figcaption>steps 2, 4</figcaption>" in html
    # The diversity curve shares its chart with the real images' value.
    assert "<title>diversity</title>" in html and "<title>diversity_real</title>" not in html
    chart = html[html.index("<title>diversity</title>"):]
    assert ">diversity_real</text>" in chart[:chart.index("</svg>")]
    assert "diversity of samples" in html  # the last values, labelled as what they are
    # One row per saved step, top to bottom: the first row of that step's grid (8 of the 32 fixed latents' samples,
    # 28² with 2 px padding), enlarged twice, right of the step labels.
    strip = np.asarray(Image.open(healthy_run / "report" / "samples_strip.png").convert("RGB"))
    cell = 28 + 2
    assert strip.shape[0] == (2 * cell + 2) * 2
    for k, step in enumerate((2, 4)):
        grid = np.asarray(Image.open(healthy_run / "samples" / f"step_{step:06d}.png").convert("RGB"))
        first_row = grid[:cell].repeat(2, 0).repeat(2, 1)
        assert not np.array_equal(grid[:cell], grid[cell:2 * cell])  # so another row would not pass
        assert np.array_equal(strip[k * cell * 2:(k + 1) * cell * 2, -first_row.shape[1]:], first_row)
