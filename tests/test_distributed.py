"""Two real CPU processes (gloo DDP through torchrun): identical ranks, equal to one process with the same
global batch, only rank 0 writes, checkpoints resume across process counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from translate.config import to_yaml
from translate.engine.checkpoint import list_checkpoints
from translate.engine.trainer import train

pytestmark = pytest.mark.slow
WORKER = Path(__file__).parent / "dist_worker.py"


def torchrun_command(out: Path, overrides, nproc=2) -> tuple[list[str], dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            str(WORKER), str(out), *overrides], env


def torchrun(tmp_path, overrides, nproc=2):
    out = tmp_path / f"ranks_{len(list(tmp_path.glob('ranks_*')))}"
    out.mkdir()
    cmd, env = torchrun_command(out, overrides, nproc)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(nproc)]


def as_file(config, tmp_path):
    path = tmp_path / f"{config.name}_{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(to_yaml(config))
    return str(path)


def test_two_processes_match_one_process_with_the_same_global_batch(tiny_config, tmp_path):
    common = ["model.cyclegan.pool_size=0", "train.max_steps=4", "train.checkpoint_every=1", "train.keep_checkpoints=4",
              "train.log_every=1"]
    two_dir = tmp_path / "two"
    config = tiny_config("cyclegan", *common, "data.batch_size=1", f"train.output_dir={two_dir}")
    ranks = torchrun(tmp_path, [as_file(config, tmp_path)])
    assert ranks[0]["num_processes"] == 2
    for key, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][key]), f"ranks differ at {key}"

    one = train(tiny_config("cyclegan", *common, "data.batch_size=2", f"train.output_dir={tmp_path / 'one'}"))
    # Same global batch, same first step: the losses of step 1 (same weights, the two ranks' halves of the batch
    # averaged) equal the one-process batch-of-2 losses. Weights are not compared: Adam's first step is ±lr per
    # weight, so rounding-level gradient differences flip some (see test_speed_options_give_the_same_training).
    first_one, first_two = (json.loads((run / "logs" / "losses.jsonl").read_text().splitlines()[0]) for run in
                            (one, two_dir))
    assert first_one["step"] == first_two["step"] == 1
    for key in first_one:
        assert first_one[key] == pytest.approx(first_two[key], rel=1e-4, abs=1e-6), key

    # Only rank 0 wrote: one log line per log step, one sample per sample step, complete checkpoints.
    steps = [line.split(",")[0] for line in (two_dir / "logs" / "losses.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)) == 4
    assert sorted(p.name for p in (two_dir / "checkpoints").iterdir()) == [f"step_00000{i}" for i in range(1, 5)]
    assert {p.name for p in (two_dir / "checkpoints" / "step_000004").glob("random_states_*")} == {
        "random_states_0.pkl", "random_states_1.pkl"}

    # A checkpoint written by 2 processes resumes in 1.
    resumed = tmp_path / "resumed"
    train(tiny_config("cyclegan", *common, "data.batch_size=2", "train.max_steps=6", f"train.output_dir={resumed}"),
          resume=two_dir / "checkpoints" / "step_000004")
    assert (resumed / "model" / "G_A.safetensors").is_file()

    # And a checkpoint written by 1 process resumes in 2: both ranks continue from the same state.
    config = tiny_config("cyclegan", *common, "data.batch_size=1", "train.max_steps=6",
                         f"train.output_dir={tmp_path / 'widened'}")
    ranks = torchrun(tmp_path, [as_file(config, tmp_path), f"--resume-from={one / 'checkpoints' / 'step_000004'}"])
    for key, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][key]), f"ranks differ at {key}"
    assert json.loads((tmp_path / "widened" / "model" / "config.json").read_text())["step"] == 6


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_with_one_checkpoint(tiny_config, tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "ranks"
    out.mkdir()
    config = tiny_config("cyclegan", "model.cyclegan.pool_size=0", "train.n_epochs=100000", "train.max_steps=100000",
                         "train.checkpoint_every=100000", "train.log_every=1", f"train.output_dir={run_dir}")
    cmd, env = torchrun_command(out, [as_file(config, tmp_path)])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ((out / "pid1").is_file() and (run_dir / "logs" / "losses.jsonl").is_file()):
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        os.kill(int((out / "pid1").read_text()), signal.SIGTERM)  # rank 1 only, as a preempted node would see
        output = proc.communicate(timeout=300)[0]
    finally:
        proc.kill()
    stops = [json.loads((out / f"stopped{rank}.json").read_text())["step"] for rank in (0, 1)]
    assert stops[0] == stops[1] >= 1, output[-3000:]
    assert [p.name for p in list_checkpoints(run_dir)] == [f"step_{stops[0]:06d}"]


def test_each_process_resumes_with_its_own_image_pools(tiny_config, tmp_path):
    # Accelerate saves registered state from rank 0 only; the pools are per process (each saw its own fakes).
    run_dir = tmp_path / "pools"
    config = as_file(tiny_config("cyclegan", "model.cyclegan.pool_size=4", "train.max_steps=3",
                                 f"train.output_dir={run_dir}"), tmp_path)
    before = torchrun(tmp_path, [config])
    checkpoint = list_checkpoints(run_dir)[-1]
    after = torchrun(tmp_path, [config, f"--resume-from={checkpoint}"])

    def pools(rank):
        state = rank["recipe_state"]
        return [image for pool in ("fake_A_pool", "fake_B_pool") for image in state[pool]["images"]]

    assert len(pools(before[0])) == 2 * 3  # 3 steps of batch 1: the pools are not full yet
    assert not all(torch.equal(a, b) for a, b in zip(pools(before[0]), pools(before[1])))  # ranks differ
    for r in range(2):
        assert all(torch.equal(a, b) for a, b in zip(pools(before[r]), pools(after[r]), strict=True))
