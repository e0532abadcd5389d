"""Two real CPU processes (gloo DDP through torchrun): identical ranks, equal to one process with the same
global batch, only rank 0 writes, checkpoints resume across process counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_engine import generator_outputs

from translate.config import to_yaml
from translate.engine.trainer import train
from translate.networks import create_generator

pytestmark = pytest.mark.slow
WORKER = Path(__file__).parent / "dist_worker.py"


def torchrun(tmp_path, overrides, nproc=2):
    out = tmp_path / f"ranks_{len(list(tmp_path.glob('ranks_*')))}"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(WORKER), str(out), *overrides]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(nproc)]


def as_file(config, tmp_path):
    path = tmp_path / f"{config.name}_{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(to_yaml(config))
    return str(path)


@torch.no_grad()
def step_one_generator(run_dir, name):
    # Checkpoints hold the generators as one module (the trainer's NetworkGroup): keys "G_A.model.1.weight"...
    net = create_generator("resnet_6blocks", ngf=8, norm="instance", init_type=None)
    state = load_file(run_dir / "checkpoints" / "step_000001" / "model.safetensors")
    net.load_state_dict({k.removeprefix(f"{name}."): v for k, v in state.items() if k.startswith(f"{name}.")})
    return net.eval()


def test_two_processes_match_one_process_with_the_same_global_batch(tiny_config, tmp_path):
    common = ["model.pool_size=0", "train.max_steps=4", "train.checkpoint_every=1", "train.keep_checkpoints=4"]
    two_dir = tmp_path / "two"
    config = tiny_config("cyclegan", *common, "data.batch_size=1", f"train.output_dir={two_dir}")
    ranks = torchrun(tmp_path, [as_file(config, tmp_path)])
    assert ranks[0]["num_processes"] == 2
    for key, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][key]), f"ranks differ at {key}"

    one = train(tiny_config("cyclegan", *common, "data.batch_size=2", f"train.output_dir={tmp_path / 'one'}"))
    # After one step, DDP's averaged gradient equals the batch-of-2 gradient: the outputs agree to rounding
    # (outputs, not weights: see test_gradient_accumulation_equals_bigger_batch). Later steps drift apart a little,
    # as Adam turns rounding differences in near-zero gradients into ±lr steps.
    x = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
    for name in ("G_A", "G_B"):
        a, b = (step_one_generator(run, name)(x) for run in (one, two_dir))
        assert (a - b).abs().max() < 1e-4
        assert (generator_outputs(one, name) - generator_outputs(two_dir, name)).abs().max() < 0.1

    # Only rank 0 wrote: one log line per log step, one sample per sample step, complete checkpoints.
    steps = [line.split(",")[0] for line in (two_dir / "logs" / "losses.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)) == 2
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
