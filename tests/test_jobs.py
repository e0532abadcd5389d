"""The training loop's side jobs, each alone against a stand-in trainer: when it runs, what it writes, what it
decides (values worked out by hand). Whole runs through them are in test_engine.py, test_early_stop.py,
test_memory.py and test_collapse_watch.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from translate.config import load_config
from translate.engine.checkpoint import Checkpoints
from translate.engine.evaluation import QUALITY_EVALS, STUCK_STEPS, Evaluation
from translate.engine.memory import MemoryLog
from translate.engine.nonfinite import NonFiniteWatch, TrainingDiverged
from translate.engine.progress import COLLAPSE_WINDOWS, Progress
from translate.engine.samples import Samples
from translate.engine.trainer import TrainState


class Accelerator:
    """What the jobs use of Accelerate's, on one process: printing, logging to trackers, reducing."""

    device = torch.device("cpu")
    is_main_process = True
    num_processes = 1

    def __init__(self):
        self.printed, self.logged, self.ended = [], [], False

    def print(self, *args):
        self.printed.append(" ".join(map(str, args)))

    def log(self, values, step):
        self.logged.append((step, values))

    def reduce(self, tensor, reduction):
        return tensor

    def wait_for_everyone(self):
        pass

    def end_training(self):
        self.ended = True


def stand_in(tmp_path, *overrides):
    (tmp_path / "logs").mkdir(exist_ok=True)
    config = load_config(None, ["data.root=x", "train.progress=false", *overrides])
    trainer = SimpleNamespace(config=config, state=TrainState(), accelerator=Accelerator(), run_dir=tmp_path,
                              log_path=tmp_path / "logs" / "losses.jsonl", scalers={}, memory={},
                              optimizers={"G": SimpleNamespace(param_groups=[{"lr": 0.5}])})
    return trainer


def steps(trainer, job, n):
    for _ in range(n):
        trainer.state.step += 1
        job.on_step({}, {})


def test_the_loss_log_writes_the_mean_of_each_window(tmp_path):
    trainer = stand_in(tmp_path, "train.log_every=2")
    progress = Progress(trainer, max_steps=5)
    for values in ([1.0, 3.0], [2.0, 5.0], [10.0, 0.0], [4.0, 4.0], [7.0, 1.0]):
        progress.add({"loss_G": torch.tensor(values[0]), "loss_D": torch.tensor(values[1])})
        steps(trainer, progress, 1)
    rows = [json.loads(line) for line in trainer.log_path.read_text().splitlines()]
    # Windows: steps 1-2, 3-4, and the last step alone (max_steps).
    assert [(r["step"], r["loss_G"], r["loss_D"]) for r in rows] == [(2, 1.5, 4.0), (4, 7.0, 2.0), (5, 7.0, 1.0)]
    assert all(r["lr"] == 0.5 for r in rows)
    progress.on_end(None, None)  # nothing left over: no line
    assert len(trainer.log_path.read_text().splitlines()) == 3


def test_the_loss_log_keeps_the_partial_window_of_an_early_stop(tmp_path):
    trainer = stand_in(tmp_path, "train.log_every=4")
    progress = Progress(trainer, max_steps=10)
    for value in (1.0, 2.0, 6.0):
        progress.add({"loss_G": torch.tensor(value)})
        steps(trainer, progress, 1)
    assert not trainer.log_path.exists()
    progress.on_end(None, None)
    assert json.loads(trainer.log_path.read_text())["loss_G"] == 3.0


def test_a_collapsed_discriminator_is_warned_about(tmp_path):
    trainer = stand_in(tmp_path)
    progress = Progress(trainer, max_steps=10)
    for _ in range(COLLAPSE_WINDOWS - 1):
        progress.watch_collapse({"loss_D_real": 0.001, "loss_D_fake": 0.002, "loss_G_GAN": 9.0})
    assert not trainer.accelerator.printed
    progress.watch_collapse({"loss_D_real": 0.001, "loss_D_fake": 0.002, "loss_D_gp": 5.0})  # penalties don't count
    assert "discriminator's loss has stayed below" in trainer.accelerator.printed[0]
    progress.watch_collapse({"loss_D_real": 0.3, "loss_D_fake": 0.3})
    assert trainer.state.weak_d_windows == 0


def test_skipped_steps_are_counted_and_too_many_in_a_row_stop(tmp_path):
    trainer = stand_in(tmp_path, "train.max_nonfinite_steps=3", "train.log_every=100")
    watch = NonFiniteWatch(trainer)
    for skipped in (1, 1, 0, 1, 1):
        watch.tally(torch.tensor(float(skipped)))
    watch.read()
    assert trainer.state.skipped_steps == 4 and "4 of the last steps" in trainer.accelerator.printed[-1]
    assert "(2 in a row now" in trainer.accelerator.printed[-1]
    watch.read()  # nothing new
    assert trainer.state.skipped_steps == 4 and len(trainer.accelerator.printed) == 1
    watch.tally(torch.tensor(1.0))  # the third in a row
    trainer.state.step = 3  # a multiple of max_nonfinite_steps: read there
    with pytest.raises(TrainingDiverged, match="3 consecutive steps"):
        watch.on_step({}, {})
    assert trainer.accelerator.ended


def test_a_run_of_skips_between_two_reads_still_stops(tmp_path):
    trainer = stand_in(tmp_path, "train.max_nonfinite_steps=3")
    watch = NonFiniteWatch(trainer)
    for skipped in (0, 1, 1, 1, 0):  # three in a row, then a good step before the read
        watch.tally(torch.tensor(float(skipped)))
    with pytest.raises(TrainingDiverged, match="3 consecutive steps"):
        watch.read()


def test_checkpoints_come_every_n_steps_and_once_at_the_end(tmp_path):
    trainer = stand_in(tmp_path, "train.checkpoint_every=2")
    saved = []
    trainer.checkpoint = lambda: saved.append(trainer.state.step)
    job = Checkpoints(trainer, max_steps=6)
    steps(trainer, job, 6)
    job.on_end(None, None)
    assert saved == [2, 4, 6]  # step 6 is the last: saved by on_end, not twice


def test_samples_every_n_steps_and_at_the_end(tmp_path):
    trainer = stand_in(tmp_path, "train.sample_every=3")
    (tmp_path / "samples").mkdir()
    trainer.recipe = SimpleNamespace(visuals=lambda batch, ctx: [torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)])
    job = Samples(trainer)
    steps(trainer, job, 4)
    job.on_end({}, {})
    job.on_end(None, None)  # a run that did no step has no sample
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_000003.png", "step_000004.png"]


def test_the_memory_log_keeps_the_largest_peak(tmp_path, monkeypatch):
    trainer = stand_in(tmp_path, "train.log_every=2")
    peaks = iter([3 * 2**30, 2 * 2**30])
    monkeypatch.setattr("translate.engine.memory.peak", lambda device: next(peaks))
    job = MemoryLog(trainer)
    steps(trainer, job, 4)
    record = json.loads((tmp_path / "logs" / "memory.json").read_text())
    assert record["step"] == 4 and record["peak_gib"] == 3.0 and "budget_gib" not in record
    assert [(step, v["memory/peak_gib"]) for step, v in trainer.accelerator.logged] == [(2, 3.0), (4, 3.0)]


def evaluation(tmp_path, *overrides, values=()):
    """An Evaluation whose held-out metric takes ``values`` in turn (doing nothing: 10.0); exports are recorded."""
    trainer = stand_in(tmp_path, "train.eval_every=1", "train.eval_metrics=[psnr]", "train.best_metric=psnr",
                       *overrides)
    trainer.recipe = SimpleNamespace(directions={"AtoB": "G"})
    trainer.exported_networks = lambda: {"G": None}
    exported = []

    def export(directory):
        exported.append(trainer.state.step)
        directory.mkdir(exist_ok=True)
        (directory / "config.json").write_text(json.dumps({"step": trainer.state.step}))

    trainer.export = export
    job = Evaluation(trainer)
    metric = iter(values)
    job.held_out_metrics = lambda nets: {"psnr": 10.0} if not nets else {"psnr": next(metric)}
    job.do_nothing_metrics = lambda: {"psnr": 10.0}
    job.watch_moved = dict  # its own tests below
    return trainer, job, exported


def test_the_best_model_follows_the_metric(tmp_path):
    trainer, job, exported = evaluation(tmp_path, values=[11.0, 12.0, 11.5, 12.5])
    steps(trainer, job, 4)
    assert exported == [1, 2, 4] and trainer.state.best == 12.5
    rows = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": 1, "psnr": 11.0, "psnr_do_nothing": 10.0}


def test_early_stop_counts_evaluations_without_an_improvement_beyond_min_delta(tmp_path):
    # Keras' EarlyStopping: 12.0 sets the reference; 12.05 and 12.09 improve by less than 0.1 (stale 1, 2); 12.2
    # improves on the reference by more (reset); 12.25, 12.0, 12.29 are stale 1, 2, 3: stop at the 7th evaluation.
    trainer, job, _ = evaluation(tmp_path, "train.early_stop=3", "train.early_stop_min_delta=0.1",
                                 values=[12.0, 12.05, 12.09, 12.2, 12.25, 12.0, 12.29, 99.0])
    for n in range(1, 8):
        assert not trainer.state.stopped_early, n
        steps(trainer, job, 1)
    assert trainer.state.stale_evals == 3
    assert "psnr did not improve by more than 0.1 for 3 evaluations" in trainer.state.stopped_early
    assert "the best, 12.29 at step 7" in trainer.state.stopped_early


def test_lower_is_better_for_distances(tmp_path):
    trainer, job, exported = evaluation(tmp_path, "train.eval_metrics=[fid]", "train.best_metric=fid")
    job.held_out_metrics = lambda nets: {"fid": {0: 50.0, 1: 40.0, 2: 45.0}[trainer.state.step - 1]} if nets else {}
    steps(trainer, job, 3)
    assert exported == [1, 2] and trainer.state.best == 40.0


def test_worse_than_doing_nothing_is_warned_after_some_evaluations_in_a_row(tmp_path):
    values = [9.0] * (QUALITY_EVALS - 1) + [11.0] + [9.0] * QUALITY_EVALS
    trainer, job, _ = evaluation(tmp_path, values=values)
    steps(trainer, job, QUALITY_EVALS)
    assert not any("worse than returning the input" in p for p in trainer.accelerator.printed)
    steps(trainer, job, QUALITY_EVALS)
    warned = [p for p in trainer.accelerator.printed if "worse than returning the input" in p]
    assert len(warned) == 1 and f"(step {2 * QUALITY_EVALS})" in warned[0]



class Flat(torch.nn.Module):
    """A generator whose every output pixel is ``value`` (None: its input unchanged)."""

    def __init__(self, value=None):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x if self.value is None else torch.full_like(x, self.value)


class Items:
    """Five copies of one training item, read as datasets read them (``load(index, rng)``)."""

    seed = 0

    def __init__(self, item: dict):
        self.item = item

    def __len__(self):
        return 5

    def load(self, index, rng):
        return self.item


def moved_watch(tmp_path, a: float, b: float, net: torch.nn.Module, *overrides):
    """An Evaluation on flat training images of value ``a`` (side A) and ``b`` (side B), in [-1, 1], with ``net`` as
    the one generator, checked with each sample grid (every STUCK_STEPS // 2 steps)."""
    trainer = stand_in(tmp_path, f"train.sample_every={STUCK_STEPS // 2}", *overrides)
    trainer.dataset = Items({"A": torch.full((3, 8, 8), a), "B": torch.full((3, 8, 8), b)})
    trainer.recipe = SimpleNamespace(directions={"AtoB": "G"}, fixed_samples=lambda nets, n: None)
    trainer.nets = {"G": net}
    trainer.exported_networks = lambda: {"G": net}
    return trainer, Evaluation(trainer)


def stuck_warnings(trainer):
    return [p for p in trainer.accelerator.printed if "has not moved from its input" in p]


def test_a_generator_that_stays_at_its_input_on_a_far_task_is_warned_about_once(tmp_path):
    # Black to white: the colour gap is the whole range (1.0); returning the input closes none of it.
    trainer, job = moved_watch(tmp_path, -1.0, 1.0, Flat(), "model.residual=true")
    steps(trainer, job, STUCK_STEPS - 1)
    assert not stuck_warnings(trainer)  # too early to tell
    steps(trainer, job, 2 * STUCK_STEPS)
    warned = stuck_warnings(trainer)
    assert len(warned) == 1 and f"after {STUCK_STEPS} steps" in warned[0]
    assert "outputs are 1.00 from the target domain's colours, its inputs 1.00" in warned[0]
    assert "set model.residual=false (model.netG=auto then" in warned[0]  # the hint for a residual generator
    row = json.loads((tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()[0])
    assert row == {"step": STUCK_STEPS // 2, "colour_gap_AtoB": pytest.approx(1.0),
                   "colour_gap_AtoB_input": pytest.approx(1.0)}


@pytest.mark.parametrize("a, b, output", [
    (-1.0, 1.0, 0.6),   # a far task, 80 % of the gap closed (0.2 left of 1.0): moving
    (-1.0, 1.0, 1.0),   # a far task done
    (0.0, 0.3, None),   # a near task (gap 0.15 of the range) that keeps its input: fine there
])
def test_no_warning_for_a_generator_that_moved_or_a_near_task(tmp_path, a, b, output):
    trainer, job = moved_watch(tmp_path, a, b, Flat(output))
    steps(trainer, job, 2 * STUCK_STEPS)
    assert not stuck_warnings(trainer)
    last = json.loads((tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()[-1])
    expected = abs(b - (a if output is None else output)) / 2  # flat images: the distance of the two values
    assert last["colour_gap_AtoB"] == pytest.approx(expected, abs=1e-6)


def test_nothing_to_watch_without_a_second_domain(tmp_path):
    trainer, job = moved_watch(tmp_path, -1.0, 1.0, Flat(), "model.residual=true")
    trainer.dataset = Items({"A": torch.full((3, 8, 8), -1.0)})  # one folder, as super-resolution reads it
    steps(trainer, job, 2 * STUCK_STEPS)
    assert not stuck_warnings(trainer) and not (tmp_path / "logs" / "metrics.jsonl").exists()


def test_each_cyclegan_generator_is_watched_towards_its_own_target(tmp_path):
    # data.direction=BtoA: G_A reads the items' A and is the model's BtoA. G_A draws white from black (done); G_B
    # returns its white input where black is asked (stuck).
    trainer, job = moved_watch(tmp_path, -1.0, 1.0, Flat(1.0), "model.residual=true")
    trainer.recipe.directions = {"BtoA": "G_A", "AtoB": "G_B"}
    trainer.exported_networks = lambda: {"G_A": Flat(1.0), "G_B": Flat()}
    steps(trainer, job, STUCK_STEPS)
    row = json.loads((tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["colour_gap_BtoA"] == pytest.approx(0.0, abs=1e-6) and row["colour_gap_AtoB"] == pytest.approx(1.0)
    warned = stuck_warnings(trainer)
    assert len(warned) == 1 and "G_B's outputs are 1.00" in warned[0] and "G_A's" not in warned[0]
