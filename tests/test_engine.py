"""The engine: recipes learn, resume is exact, accumulation equals a bigger batch, mixed precision runs."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
from safetensors.torch import load_file

from translate.data import build_dataset
from translate.engine.checkpoint import list_checkpoints
from translate.engine.trainer import Trainer, train
from translate.networks.pretrained import load_pretrained


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "logs" / "losses.jsonl").read_text().splitlines()]


def weights(run_dir, name):
    return load_file(run_dir / "model" / f"{name}.safetensors")


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, f"weights differ by {worst}"


def held_out_l1(model_dir, config):
    config.data.preprocess = "none"
    _, nets = load_pretrained(model_dir)
    dataset = build_dataset(config, "test")
    with torch.no_grad():
        return sum((nets["G"](item["A"][None]) - item["B"][None]).abs().mean().item() for item in dataset) / len(
            dataset)


def test_pix2pix_learns_a_toy_task(tiny_config, tmp_path):
    config = tiny_config("pix2pix", "train.lr=0.001", "train.n_epochs=10", "train.n_epochs_decay=0",
                         "model.no_dropout=true", "model.norm=instance")
    trainer = Trainer(config)
    before = tmp_path / "before"
    trainer.export(before)
    run_dir = trainer.fit()
    l1_before, l1_after = held_out_l1(before, config), held_out_l1(run_dir / "model", config)
    assert l1_after < 0.75 * l1_before, (l1_before, l1_after)
    log = read_log(run_dir)
    assert log[-1]["loss_G_L1"] < 0.75 * log[0]["loss_G_L1"]


def test_cyclegan_cycle_loss_decreases_and_exports_both_directions(tiny_config):
    run_dir = train(tiny_config("cyclegan", "train.lr=0.002", "train.n_epochs=6", "train.n_epochs_decay=0"))
    log = read_log(run_dir)

    def cycle(entries):
        return sum(e["loss_cycle_A"] + e["loss_cycle_B"] for e in entries)

    assert cycle(log[-2:]) < 0.9 * cycle(log[:2])
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["directions"] == {"AtoB": "G_A", "BtoA": "G_B"} and config["recipe"] == "cyclegan"
    assert config["generators"]["G_A"]["netG"] == "resnet_6blocks" and config["step"] == log[-1]["step"]
    assert (run_dir / "config.yaml").is_file() and sorted((run_dir / "samples").glob("*.png"))


@pytest.mark.parametrize("recipe", ["pix2pix", "cyclegan"])
def test_resume_is_exact(tiny_config, tmp_path, recipe):
    # Stop mid-epoch (7 of 8 batches per epoch for pix2pix, 7 of 6 for cyclegan), resume, compare with no stop;
    # the EMA's and the lr's warm-ups both run across the stop.
    ramps = ("train.ema=true", "train.warmup_steps=10")
    full = train(tiny_config(recipe, f"train.output_dir={tmp_path / 'full'}", *ramps))
    part_dir = tmp_path / "part"
    train(tiny_config(recipe, f"train.output_dir={part_dir}", "train.max_steps=7", *ramps))
    assert [p.name for p in list_checkpoints(part_dir)] == ["step_000004", "step_000007"]
    train(tiny_config(recipe, f"train.output_dir={part_dir}", *ramps), resume=True)
    for name in ("G",) if recipe == "pix2pix" else ("G_A", "G_B"):
        assert_same_weights(weights(full, name), weights(part_dir, name))
    full_log = {e["step"]: e for e in read_log(full)}
    part_log = {e["step"]: e for e in read_log(part_dir)}
    for step in (2, 4, 10, 12):  # log windows that the stop did not split
        assert full_log[step] == part_log[step]


def test_resume_from_a_given_checkpoint(tiny_config, tmp_path):
    run_dir = train(tiny_config("pix2pix", "train.max_steps=8"))
    config = tiny_config("pix2pix", f"train.output_dir={tmp_path / 'other'}", "train.max_steps=10")
    other = train(config, resume=run_dir / "checkpoints" / "step_000004")
    assert read_log(other)[0]["step"] == 6


def generator_outputs(run_dir, name="G"):
    _, nets = load_pretrained(run_dir / "model")
    with torch.no_grad():
        return nets[name](torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32))


def test_gradient_accumulation_equals_bigger_batch(tiny_config, tmp_path):
    # Instance norm, no pool, no dropout: two accumulated batches of 1 are one batch of 2. Outputs, not weights,
    # are compared: a conv bias before instance norm has a zero gradient up to rounding, which Adam's
    # normalisation blows up to ±lr, yet it has no effect on the output.
    common = ["model.norm=instance", "model.no_dropout=true", "train.max_steps=3"]
    big = train(tiny_config("pix2pix", *common, "data.batch_size=2", f"train.output_dir={tmp_path / 'big'}"))
    acc = train(tiny_config("pix2pix", *common, "data.batch_size=1", "train.gradient_accumulation_steps=2",
                            f"train.output_dir={tmp_path / 'acc'}"))
    assert (generator_outputs(big) - generator_outputs(acc)).abs().max() < 1e-4
    assert read_log(big)[-1]["step"] == read_log(acc)[-1]["step"] == 3


def test_bf16_autocast_on_cpu_runs_without_nan(tiny_config):
    run_dir = train(tiny_config("cyclegan", "train.mixed_precision=bf16", "train.max_steps=4"))
    assert all(all(v == v and abs(v) < 1e6 for v in entry.values()) for entry in read_log(run_dir))


def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(tmp_path, monkeypatch):
    from translate import devices

    (tmp_path / "intel").write_text("processor : 0\nflags : fpu avx512f avx512_vnni\n")
    (tmp_path / "epyc").write_text("processor : 0\nflags : fpu avx512f avx512_bf16\n")
    (tmp_path / "arm").write_text("processor : 0\nFeatures : fp asimd sve bf16\n")
    assert devices.cpu_has_bf16(tmp_path / "intel") is False
    assert devices.cpu_has_bf16(tmp_path / "epyc") is devices.cpu_has_bf16(tmp_path / "arm") is True
    assert devices.cpu_has_bf16(tmp_path / "missing") is None
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no bf16 instructions"):
        devices.warn_if_slow_bf16("cpu", "bf16", "train.mixed_precision")
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        devices.warn_if_slow_bf16("cpu", torch.bfloat16, "Translator")
        devices.warn_if_slow_bf16("cpu", "no", "train.mixed_precision")


def test_non_finite_steps_are_skipped_then_training_stops(tiny_config):
    from translate.engine.trainer import TrainingDiverged

    config = tiny_config("pix2pix", "train.max_nonfinite_steps=3", "train.checkpoint_every=2")
    trainer = Trainer(config)
    real_loss = trainer.recipe.generator_loss
    calls = {"n": 0}

    def poisoned(nets, batch, ctx):  # healthy for 2 steps, then NaN for ever
        calls["n"] += 1
        terms = real_loss(nets, batch, ctx)
        if calls["n"] > 2:
            terms["loss_G_L1"] = terms["loss_G_L1"] * float("nan")
        return terms

    trainer.recipe.generator_loss = poisoned
    good = {k: v.clone() for k, v in trainer.nets["G"].state_dict().items()}
    # Skips are read at log steps (every 2) and every max_nonfinite_steps (3): steps 3, 4, 6 -> stop at 6.
    with pytest.raises(TrainingDiverged, match=r"4 consecutive steps .*max_nonfinite_steps=3"):
        trainer.fit()
    assert trainer.state.skipped_steps == 4 and trainer.state.step == 6
    assert [p.name for p in list_checkpoints(config.train.output_dir)] == ["step_000002", "step_000004"]
    after = trainer.nets["G"].state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(good[k], after[k]) for k in good)  # the two good steps did train


def test_existing_run_is_not_overwritten(tiny_config):
    from translate.config import ConfigError

    train(tiny_config("pix2pix", "train.max_steps=4"))
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config("pix2pix", "train.max_steps=4"))


def test_init_from_exported_model(tiny_config, tmp_path):
    first = train(tiny_config("pix2pix", "train.max_steps=4"))
    config = tiny_config("pix2pix", f"train.init_from={first / 'model'}", f"train.output_dir={tmp_path / 'ft'}",
                         "train.max_steps=2")
    trainer = Trainer(config)
    assert_same_weights(weights(first, "G"), {k: v for k, v in trainer.nets["G"].state_dict().items()})
    assert trainer.state.step == 0
    bad = tiny_config("pix2pix", f"train.init_from={first / 'model'}", f"train.output_dir={tmp_path / 'bad'}",
                      "model.ngf=4")
    from translate.config import ConfigError

    with pytest.raises(ConfigError, match="does not match"):
        Trainer(bad)
    # Same keys, other meaning: a plain generator's weights are not a residual one's start.
    residual = tiny_config("pix2pix", f"train.init_from={first / 'model'}", f"train.output_dir={tmp_path / 'res'}",
                           "model.residual=true")
    with pytest.raises(ConfigError, match="is not a residual generator; set model.residual=false to start from it"):
        Trainer(residual)


def test_fp16_without_a_gpu_is_a_clear_error(tiny_config):
    from translate.config import ConfigError

    if torch.cuda.is_available():
        pytest.skip("a GPU runs fp16")
    with pytest.raises(ConfigError, match="use bf16"):
        Trainer(tiny_config("pix2pix", "train.mixed_precision=fp16"))


def test_channels_last_gives_the_same_training(tiny_config, tmp_path):
    # (compile: test_engine_numerics.py::test_compiled_training_matches_eager_after_two_steps)
    common = ["model.norm=instance", "model.no_dropout=true", "train.max_steps=1", "train.log_every=1"]
    eager = train(tiny_config("pix2pix", *common, f"train.output_dir={tmp_path / 'eager'}"))
    fast = train(tiny_config("pix2pix", *common, "train.channels_last=true", f"train.output_dir={tmp_path / 'fast'}"))
    # The first step sees the same weights: equal losses up to rounding. Weights are not compared afterwards: Adam's
    # first step is ±lr per weight, so rounding-level gradient differences flip some of them (measured: outputs of
    # this tiny instance-norm net then differ by ~0.4 after one step, with gradients equal to 1e-6 relative).
    first_eager, first_fast = read_log(eager)[0], read_log(fast)[0]
    for key in first_eager:
        assert first_eager[key] == pytest.approx(first_fast[key], rel=1e-4, abs=1e-6), key


def test_progress_to_a_file_is_plain_lines_not_carriage_returns(tiny_config, capsys):
    # Under pytest stderr is not a terminal: one line per log window instead of a bar's \r updates.
    train(tiny_config("pix2pix", "train.progress=true", "train.max_steps=4"))
    captured = capsys.readouterr()
    lines = [ln for ln in captured.out.splitlines() if ln.startswith("run step ")]
    assert [ln.split()[2] for ln in lines] == ["2/4", "4/4"] and "loss_G_L1"[5:] in lines[0]
    assert "\r" not in captured.err


def test_resume_without_a_checkpoint_says_it_starts_from_scratch(tiny_config, capsys):
    trainer = Trainer(tiny_config("pix2pix", "train.max_steps=1"), resume=True)
    assert trainer.state.step == 0 and "no checkpoint in" in capsys.readouterr().out


def test_a_runs_files_get_the_umasks_modes(tiny_config):
    # Checkpoints, config.yaml (once written through mkstemp: 0600), logs and the model: readable by the group and
    # others under the usual umask 022, as plain writes would be.
    import os
    import stat

    old = os.umask(0o022)
    try:
        run_dir = train(tiny_config("pix2pix", "train.max_steps=2", "train.report=false"))
    finally:
        os.umask(old)
    modes = {p.relative_to(run_dir).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in run_dir.rglob("*") if p.is_file() and "logs/events" not in p.as_posix()}
    assert any(k.startswith("checkpoints/") for k in modes)
    assert "config.yaml" in modes and "model/G.safetensors" in modes
    assert {k: m for k, m in modes.items() if m != 0o644} == {}


def test_a_single_process_keeps_the_users_omp_num_threads(tiny_config, tmp_path, monkeypatch):
    # Without OMP_NUM_THREADS the trainer takes every core (launchers set it to 1 per process); with it, the user's.
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    Trainer(tiny_config("pix2pix"))
    assert seen == [os.cpu_count() or 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    Trainer(tiny_config("pix2pix", f"train.output_dir={tmp_path / 'other'}"))
    assert seen == [os.cpu_count() or 1]
