"""Folder conversion on two real CPU processes (torchrun, gloo): the same files as one process, one merged summary,
a killed rank resumed without redoing work, and ranks that list different files stopped with one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from translate.inference.convert import SUMMARY_NAME, convert_folder
from translate.networks import create_generator
from translate.networks.pretrained import generator_spec, save_pretrained

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# Runs ``translate`` with "{rank}" in the arguments replaced by the process's rank; the process named by KILL_RANK
# kills itself (SIGKILL: no clean-up, as a lost node) right after writing its first output.
WORKER = """
import os, signal, sys
import translate.inference.convert as convert
from translate.cli import main

rank = os.environ["RANK"]
if rank == os.environ.get("KILL_RANK"):
    write = convert._write
    def write_then_die(*args):
        write(*args)
        os.kill(os.getpid(), signal.SIGKILL)
    convert._write = write_then_die
sys.exit(main([arg.replace("{rank}", rank) for arg in sys.argv[1:]]))
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = create_generator("resnet_6blocks", ngf=8, norm="instance")
    meta = {"recipe": "cyclegan", "directions": {"AtoB": "G"},
            "generators": {"G": generator_spec("resnet_6blocks", 8, "instance", False, 3, 3)}}
    return save_pretrained(tmp_path_factory.mktemp("model") / "model", {"G": net}, meta)


def make_folder(root: Path, n: int) -> Path:
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / ("sub" if i % 3 else "") /
                                                                                f"img_{i}.png")
    return root


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and p.name != SUMMARY_NAME}


def torchrun(*args, kill_rank: int | None = None, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2`` of ``-m translate.cli ARGS`` (or, with ``kill_rank``, of WORKER)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    target = ["-m", "translate.cli"]
    if kill_rank is not None:
        (cwd / "worker.py").write_text(WORKER)
        env["KILL_RANK"], target = str(kill_rank), [str(cwd / "worker.py")]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *target, "convert", *map(str, args), "--device", "cpu", "--workers", "1",
                           "--dtype", "fp32"],  # auto is bf16 on some CPUs, and only the tests' own process is mocked
                          env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_two_processes_write_the_same_files_as_one_and_one_summary(model_dir, tmp_path):
    src = make_folder(tmp_path / "in", 6)
    (src / "broken.png").write_text("not an image")
    one = convert_folder(model_dir, src, tmp_path / "one", device="cpu", progress=False)
    result = torchrun(model_dir, src, tmp_path / "two", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]  # the broken file
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one") and len(outputs(tmp_path / "one")) == 6
    assert [p.name for p in (tmp_path / "two").glob("convert_summary*")] == [SUMMARY_NAME]
    two = json.loads((tmp_path / "two" / SUMMARY_NAME).read_text())
    for key in ("found", "converted", "skipped", "failed", "failures", "images_sha256"):
        assert two[key] == one[key], key
    # 7 files in sorted order, every 2nd to each rank: 4 to rank 0 (with broken.png, first), 3 to rank 1.
    assert [(p["rank"], p["assigned"], p["converted"]) for p in two["processes"]] == [(0, 4, 3), (1, 3, 3)]
    assert result.stdout.count("converted 6, skipped 0") == 1  # rank 0 prints the summary
    assert "rank 0 of 2, 7 in all" in result.stderr and "rank 1 of 2" not in result.stderr  # one progress bar


def test_a_killed_rank_is_resumed_without_redoing_work(model_dir, tmp_path):
    n = 10
    src, out = make_folder(tmp_path / "in", n), tmp_path / "out"
    killed = torchrun(model_dir, src, out, "--quiet", kill_rank=1, cwd=tmp_path)
    assert killed.returncode != 0
    done = {name: (out / name).stat().st_mtime_ns for name in outputs(out)}
    assert 1 <= len(done) <= n // 2 + 1, done  # rank 1 wrote one of its five; rank 0 at most its five
    assert not (out / SUMMARY_NAME).exists()

    resumed = torchrun(model_dir, src, out, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert (summary["converted"], summary["skipped"]) == (n - len(done), len(done))
    assert {name: (out / name).stat().st_mtime_ns for name in done} == done  # untouched
    convert_folder(model_dir, src, tmp_path / "one", device="cpu", progress=False)
    assert outputs(out) == outputs(tmp_path / "one")
    assert not [p for p in out.rglob(".*")]  # the killed rank's temp files are gone


def test_ranks_that_list_different_files_stop_with_one_error_line(model_dir, tmp_path):
    make_folder(tmp_path / "in0", 3)
    make_folder(tmp_path / "in1", 4)  # as if a file appeared while the processes started
    result = torchrun(model_dir, tmp_path / "in{rank}", tmp_path / "out", kill_rank=-1, cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "listed different files" in errors[0] and "rank 0 3" in errors[0], result.stderr
    assert not list((tmp_path / "out").rglob("*.png"))
