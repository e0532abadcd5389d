"""The README's main command keeps working: tools/demo.py --quick end to end (built-in data, train, convert)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_demo_quick(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRANSLATE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "untrained" in result.stdout and result.stdout.count("against doing nothing") == 2
    assert result.stdout.count("do nothing") == 2  # one baseline row per model
    for recipe, n in (("pix2pix", 21), ("cyclegan", 14)):
        converted = list((tmp_path / recipe / "converted").glob("*.png"))
        assert len(converted) == n, recipe
        assert (tmp_path / recipe / "report" / "index.html").is_file()
