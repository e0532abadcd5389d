"""Smoke test of tools/benchmark.py: the --quick run (tiny networks, 1 thread) prints its table and writes JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_quick_prints_table(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "benchmark.py"), "--quick", "--rows", "train,convert", "--json",
         str(out), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| job | settings | s/iter | images/s | peak mem |" in proc.stdout
    assert "| train cyclegan | fp32, batch 1, tiny |" in proc.stdout
    assert "| plain loop cyclegan | fp32, batch 1, tiny |" in proc.stdout and "the plain loop's time" in proc.stdout
    assert "| convert resnet_9blocks | 3 images 64², fp32 |" in proc.stdout
    result = json.loads(out.read_text())
    assert result["meta"]["conv_gflops"]["fp32_forward"] > 0
    rows = {r["kind"]: r for r in result["rows"]}
    assert set(rows) == {"train", "convert"}
    for row in rows.values():
        assert "error" not in row, row
        assert row["s_iter"] > 0 and row["images_s"] > 0 and row["peak_gib"] > 0.05 and row["gflop"] > 0


def test_benchmark_video_rows(tmp_path):
    """--rows video on a tiny clip: the clip and the same frames as PNGs converted (fp32, and auto saying what it
    resolved to), then a 5-frame and a 6-frame clip's peaks side by side (--video-long at 1 fps)."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "benchmark.py"), "--quick", "--rows", "video", "--video-sizes",
         "64x48:3", "--video-long", "6", "--video-long-size", "64x48", "--video-fps", "1", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| job | settings | s/iter | images/s | peak mem |" in proc.stdout
    assert "video rows: 3 frames 64×48 (3.00 s at 1 fps), the same frames as 3 PNGs" in proc.stdout
    assert "| convert video | 3 frames 64×48, fp32 |" in proc.stdout
    assert "| convert PNG frames | 3 PNGs 64×48, fp32 |" in proc.stdout and "the video's frames/s" in proc.stdout
    assert "| convert video | 3 frames 64×48, auto (→ " in proc.stdout
    assert "| video memory | 5 frames 64×48 (5 s at 1 fps)" in proc.stdout
    assert "| video memory | 6 frames 64×48 (6 s at 1 fps)" in proc.stdout
    assert "× the 5-frame clip's peak" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["job"] for r in rows] == ["convert video", "convert PNG frames", "convert video", "video memory",
                                        "video memory"]
    for row in rows:
        assert "error" not in row, row
        assert row["images_s"] > 0 and row["peak_gib"] > 0.05 and row["before_gib"] > 0
    assert [r["frames"] for r in rows] == [3, 3, 3, 5, 6]
    assert rows[2]["dtype"] in ("fp32", "bf16", "fp16") and rows[2]["settings"].endswith(f"(→ {rows[2]['dtype']})")
