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
