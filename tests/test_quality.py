"""tools/quality.py: the known truth, the baselines, the budget every run gets, and a tiny end-to-end run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import quality  # noqa: E402

from translate.data import ensure_builtin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pairs():
    return quality.test_pairs()


def test_truth_is_the_stylisation_of_the_unpaired_test_photos(pairs):
    photos, truth = pairs
    assert photos.shape == truth.shape == (14, 128, 128, 3) and photos.dtype == np.uint8
    unpaired = sorted((ensure_builtin("photo2stylized") / "testA").glob("*.png"))
    assert np.array_equal(photos, np.stack([np.asarray(Image.open(p)) for p in unpaired]))
    assert not np.array_equal(photos, truth)


@pytest.mark.slow
def test_each_task_holds_the_same_photos_beside_their_own_filter(pairs):
    photos, stylised = pairs
    assert np.array_equal(stylised, np.stack([cv2.stylization(p, sigma_s=30, sigma_r=0.45) for p in photos]))
    filters = {"stylized_strong": lambda p: cv2.stylization(p, sigma_s=60, sigma_r=0.07),
               "enhanced": lambda p: cv2.detailEnhance(p, sigma_s=10, sigma_r=0.15),
               "sketch": lambda p: cv2.pencilSketch(p, sigma_s=60, sigma_r=0.07, shade_factor=0.05)[1]}
    for task, filtered in filters.items():
        same, truth = quality.test_pairs(task)
        assert np.array_equal(same, photos) and not np.array_equal(truth, stylised)
        assert np.array_equal(truth, np.stack([filtered(p) for p in photos]))
        unpaired = sorted((ensure_builtin(f"photo2{task}") / "testB").glob("*.png"))
        assert len(unpaired) == 14 and not np.array_equal(np.asarray(Image.open(unpaired[0])), truth[0])  # other crops


def test_scores_match_a_hand_computed_psnr(pairs):
    photos, truth = pairs
    mse = ((photos.astype(np.float64) - truth) ** 2).reshape(len(photos), -1).mean(1)
    expected = np.mean(10 * np.log10(255.0**2 / mse))
    scores = quality.score(photos, truth, None)
    assert scores["psnr"] == pytest.approx(expected, abs=1e-3)
    assert 0 < scores["ssim"] < 1 and quality.score(truth, truth, None)["ssim"] == pytest.approx(1.0)


def test_histogram_curve_maps_the_training_photos_onto_their_stylisations():
    # Applied to the pooled training photos, the learnt curves must give the pooled stylisations' histograms.
    pairs = np.stack([np.asarray(Image.open(p)) for p in
                      sorted((ensure_builtin("photo2stylized_paired") / "train").glob("*.png"))])
    photos, stylised = pairs[:, :, :128], pairs[:, :, 128:]
    matched = quality.histogram_matched(photos)
    for c in range(3):
        q = np.linspace(0.05, 0.95, 19)
        assert np.abs(np.quantile(matched[..., c], q) - np.quantile(stylised[..., c], q)).max() <= 3
    assert np.abs(np.quantile(photos[..., 0], q) - np.quantile(stylised[..., 0], q)).max() > 3


def test_every_run_gets_the_same_budget(tmp_path):
    cyclegan = quality.run_config(str(REPO / quality.PAPER["cyclegan"]), 300, 64, 16, 1, tmp_path, [])
    m, d, t = cyclegan.model, cyclegan.data, cyclegan.train
    assert (m.netG, m.ngf, m.ndf, d.crop_size, d.load_size) == ("resnet_9blocks", 16, 16, 64, 143)  # 128 · 286/256
    assert (t.max_steps, t.seed, d.builtin, d.dataset_mode) == (300, 1, "photo2stylized", "unaligned")
    # 300 steps of 140 images at batch 1 touch 3 epochs; the paper's 100 + 100 becomes 2 + 1 (round half to even).
    assert (t.n_epochs, t.n_epochs_decay) == (2, 1)
    assert Path(t.output_dir).parent == tmp_path
    pix2pix = quality.run_config(str(REPO / quality.PAPER["pix2pix"]), 300, 64, 16, 1, tmp_path, [])
    assert (pix2pix.model.netG, pix2pix.data.crop_size, pix2pix.data.builtin) == (
        "unet_128", 128, "photo2stylized_paired")  # the shallower U-Net at its minimum size
    other = quality.run_config(str(REPO / quality.PAPER["cyclegan"]), 300, 64, 16, 2, tmp_path, [])
    assert other.train.output_dir != t.output_dir  # runs are cached by their resolved config
    assert t.mixed_precision == "no"  # fp32 unless asked: the same numbers on every CPU
    bf16 = quality.run_config(str(REPO / quality.PAPER["cyclegan"]), 300, 64, 16, 1, tmp_path, [], "bf16")
    assert bf16.train.mixed_precision == "bf16" and bf16.train.output_dir != t.output_dir
    for recipe, data in (("cyclegan", "photo2sketch"), ("pix2pix", "photo2sketch_paired")):
        sketch = quality.run_config(str(REPO / quality.PAPER[recipe]), 300, 64, 16, 1, tmp_path, [], task="sketch")
        assert sketch.data.builtin == data and sketch.train.output_dir not in (t.output_dir, pix2pix.train.output_dir)


def test_lever_rows_turn_a_lever_on_or_off(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  recipe: cyclegan\n  upsample: resize_conv\n")
    rows = quality.lever_rows(str(config), ["resize_conv", "ema"])
    assert rows == [("c", []), ("c − resize_conv", quality.LEVERS["resize_conv"][1]),
                    ("c + ema", quality.LEVERS["ema"][0])]


@pytest.mark.slow
def test_tiny_run_end_to_end_and_rerun_reuses(tmp_path, capsys):
    args = ["--configs", str(REPO / quality.PAPER["cyclegan"]), "--levers", "resize_conv", "--steps", "2",
            "--width", "4", "--size", "32", "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "rows.json"),
            "--picture", str(tmp_path / "p.png"), "--picture-images", "2", "--clip"]
    assert quality.main(args) == 0
    table = capsys.readouterr().out
    assert "| do nothing (output = input) | — |" in table and "| cyclegan_horse2zebra + resize_conv | cyclegan | 2 |" \
        in table
    assert "| PSNR | SSIM | colour gap | texture gap | WARP |" in table
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["label"] for r in rows][3:] == ["cyclegan_horse2zebra", "cyclegan_horse2zebra + resize_conv"]
    # --clip: the warping error of the built-in clip, itself for doing nothing, translated for each model
    from translate.data.builtin import ensure_clip
    from translate.evaluation.flicker import warping_error
    from translate.inference.video import iter_video_frames

    assert rows[0]["scores"][0]["warp"] == pytest.approx(warping_error(iter_video_frames(ensure_clip())))
    assert all(row["scores"][0]["warp"] > 0 for row in rows[3:]) and "warp" not in rows[1]["scores"][0]
    # The colour gap to the truths, for doing nothing: the 1-D Wasserstein distance per channel (scipy's, exact)
    from scipy.stats import wasserstein_distance

    photos, truth = quality.test_pairs()
    expected = np.mean([wasserstein_distance(photos[..., c].ravel() / 255, truth[..., c].ravel() / 255)
                        for c in range(3)])
    assert rows[0]["scores"][0]["colour_gap"] == pytest.approx(expected, rel=0.02)
    # input | truth | histogram matching | the config's output, two images
    assert Image.open(tmp_path / "p.png").size == (4 * 128 + 3 * 2, 2 * 128 + 2)
    quality.main(args)
    again = json.loads((tmp_path / "rows.json").read_text())
    assert again == rows  # nothing trained twice: the same seconds and scores


@pytest.mark.slow
def test_far_tasks_hold_their_filter_and_stripes_a_part_of_every_image(pairs):
    from translate.data.builtin import _cartoon, _stripes, warm_mask

    photos, _ = pairs
    same, truth = quality.test_pairs("cartoon")
    assert np.array_equal(same, photos) and np.array_equal(truth, np.stack([_cartoon(p) for p in photos]))
    # stripes keeps only crops whose warm regions cover 15-75 % of them: other photos, each partly changed
    inputs, truth = quality.test_pairs("stripes")
    assert len(inputs) == 14 and np.array_equal(truth, np.stack([_stripes(p) for p in inputs]))
    assert all(0.15 <= warm_mask(p).mean() <= 0.75 for p in inputs)
    assert quality.score(inputs, truth, None)["psnr"] < 20  # no test image left unchanged


@pytest.mark.slow
def test_residual_auto_is_resolved_per_task_before_the_run_is_named(tmp_path, capsys):
    (tmp_path / "auto").mkdir()
    (tmp_path / "made").mkdir()
    config = tmp_path / "auto" / "c.yaml"
    config.write_text((REPO / quality.RECOMMENDED["cyclegan"]).read_text())
    assert "residual: auto" in config.read_text() and "netG: auto" in config.read_text()
    explicit = tmp_path / "made" / "c.yaml"  # the same config (and name) with each choice made explicit
    for task, residual, netG in (("stylized", True, "unet_128"), ("sketch", False, "resnet_9blocks")):
        explicit.write_text(config.read_text().replace("residual: auto", f"residual: {str(residual).lower()}")
                            .replace("netG: auto", f"netG: {netG}"))
        auto = quality.run_config(str(config), 300, 64, 16, 0, tmp_path, [], task=task)
        assert (auto.model.residual, auto.model.netG) == (residual, netG)
        assert f"c, seed 0: model.residual=auto, model.netG=auto: {str(residual).lower()}, {netG}; colour gap" in \
            capsys.readouterr().out
        # an auto run and the run of its choice are the same run (one cache entry)
        assert quality.run_config(str(explicit), 300, 64, 16, 0, tmp_path, [], task=task).train.output_dir == \
            auto.train.output_dir
