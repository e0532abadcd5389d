"""train.early_stop: a run whose held-out metric stopped improving ends, says why, keeps its best model, and a resumed
run keeps counting where it stopped."""

from __future__ import annotations

import json

import pytest

from translate.config import ConfigError
from translate.engine.evaluation import Evaluation
from translate.engine.trainer import train


def scripted(monkeypatch, values: list[float], metric: str = "l1"):
    """Held-out evaluations that return ``values`` in turn (the training itself is real)."""
    calls = []

    def held_out(self, nets):
        calls.append(1)
        return {metric: values[len(calls) - 1]}

    monkeypatch.setattr(Evaluation, "held_out_metrics", held_out)
    monkeypatch.setattr(Evaluation, "do_nothing_metrics", lambda self: {})


def config(tiny_config, metric="l1", *overrides):
    return tiny_config("pix2pix", "train.eval_every=1", "train.eval_split=test", f"train.eval_metrics=[{metric}]",
                       f"train.best_metric={metric}", "train.max_steps=12", "train.report=false", *overrides)


def steps_logged(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "logs" / "losses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("metric, values, stop, best", [
    # lower is better: 0.50 is the best; two evaluations without beating it stop the run at the 4th
    ("l1", [0.6, 0.5, 0.55, 0.5, 0.4, 0.3], 4, 2),
    # higher is better; improvements of at most min_delta 0.1 do not count, but the model_best still follows them
    ("psnr", [10.0, 10.05, 10.1, 10.2, 10.3, 10.4], 3, 3),
])
def test_a_run_stops_when_its_metric_stops_improving(tiny_config, monkeypatch, capsys, metric, values, stop, best):
    scripted(monkeypatch, values, metric)
    delta = "0.1" if metric == "psnr" else "0.0"
    run_dir = train(config(tiny_config, metric, "train.early_stop=2", f"train.early_stop_min_delta={delta}",
                           "train.log_every=1"))
    assert steps_logged(run_dir)[-1] == stop
    out = capsys.readouterr().out
    assert f"step {stop}: early stop: {metric} did not improve by more than {float(delta):g} for 2 evaluations" in out
    meta = json.loads((run_dir / "model" / "config.json").read_text())
    assert meta["step"] == stop and "is in model_best/" in meta["stopped_early"]
    assert json.loads((run_dir / "model_best" / "config.json").read_text())["step"] == best
    assert f"at step {best}" in meta["stopped_early"]


def test_resume_keeps_the_counters(tiny_config, monkeypatch, tmp_path):
    # Uninterrupted: evaluations 1 (reference), 2, 3 without improvement -> stops at step 3. Stopped after step 2
    # and resumed, the count of 1 must survive the restart (the resumed run would stop at step 5 otherwise).
    values = [0.5] * 12
    scripted(monkeypatch, values)
    full = train(config(tiny_config, "l1", "train.early_stop=2", f"train.output_dir={tmp_path / 'full'}"))
    assert steps_logged(full)[-1] == 3
    part = tmp_path / "part"
    scripted(monkeypatch, values)
    train(config(tiny_config, "l1", "train.early_stop=2", f"train.output_dir={part}", "train.max_steps=2",
                 "train.log_every=1"))
    scripted(monkeypatch, values[2:])
    train(config(tiny_config, "l1", "train.early_stop=2", f"train.output_dir={part}", "train.log_every=1"),
          resume=True)
    assert steps_logged(part)[-1] == 3
    # A run that stopped early and is resumed again stays stopped.
    scripted(monkeypatch, values)
    train(config(tiny_config, "l1", "train.early_stop=2", f"train.output_dir={part}", "train.log_every=1"),
          resume=True)
    assert steps_logged(part)[-1] == 3


def test_early_stop_needs_a_metric(tiny_config):
    with pytest.raises(ConfigError, match="train.early_stop needs train.best_metric"):
        tiny_config("pix2pix", "train.early_stop=3")
    with pytest.raises(ConfigError, match="train.early_stop=-1 must be 0"):
        tiny_config("pix2pix", "train.early_stop=-1")


@pytest.mark.slow
def test_early_stop_on_a_real_metric(tiny_config):
    # lr 1e-12 and instance norm (no running statistics): the generator does not change, nor its held-out L1, so the
    # run stops after early_stop evaluations.
    run_dir = train(config(tiny_config, "l1", "train.early_stop=2", "train.lr=1e-12", "train.log_every=1",
                           "model.norm=instance"))
    assert steps_logged(run_dir)[-1] == 3
