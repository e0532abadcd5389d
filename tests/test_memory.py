"""Memory: activation checkpointing is exact, train.max_memory plans from probe steps that leave no trace, a run
that runs out of memory stops with one line (and a checkpoint where it can)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from translate.config import ConfigError, load_config
from translate.engine import memory
from translate.engine.checkpoint import list_checkpoints
from translate.engine.memory import GiB, Setting, candidates, parse_memory, plan
from translate.engine.trainer import OutOfMemoryStop, Trainer, train
from translate.networks import DISCRIMINATORS, GENERATORS, create_discriminator, create_generator
from translate.networks.checkpointing import enable_checkpointing, is_checkpointed
from translate.networks.layers import add_minibatch_stddev, apply_spectral_norm

# pix2pix's U-Net at its minimum size, with batch norm (running statistics) and dropout (random masks).
PIX2PIX_DROPOUT = ("model.netG=unet_128", "data.load_size=128", "data.crop_size=128", "model.no_dropout=false")
CASES = {"pix2pix": PIX2PIX_DROPOUT, "cyclegan": ("model.no_dropout=false",), "cut": ()}


def all_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every network's weights and buffers (D, CUT's F and batch-norm statistics included)."""
    return {f"{n}.{k}": v for n, net in trainer.nets.items() for k, v in net.state_dict().items()}


def assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def fitted(config) -> Trainer:
    trainer = Trainer(config)
    trainer.fit()
    return trainer


# -- checkpointing ---------------------------------------------------------------------------------------------
def image_nets():
    for name, entry in GENERATORS.items():
        if entry.kind == "noise":
            yield name, create_generator(name, nz=16, ngf=8, image_size=32), torch.randn(2, 16)
        else:
            options = {"ngf": 8, "n_blocks": 2} if entry.scale > 1 else {"ngf": 8, "use_dropout": True}
            size = max(entry.min_size, 16)
            yield name, create_generator(name, **options), torch.randn(2, 3, size, size)
    for name in DISCRIMINATORS:
        yield f"D {name}", create_discriminator(name, ndf=8, norm="batch"), torch.randn(2, 3, 64, 64)
    d = add_minibatch_stddev(apply_spectral_norm(create_discriminator("basic", ndf=8, norm="batch")))
    yield "D basic, spectral norm, minibatch stddev", d, torch.randn(4, 3, 64, 64)


@pytest.mark.parametrize("name, net, x", list(image_nets()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_registered_network_checkpoints_bitwise(name, net, x):
    # Dropout masks, batch-norm statistics and spectral norm's power iteration all run again in the backward pass:
    # outputs, gradients (of the weights and of the input) and buffers must equal the plain network's bit for bit.
    plain, ckpt = net.train(), copy.deepcopy(net).train()
    assert enable_checkpointing(ckpt) > 0 and is_checkpointed(ckpt)
    assert ckpt.state_dict().keys() == plain.state_dict().keys()
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(1)
        inp = x.clone().requires_grad_(x.is_floating_point() and x.dim() == 4)
        out = model(inp)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out, [p.grad for p in model.parameters()], inp.grad, list(model.buffers())))
    (out_a, grads_a, in_a, bufs_a), (out_b, grads_b, in_b, bufs_b) = results
    assert torch.equal(out_a, out_b)
    assert all(torch.equal(g, h) for g, h in zip(grads_a, grads_b))
    assert in_a is None or torch.equal(in_a, in_b)
    assert all(torch.equal(u, v) for u, v in zip(bufs_a, bufs_b))


def test_checkpointed_layers_run_again_in_the_backward_pass():
    # Not a no-op: a checkpointed ResNet block's convolution runs twice per training step, once without gradients.
    g = create_generator("resnet_6blocks", ngf=8, norm="instance")
    enable_checkpointing(g)
    calls = []
    g.model[10].conv_block[1].register_forward_hook(lambda *_: calls.append(1))
    g(torch.randn(1, 3, 16, 16)).mean().backward()
    assert len(calls) == 2
    with torch.no_grad():
        g(torch.randn(1, 3, 16, 16))
    assert len(calls) == 3


@pytest.mark.parametrize("recipe", CASES)
def test_training_with_checkpointing_equals_training_without(tiny_config, tmp_path, recipe):
    # fp32, 3 steps: every network's weights and buffers bitwise equal (CUT: its PatchNCE features come from G's
    # layers one by one, through checkpointed blocks).
    runs = [fitted(tiny_config(recipe, *CASES[recipe], "train.max_steps=3", "train.report=false",
                               f"train.output_dir={tmp_path / str(on)}", f"train.gradient_checkpointing={on}"))
            for on in ("false", "true")]
    assert not is_checkpointed(runs[0].nets["G" if recipe != "cyclegan" else "G_A"])
    assert all(is_checkpointed(net) for net in runs[1].nets.values())  # CUT's F too (its MLPs)
    assert_bitwise(all_state(runs[0]), all_state(runs[1]))


# -- the budget ------------------------------------------------------------------------------------------------
def test_max_memory_values():
    assert parse_memory("6GiB") == (6 * GiB, None) and parse_memory("512MB") == (512 * 10**6, None)
    assert parse_memory("0.5") == (None, 0.5) and parse_memory("1.5g") == (int(1.5 * GiB), None)
    for bad in ("lots", "6", "0", "-1GiB", "6 parsecs"):
        with pytest.raises(ValueError, match="train.max_memory"):
            parse_memory(bad)
    with pytest.raises(ConfigError, match="train.max_memory='lots'"):
        load_config(None, ["data.root=x", "train.max_memory=lots"])


def test_candidates_go_from_cheapest_to_most_frugal():
    configured = Setting(False, 4, 1, "no")
    assert candidates(configured, 4, bf16_native=True) == [
        configured, Setting(True, 4, 1, "no"), Setting(True, 2, 2, "no"), Setting(True, 1, 4, "no"),
        Setting(True, 1, 4, "bf16")]
    # Batch 1 cannot be split; no bf16 unit: no bf16 candidate; checkpointing already on: not tried twice.
    assert candidates(Setting(True, 1, 2, "no"), 1, bf16_native=False) == [Setting(True, 1, 2, "no")]
    peaks = {configured: 9, Setting(True, 4, 1, "no"): 5, Setting(True, 2, 2, "no"): 3}
    chosen, measured = plan(candidates(configured, 4, False), lambda s: (peaks.get(s, 1), True), 4)
    assert chosen == Setting(True, 2, 2, "no") and len(measured) == 3


@pytest.mark.parametrize("recipe", ["pix2pix", "cyclegan"])
def test_a_generous_budget_leaves_the_training_unchanged(tiny_config, tmp_path, recipe, capsys):
    # The probe step runs every phase and optimizer step for real (CycleGAN: its image pools too, of one image here so
    # that the pool is full and swaps at random from the first step); all of it must be undone, so the run equals
    # one without a budget bit for bit.
    pool = ("model.cyclegan.pool_size=1",) if recipe == "cyclegan" else ()
    common = (*CASES[recipe], *pool, "train.max_steps=3", "train.report=false")
    plain = fitted(tiny_config(recipe, *common, f"train.output_dir={tmp_path / 'plain'}"))
    budget = fitted(tiny_config(recipe, *common, "train.max_memory=64GiB", f"train.output_dir={tmp_path / 'b'}"))
    assert_bitwise(all_state(plain), all_state(budget))
    assert not is_checkpointed(budget.nets["G" if recipe == "pix2pix" else "G_A"])
    assert "train.max_memory=64GiB (64.00 GiB): training with no checkpointing, fp32; expected peak" in \
        capsys.readouterr().out
    record = json.loads((tmp_path / "b" / "logs" / "memory.json").read_text())
    assert record["step"] == 3 and record["budget_gib"] == 64 and 0.05 < record["expected_peak_gib"] < 64
    assert 0.05 < record["peak_gib"] and record["measure"] == "peak RSS (VmHWM)"


def fake_probe(peaks: dict):
    """A memory.probe that returns made-up peaks (GiB) by (checkpointing, micro_batch): the plan alone."""
    def probe(trainer, setting, batch, budget):
        return int(peaks[(setting.checkpointing, setting.micro_batch)] * GiB), True
    return probe


def test_the_budget_chooses_checkpointing_then_micro_batches(tiny_config, monkeypatch, capsys):
    monkeypatch.setattr(memory, "probe", fake_probe({(False, 4): 9, (True, 4): 5, (True, 2): 3.5, (True, 1): 2}))
    trainer = Trainer(tiny_config("pix2pix", "data.batch_size=4", "train.max_memory=4GiB"))
    # Built again with micro-batches of 2, two accumulated: the same effective batch of 4.
    t, d = trainer.config.train, trainer.config.data
    assert (t.gradient_checkpointing, d.batch_size, t.gradient_accumulation_steps) == (True, 2, 2)
    assert trainer.accelerator.gradient_accumulation_steps == 2 and next(iter(trainer.loader))["A"].shape[0] == 2
    assert is_checkpointed(trainer.nets["G"])
    out = capsys.readouterr().out
    assert "training with gradient checkpointing, micro-batches of 2 × 2 accumulated" in out and "peak 3.50 GiB" in out
    monkeypatch.setattr(memory, "probe", fake_probe({(False, 1): 9, (True, 1): 3}))
    trainer = Trainer(tiny_config("pix2pix", "train.max_memory=4GiB"))
    assert trainer.config.train.gradient_checkpointing and is_checkpointed(trainer.nets["G"])


def test_nothing_fits_is_one_line_naming_what_would(tiny_config, monkeypatch):
    monkeypatch.setattr(memory, "probe", fake_probe({(False, 1): 9, (True, 1): 2.34}))
    with pytest.raises(ConfigError) as e:
        Trainer(tiny_config("pix2pix", "train.max_memory=2GiB"))
    assert "\n" not in str(e.value)
    assert "nothing fits: the smallest peak measured was 2.34 GiB, with gradient checkpointing" in str(e.value)
    assert "train.max_memory=2.4GiB would fit" in str(e.value) and "data.crop_size" in str(e.value)


def test_a_probe_over_the_budget_is_stopped_and_said(tiny_config):
    # A real probe against 1 MiB: the meter interrupts each step at once (the process alone holds far more).
    with pytest.raises(ConfigError, match=r"nothing fits: every setting went over it .* it needs more than") as e:
        Trainer(tiny_config("pix2pix", "train.max_memory=1MiB"))
    assert "\n" not in str(e.value)


# -- out of memory ---------------------------------------------------------------------------------------------
def failing_step(monkeypatch, at: int, error: Exception, after_a_step: bool = False):
    """Make the ``at``-th call of Trainer.train_step fail with ``error`` (after an optimizer step if asked)."""
    real, calls = Trainer.train_step, []

    def step(self, batch):
        calls.append(1)
        if len(calls) == at:
            if after_a_step:
                self._stepped = True
            raise error
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", step)


@pytest.mark.parametrize("error", [
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes. Error code 12"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError()])
def test_out_of_memory_stops_with_one_line_and_a_checkpoint(tiny_config, monkeypatch, error):
    failing_step(monkeypatch, 3, error)
    config = tiny_config("pix2pix", "train.max_steps=6", "train.report=false")
    with pytest.raises(OutOfMemoryStop) as e:
        train(config)
    message = str(e.value)
    assert "\n" not in message and message.startswith("out of CPU memory at step 3 (32×32 px, batch 1)")
    for setting in ("data.crop_size", "train.gradient_checkpointing=true", "train.max_memory"):
        assert setting in message
    assert "checkpoint of step 2 saved to" in message and "--resume" in message
    assert [p.name for p in list_checkpoints(config.train.output_dir)] == ["step_000002"]
    monkeypatch.undo()
    train(config, resume=True)  # continues from the last finished step


def test_out_of_memory_after_an_optimizer_step_saves_nothing_half_done(tiny_config, monkeypatch):
    # G had already stepped on the failing batch: its weights are past the last finished step, so no checkpoint.
    failing_step(monkeypatch, 3, RuntimeError("CUDA out of memory."), after_a_step=True)
    config = tiny_config("pix2pix", "train.max_steps=6", "train.report=false", "train.checkpoint_every=1")
    with pytest.raises(OutOfMemoryStop, match="the last checkpoint is .*step_000002$"):
        train(config)


def test_other_errors_are_not_taken_for_out_of_memory(tiny_config, monkeypatch):
    failing_step(monkeypatch, 2, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        train(tiny_config("pix2pix", "train.max_steps=4", "train.report=false"))


def test_the_cli_exits_1_with_the_line(tiny_config, monkeypatch, capsys):
    import argparse

    from translate.cli import train as cli_train

    def stop(*args, **kwargs):
        raise OutOfMemoryStop("out of CPU memory at step 3 (...): try train.gradient_checkpointing=true")

    monkeypatch.setattr("translate.engine.trainer.train", stop)
    monkeypatch.setattr("translate.config.load_config", lambda *a: tiny_config("pix2pix"))
    args = argparse.Namespace(config="x.yaml", overrides=[], resume=False, resume_from=None, print_config=False)
    assert cli_train.run(args) == 1
    err = capsys.readouterr().err
    assert err == "error: out of CPU memory at step 3 (...): try train.gradient_checkpointing=true\n"
