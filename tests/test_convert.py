"""Folder conversion: every input kind, bad files reported, safe to kill and resume, the CLI end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from torchvision.io import ImageReadMode, decode_png, read_file

from translate.cli import main
from translate.fileio import TMP_PREFIX
from translate.imageio import encode_png16
from translate.inference.convert import SUMMARY_NAME, convert_folder, plan_jobs
from translate.networks import create_generator
from translate.networks.pretrained import generator_spec, save_pretrained

ROOT = Path(__file__).resolve().parents[1]
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    nets = {name: create_generator("resnet_6blocks", ngf=8, norm="instance") for name in ("G_A", "G_B")}
    meta = {"recipe": "cyclegan", "directions": {"AtoB": "G_A", "BtoA": "G_B"},
            "generators": {name: generator_spec("resnet_6blocks", 8, "instance", False, 3, 3) for name in nets}}
    return save_pretrained(tmp_path_factory.mktemp("model") / "model", nets, meta)


def noise(rng, h, w, c=3, dtype=np.uint8):
    top = np.iinfo(dtype).max
    return (rng.random((h, w, c)) * top).astype(dtype) if c > 1 else (rng.random((h, w)) * top).astype(dtype)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder with every kind of input, two bad files and files that must be ignored."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    (root / "sub dir" / "deeper").mkdir(parents=True)
    Image.fromarray(noise(rng, 40, 50)).save(root / "rgb.png")
    Image.fromarray(noise(rng, 40, 50, 1)).save(root / "gray.png")
    Image.fromarray(noise(rng, 33, 21, 4)).save(root / "sub dir" / "rgba.png")
    Image.fromarray(noise(rng, 30, 20, 2)).save(root / "gray_alpha.png")
    Image.fromarray(noise(rng, 40, 50)).convert("P").save(root / "palette.png")
    Image.fromarray(noise(rng, 40, 50)).convert("CMYK").save(root / "cmyk.jpg")
    photo = Image.fromarray(noise(rng, 30, 60))  # stored 60 wide, 30 high; EXIF orientation 6: shown 30 × 60
    exif = photo.getexif()
    exif[0x0112], exif[0x010F] = 6, "TestCamera"
    photo.save(root / "sub dir" / "deeper" / "Photo ü 1.JPG", exif=exif.tobytes(), icc_profile=SRGB, quality=95)
    Image.fromarray(noise(rng, 20, 24, 1, np.uint16)).save(root / "gray16.png")
    (root / "rgb16.png").write_bytes(encode_png16(noise(rng, 20, 24, 3, np.uint16)))
    (root / "rgba16.png").write_bytes(encode_png16(noise(rng, 20, 24, 4, np.uint16)))
    Image.fromarray(noise(rng, 40, 50)).save(root / "photo.webp")
    Image.fromarray(noise(rng, 40, 50)).save(root / "bitmap.bmp")
    Image.fromarray(noise(rng, 40, 50)).save(root / "scan.tif")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(300))  # corrupt
    (root / "notes.png").write_text("this is not an image")  # a text file
    (root / "readme.txt").write_text("not an image extension: ignored")
    Image.fromarray(noise(rng, 10, 10)).save(root / ".hidden.png")
    return root


GOOD = ["bitmap.bmp", "cmyk.jpg", "gray.png", "gray16.png", "gray_alpha.png", "palette.png", "photo.webp", "rgb.png",
        "rgb16.png", "rgba16.png", "scan.tif", "sub dir/deeper/Photo ü 1.JPG", "sub dir/rgba.png"]
BAD = ["broken.jpg", "notes.png"]


def read16(path) -> np.ndarray:
    return decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED).permute(1, 2, 0).numpy()


def test_every_input_kind_converts(model_dir, inputs, tmp_path):
    out = tmp_path / "out"
    summary = convert_folder(model_dir, inputs, out, device="cpu", progress=False)
    assert (summary["found"], summary["converted"], summary["failed"]) == (15, 13, 2)
    assert (summary["left_out"], summary["left_out_by_extension"]) == (1, {".txt": 1})  # readme.txt, not .hidden
    assert sorted(f["file"] for f in summary["failures"]) == BAD
    assert json.loads((out / SUMMARY_NAME).read_text())["converted"] == 13
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != SUMMARY_NAME)
    assert written == GOOD  # mirrored, same names and formats; hidden, text and bad files absent

    photo = Image.open(out / "sub dir" / "deeper" / "Photo ü 1.JPG")
    assert photo.size == (30, 60)  # upright
    assert photo.getexif()[0x0112] == 1 and photo.getexif()[0x010F] == "TestCamera"
    assert photo.info["icc_profile"] == SRGB
    for name in ("rgb.png", "gray.png", "palette.png", "cmyk.jpg", "photo.webp", "bitmap.bmp", "scan.tif"):
        converted = Image.open(out / name)
        mode = "L" if name == "gray.png" else "RGB"  # gray stays gray, the rest becomes RGB
        assert converted.size == Image.open(inputs / name).size and converted.mode == mode, name
    rgba_in = np.asarray(Image.open(inputs / "sub dir/rgba.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "sub dir/rgba.png"))[..., 3], rgba_in[..., 3])
    assert Image.open(out / "gray_alpha.png").mode == "LA"
    for name in ("rgb16.png", "rgba16.png", "gray16.png"):
        assert read16(out / name).dtype == np.uint16, name  # 16 bits in, 16 bits out
    np.testing.assert_array_equal(read16(out / "rgba16.png")[..., 3], read16(inputs / "rgba16.png")[..., 3])


def test_rerun_skips_and_overwrite_converts_again(model_dir, inputs, tmp_path):
    out = tmp_path / "out"
    convert_folder(model_dir, inputs, out, device="cpu", progress=False, fmt="png")
    again = convert_folder(model_dir, inputs, out, device="cpu", progress=False, fmt="png")
    assert (again["converted"], again["skipped"], again["failed"]) == (0, 13, 2)
    forced = convert_folder(model_dir, inputs, out, device="cpu", progress=False, fmt="png", overwrite=True)
    assert forced["converted"] == 13


def test_fail_fast_and_pixel_limit(model_dir, inputs, tmp_path):
    summary = convert_folder(model_dir, inputs, tmp_path / "a", device="cpu", progress=False, fail_fast=True,
                             workers=1, batch_size=1)
    assert summary["failed"] == 1 and summary["not_attempted"] > 0
    summary = convert_folder(model_dir, inputs, tmp_path / "b", device="cpu", progress=False, max_pixels=1000)
    reasons = {f["file"]: f["error"] for f in summary["failures"]}
    assert "max_pixels" in reasons["rgb.png"] and summary["converted"] == 5  # the three 20×24, 30×20, 21×33


def test_output_names_never_collide(tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("a.jpg", "a.png", "b.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "in" / name)
    jobs, _ = plan_jobs(tmp_path / "in", tmp_path / "in" / "out", "png")
    assert sorted(j.dst.name for j in jobs) == ["a.jpg.png", "a.png.png", "b.png"]
    (tmp_path / "in" / "out").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "out" / "x.png")
    (tmp_path / "in" / "out" / "log.txt").write_text("")
    jobs, left_out = plan_jobs(tmp_path / "in", tmp_path / "in" / "out", "png")
    assert len(jobs) == 3 and not left_out  # outputs inside inputs: neither inputs nor left out


def test_empty_folder_is_an_error_that_names_the_extensions(model_dir, tmp_path, capsys):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "sub" / "notes.txt").write_text("")
    (tmp_path / "in" / "raw.CR2").write_bytes(b"")
    assert main(["convert", str(model_dir), str(tmp_path / "in"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no images found under" in err and ".jpg, .jpeg, .png" in err, err
    assert "1 .cr2, 1 .txt" in err and not (tmp_path / "out").exists()


def _folder(root: Path, names: list[str]) -> Path:
    root.mkdir()
    rng = np.random.default_rng(3)
    for name in names:
        Image.fromarray(noise(rng, 32, 32)).save(root / name)
    return root


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith("convert_summary")}


def test_shards_together_equal_one_run_and_the_last_merges_the_summary(model_dir, tmp_path):
    src = _folder(tmp_path / "in", [f"img_{i}.png" for i in range(5)])
    (src / "img_5.png").write_text("not an image")
    whole = convert_folder(model_dir, src, tmp_path / "whole", device="cpu", progress=False)
    out = tmp_path / "sharded"
    first = convert_folder(model_dir, src, out, device="cpu", progress=False, shard=(1, 2))
    assert sorted(_outputs(out)) == ["img_1.png", "img_3.png"]  # every 2nd from the 2nd, img_5 failed
    assert (first["found"], first["converted"], first["failed"], first["pending_shards"]) == (3, 2, 1, [0])
    assert not (out / SUMMARY_NAME).exists() and (out / "convert_summary.shard-1-of-2.json").is_file()
    second = convert_folder(model_dir, src, out, device="cpu", progress=False, shard=(0, 2))
    assert second["pending_shards"] == [] and _outputs(out) == _outputs(tmp_path / "whole")
    merged = json.loads((out / SUMMARY_NAME).read_text())
    for key in ("found", "converted", "skipped", "failed", "failures", "left_out", "images_sha256"):
        assert merged[key] == whole[key], key
    assert [s["shard"] for s in merged["shards"]] == ["0/2", "1/2"] and merged["shard"] is None
    assert json.loads((out / "convert_summary.shard-0-of-2.json").read_text())["converted"] == 3


def test_a_shard_cleans_only_its_own_stale_temp_files(model_dir, tmp_path):
    src = _folder(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    mine, other = (out / f"{TMP_PREFIX}{dead.pid}-0123abcd-{name}" for name in ("a.png", "b.png"))
    mine.write_bytes(b"half")
    other.write_bytes(b"half")  # b.png is shard 1's: its writer may be alive on another machine
    convert_folder(model_dir, src, out, device="cpu", progress=False, shard=(0, 2))
    assert not mine.exists() and other.exists()


def test_shard_option_is_checked(model_dir, tmp_path, capsys):
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(SystemExit):
            main(["convert", str(model_dir), str(tmp_path), str(tmp_path / "out"), "--shard", bad])
        assert "I/N" in capsys.readouterr().err


def _convert_command(*args) -> list[str]:
    return [sys.executable, "-m", "translate.cli", "convert", *map(str, args)]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_cli_end_to_end(model_dir, inputs, tmp_path):
    result = subprocess.run(_convert_command(model_dir, inputs, tmp_path / "out", "--format", "jpg", "--quality",
                                             "90", "--direction", "BtoA", "--batch-size", "2", "--tile", "32",
                                             "--workers", "2", "--device", "cpu", "--quiet"),
                            capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 1, result.stderr  # two bad files
    assert "broken.jpg" in result.stdout and "notes.png" in result.stdout and "converted 13" in result.stdout
    assert sorted(p.suffix for p in (tmp_path / "out").rglob("*.jpg")) == [".jpg"] * 13
    summary = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert summary["generator"] == "G_B" and summary["format"] == "jpg"


@pytest.mark.slow
def test_tool_script_and_usage_errors(model_dir, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (20, 16), (200, 30, 30)).save(tmp_path / "in" / "one.png")
    tool = subprocess.run([sys.executable, str(ROOT / "tools" / "convert_folder.py"), str(model_dir),
                           str(tmp_path / "in"), str(tmp_path / "out"), "--quiet"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert tool.returncode == 0, tool.stderr
    assert Image.open(tmp_path / "out" / "one.png").size == (20, 16)
    assert main(["convert", str(model_dir), str(tmp_path / "nothing"), str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_work(model_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(5)
    n = 40
    for i in range(n):
        Image.fromarray(noise(rng, 96, 96)).save(src / f"img_{i:02d}.png")
    process = subprocess.Popen(_convert_command(model_dir, src, out, "--batch-size", "1", "--workers", "1",
                                                "--device", "cpu", "--quiet"),
                               env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(out.glob("img_*.png"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("img_*.png")}
    assert 3 <= len(done) < n, "the run was not interrupted in the middle"
    for name in done:
        Image.open(out / name).load()  # every output that exists is complete

    summary = convert_folder(model_dir, src, out, device="cpu", progress=False)
    assert (summary["converted"], summary["skipped"], summary["failed"]) == (n - len(done), len(done), 0)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("img_*.png") if p.name in done} == done  # untouched
    assert len(list(out.glob("img_*.png"))) == n
    assert not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]
