"""Built-in datasets: generated offline, deterministically, atomically, in the layout their dataset_mode expects."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from translate.config import load_config
from translate.data import build_dataset
from translate.data.builtin import BUILTINS, CHANNELS, MODES, ensure_builtin

LAYOUT = {"aligned": {"train", "val", "test"}, "single": {"train", "val", "test"}, "paired": {"train", "val", "test"},
          "unaligned": {"trainA", "trainB", "testA", "testB"}}


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# The photo-based ones take a few seconds each (OpenCV's stylization mostly).
SLOW = ("edges2photos", "photos", "digits")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW or n.startswith("photo2") else n
                                  for n in BUILTINS])
def test_generation_is_deterministic_and_laid_out(tmp_path, name):
    first, second = ensure_builtin(name, tmp_path / "a"), ensure_builtin(name, tmp_path / "b")
    assert first == tmp_path / "a"
    assert {p.name for p in first.iterdir() if not p.name.startswith(".")} == LAYOUT[MODES[name]]
    hashes = digest(first)
    assert len(hashes) > 100 and hashes == digest(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folder left behind
    input_nc, output_nc = CHANNELS.get(name, (3, 3))
    cfg = load_config(None, [f"data.root={first}", f"data.dataset_mode={MODES[name]}", "data.load_size=64",
                             "data.crop_size=64", f"model.input_nc={input_nc}", f"model.output_nc={output_nc}",
                             # CycleGAN's identity terms need as many channels on both sides
                             f"model.cyclegan.lambda_identity={0.5 if input_nc == output_nc else 0}"])
    item = build_dataset(cfg, "test")[0]
    assert item["A"].shape == (input_nc, 64, 64)
    assert item.get("B", item["A"][:output_nc]).shape == (output_nc, 64, 64)


def test_cached_regenerated_on_version_change_and_foreign_folders_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "cache"))
    root = ensure_builtin("shapes_paired")
    assert root == tmp_path / "cache" / "builtin" / "shapes_paired"
    marker = root / "train" / "0000.png"
    mtime = marker.stat().st_mtime_ns
    assert ensure_builtin("shapes_paired") == root and marker.stat().st_mtime_ns == mtime  # cached
    (root / ".builtin").write_text("shapes_paired 0\n")  # an older generator's output
    (root / "train" / "stale.png").write_bytes(b"")
    ensure_builtin("shapes_paired")
    assert not (root / "train" / "stale.png").exists() and len(list(root.parent.iterdir())) == 1

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        ensure_builtin("shapes_paired", foreign)
    assert (foreign / "keep.txt").read_text() == "user data"
    with pytest.raises(ValueError, match="known: shapes_paired"):
        ensure_builtin("facades")


def test_config_builtin_without_root_uses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path))
    cfg = load_config(None, ["data.builtin=shapes_unpaired", "data.load_size=72", "data.crop_size=64"])
    ds = build_dataset(cfg)
    assert len(ds) == 200 and ds[0]["A_path"].startswith(str(tmp_path / "builtin" / "shapes_unpaired" / "trainA"))
