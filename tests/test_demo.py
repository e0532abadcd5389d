"""The README's main command keeps working: tools/demo.py --quick end to end (built-in data, train, convert), also
when it is stopped part-way and run again."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def demo(tmp_path: Path, log: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRANSLATE_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / f"{log}.out", "w") as out, open(tmp_path / f"{log}.err", "w") as err:
        return subprocess.Popen([sys.executable, str(ROOT / "tools" / "demo.py"), "--quick", "--out", str(tmp_path)],
                                stdout=out, stderr=err, env=env)


def finished(tmp_path: Path, log: str) -> str:
    process = demo(tmp_path, log)
    assert process.wait(timeout=900) == 0, (tmp_path / f"{log}.err").read_text()[-3000:]
    return (tmp_path / f"{log}.out").read_text()


@pytest.mark.slow
def test_demo_quick_stopped_and_run_again(tmp_path):
    # Ctrl-C during the first training: the step finishes, a checkpoint is saved, one line says how to go on.
    first = demo(tmp_path, "first")
    deadline = time.monotonic() + 600
    while "demo_pix2pix step 10/" not in (tmp_path / "first.out").read_text():
        assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.err").read_text()[-3000:]
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=300) == 75
    err = (tmp_path / "first.err").read_text()
    assert "Traceback" not in err and "The demo was stopped (training stopped at step" in err, err[-3000:]
    assert "Run the same command again to continue" in err
    assert list((tmp_path / "pix2pix" / "checkpoints").glob("step_*"))

    out = finished(tmp_path, "second")
    # It says how long it takes before it starts (docs/benchmarks.md has the measured times).
    assert out.startswith("The demo trains a small Pix2Pix and a small CycleGAN") and "a minute or two" in \
        out.splitlines()[0]
    assert re.search(r"Pix2Pix: continuing the earlier demo run from \S+step_\d+ \(step \d+\)", out), out
    assert "untrained" in out and out.count("against doing nothing") == 2
    assert out.count("do nothing") == 2  # one baseline row per model
    for recipe, n in (("pix2pix", 21), ("cyclegan", 14)):
        converted = list((tmp_path / recipe / "converted").glob("*.png"))
        assert len(converted) == n, recipe
        assert (tmp_path / recipe / "report" / "index.html").is_file()
    minutes = [float(m) for m in re.findall(r"trained \((\d+\.\d) min\)", out)]

    # Run once more: nothing is trained or converted again, and the summary says what earlier runs did.
    again = finished(tmp_path, "third")
    assert "Pix2Pix: continuing" in again and "CycleGAN: continuing" in again
    assert "(21 images from" in again and "21 of them by an earlier run" in again
    # The training time over both runs, kept (resuming a finished run adds the moment it takes to save again).
    assert [float(m) for m in re.findall(r"trained \((\d+\.\d) min\)", again)] == pytest.approx(minutes, abs=0.11)
    assert len(minutes) == 2 and minutes[0] > 0
