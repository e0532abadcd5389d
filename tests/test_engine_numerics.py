"""The engine's numerics against hand-worked values: EMA, image pool, frozen discriminators, skipped steps, lr
schedules, bf16, best-model selection and torch.compile. Each test fails when its named behaviour is broken."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from translate.config import load_config
from translate.engine.ema import EMA
from translate.engine.trainer import Trainer
from translate.methods.image_pool import ImagePool

NAN = float("nan")


# --- The engine's internals, in one place: adapt these helpers when the engine changes. -------------------------
def networks(trainer) -> dict[str, nn.Module]:
    """Every network by name: the modules the optimizers train."""
    return trainer.nets


def groups(trainer) -> dict[str, tuple[str, ...]]:
    """Optimizer group -> the networks it trains."""
    return dict(trainer.recipe.groups)


def optimizers(trainer) -> dict[str, torch.optim.Optimizer]:
    """Optimizer group -> its torch optimizer (unwrapped from Accelerate)."""
    return {group: opt.optimizer for group, opt in trainer.optimizers.items()}


def lr_of(trainer) -> dict[str, float]:
    return {group: opt.param_groups[0]["lr"] for group, opt in optimizers(trainer).items()}


def first_batch(trainer) -> dict:
    return next(iter(trainer.loader))


def run_batch(trainer, batch: dict) -> None:
    """One training step (every phase) on ``batch``, as the loop runs it."""
    with trainer.accelerator.accumulate():
        trainer.train_step(batch)


def wrap_loss(trainer, group: str, hook) -> None:
    """Pass the loss terms of every phase that steps ``group`` through ``hook(terms) -> terms``, each time such a
    phase runs: after its forward, before its backward."""
    recipe = trainer.recipe
    for loss in {phase.loss for phase in trainer.phases if phase.group == group}:
        real = getattr(recipe, loss)
        setattr(recipe, loss, lambda nets, batch, ctx, real=real: hook(real(nets, batch, ctx)))


# --- Reading a run from outside ------------------------------------------------------------------------------------
def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def no_report(*overrides: str) -> tuple[str, ...]:
    return ("train.report=false", *overrides)


# --- 1. EMA --------------------------------------------------------------------------------------------------------
def ema_closed_form(decay: float, w0: float, updates: list[float]) -> float:
    """decay^k · w0 + Σ_i (1 - decay) · decay^(k - i) · w_i over the k updates w_1..w_k."""
    k = len(updates)
    return decay**k * w0 + sum((1 - decay) * decay ** (k - i) * w for i, w in enumerate(updates, 1))


def set_weights(net: nn.Module, w: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(w)


def test_ema_after_k_updates_equals_the_closed_form_and_copies_buffers():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    set_weights(net, 1.0)
    ema = EMA(net, decay=0.9, warmup=False)
    for t, w in enumerate((2.0, -1.0, 4.0)):
        set_weights(net, w)
        net[1].running_mean.fill_(w)
        ema.update(net, t)
    # By hand: 0.9³·1 + 0.1·(0.9²·2 + 0.9·(-1) + 4) = 0.729 + 0.472 = 1.201
    assert ema_closed_form(0.9, 1.0, [2.0, -1.0, 4.0]) == pytest.approx(1.201)
    for p in ema.module.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 1.201), rtol=0, atol=1e-6)
        assert not p.requires_grad
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 4.0))  # buffers copied, not averaged
    assert torch.equal(net[0].weight, torch.full((2, 3), 4.0))  # the trained net is left alone


def test_ema_warmup_ramps_the_decay_by_the_step_it_is_given():
    # decay of update t: min(0.9, (1 + t) / (10 + t)) = 0.1, 2/11, 0.25 for t = 0, 1, 2; then the cap from t = 80.
    net = nn.Linear(2, 1)
    set_weights(net, 1.0)
    ema = EMA(net, decay=0.9)
    for t, w in enumerate((2.0, -1.0, 4.0)):
        set_weights(net, w)
        ema.update(net, t)
    # By hand: 0.1·1 + 0.9·2 = 1.9; (2/11)·1.9 − (9/11) = −0.472727…; 0.25·(−0.472727…) + 0.75·4 = 2.881818…
    for p in ema.module.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 2.8818182), rtol=0, atol=1e-6)
    assert [ema.decay_at(t) for t in (79, 80, 10_000)] == pytest.approx([80 / 89, 0.9, 0.9], abs=1e-15)
    resumed = EMA(net, decay=0.9)  # from weights 4; a resumed run passes its own step: the ramp goes on
    set_weights(net, 0.0)
    resumed.update(net, 3)
    for p in resumed.module.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 4 / 13 * 4), rtol=0, atol=1e-6)


@pytest.mark.parametrize("ramp", [True, False])
def test_training_exports_the_ema_of_the_weights_after_each_step(tiny_config, ramp):
    # decay 0.5 ramped (train.ema_warmup, the default): 0.1 at step 1, 2/11 at step 2, so
    # EMA = (2/11)·(0.1·w0 + 0.9·w1) + (9/11)·w2 (w_k: G's weights after step k); without the ramp
    # EMA = 0.25·w0 + 0.25·w1 + 0.5·w2.
    trainer = Trainer(tiny_config("pix2pix", *no_report("train.ema=true", "train.ema_decay=0.5",
                                                        f"train.ema_warmup={ramp}", "train.max_steps=2")))
    G = networks(trainer)["G"]
    seen = []  # G's weights when each step's G loss is computed: w0, w1

    def record(terms):
        seen.append({k: v.detach().clone() for k, v in G.named_parameters()})
        return terms

    wrap_loss(trainer, "G", record)
    run_dir = trainer.fit()
    w0, w1 = seen
    w2 = dict(G.named_parameters())
    exported = load_file(run_dir / "model" / "G.safetensors")
    for name in w0:
        c0, c1, c2 = (2 / 11 * 0.1, 2 / 11 * 0.9, 9 / 11) if ramp else (0.25, 0.25, 0.5)
        expected = c0 * w0[name].double() + c1 * w1[name].double() + c2 * w2[name].detach().double()
        torch.testing.assert_close(exported[name].double(), expected, rtol=0, atol=1e-6, msg=name)
    for name, buffer in G.named_buffers():  # batch-norm statistics: the trained net's, as they are
        assert torch.equal(exported[name], buffer), name
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)  # the second step did train


# --- 2. Image pool ------------------------------------------------------------------------------------------------
def numbered(*values: int) -> torch.Tensor:
    """A batch of 1×2×2 images, image i filled with values[i], so that each image is recognisable."""
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()


def labels(images: torch.Tensor) -> list[int]:
    return [int(image[0, 0, 0]) for image in images]


def pool_contents(pool: ImagePool) -> list[int]:
    return sorted(labels(torch.cat(pool.state_dict()["images"]))) if pool.state_dict()["images"] else []


def test_image_pool_returns_its_first_images_as_they_are():
    pool = ImagePool(4, seed=0)
    images = numbered(0, 1, 2, 3)
    assert torch.equal(pool.query(images), images)
    assert pool_contents(pool) == [0, 1, 2, 3]


def test_image_pool_of_size_zero_returns_the_input_and_stores_nothing():
    pool = ImagePool(0, seed=0)
    images = numbered(5, 6)
    assert torch.equal(pool.query(images), images)
    assert pool_contents(pool) == []


def test_full_image_pool_swaps_in_a_stored_image_half_of_the_time():
    size, queries = 5, 2000
    pool = ImagePool(size, seed=0)
    pool.query(numbered(*range(size)))
    stored = set(range(size))  # what the pool must hold: an independent model of its contents
    swapped = 0
    for label in range(size, size + queries):
        (out,) = labels(pool.query(numbered(label)))
        if out != label:
            swapped += 1
            assert out in stored, f"query {label} returned {out}, which the pool does not hold"
            stored.remove(out)
            stored.add(label)
        assert len(pool.state_dict()["images"]) == size
    assert pool_contents(pool) == sorted(stored)
    # Binomial(2000, 1/2): mean 1000, sd 22.4; ±110 is 4.9 sd (a wrong pool fails by far more).
    assert abs(swapped - queries / 2) < 110, swapped


def test_image_pool_swaps_images_one_by_one_within_a_batch():
    pool = ImagePool(3, seed=1)
    pool.query(numbered(0, 1, 2))
    out = [labels(pool.query(numbered(*range(b, b + 4)))) for b in range(10, 400, 10)]
    mixed = [row for row in out if any(o < 10 for o in row) and any(o >= 10 for o in row)]
    assert mixed, "no batch mixed stored and fresh images"
    assert len(pool.state_dict()["images"]) == 3


# --- 3. Frozen discriminators -------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["pix2pix", "cyclegan"])
def test_discriminators_get_no_gradient_from_the_generator_phase(tiny_config, recipe):
    trainer = Trainer(tiny_config(recipe))
    D = [p for name in groups(trainer)["D"] for p in networks(trainer)[name].parameters()]
    grads_at_d_phase = []

    def record(terms):  # the D phase's forward is done, its backward not yet: what the G phase left behind
        grads_at_d_phase.append([p.grad for p in D])
        return terms

    wrap_loss(trainer, "D", record)
    run_batch(trainer, first_batch(trainer))
    assert len(grads_at_d_phase) == 1
    leaked = sum(g is not None for g in grads_at_d_phase[0])
    assert leaked == 0, f"{leaked} of {len(D)} discriminator parameters got a gradient from the generator phase"


# --- 4. Non-finite steps ------------------------------------------------------------------------------------------
def snapshot(trainer, group: str) -> dict[str, torch.Tensor]:
    """Every parameter of ``group`` and every tensor of its optimizer's state (exp_avg, exp_avg_sq, step)."""
    out = {f"{net}.{name}": p.detach().clone()
           for net in groups(trainer)[group] for name, p in networks(trainer)[net].named_parameters()}
    for i, state in optimizers(trainer)[group].state_dict()["state"].items():
        out.update({f"state[{i}].{key}": value.clone() for key, value in state.items()})
    return out


def changed(before: dict, after: dict) -> list[str]:
    """Names whose tensor differs, or exists on one side only (optimizer state appears at the first step)."""
    return [k for k in before.keys() | after.keys() if k not in before or k not in after
            or not torch.equal(before[k], after[k])]


@pytest.mark.parametrize("poisoned", ["G", "D"])
def test_a_non_finite_loss_leaves_its_group_and_optimizer_state_untouched(tiny_config, poisoned):
    trainer = Trainer(tiny_config("pix2pix"))
    calls = {"n": 0}

    def poison_second_step(terms):
        calls["n"] += 1
        if calls["n"] == 2:
            name = next(iter(terms))
            terms = {**terms, name: terms[name] * NAN}
        return terms

    wrap_loss(trainer, poisoned, poison_second_step)
    batch = first_batch(trainer)
    other = "D" if poisoned == "G" else "G"

    # A normal step moves the weights, both moments and the step count: the control for what follows.
    before = {g: snapshot(trainer, g) for g in ("G", "D")}
    run_batch(trainer, batch)
    for group in ("G", "D"):
        moved = changed(before[group], snapshot(trainer, group))
        assert any(".exp_avg" in k for k in moved) and any(k.endswith(".step") for k in moved), group
        assert any(not k.startswith("state") for k in moved), group
    state_keys = {k.split(".")[-1] for k in snapshot(trainer, poisoned) if k.startswith("state")}
    assert state_keys == {"exp_avg", "exp_avg_sq", "step"}

    before = {g: snapshot(trainer, g) for g in ("G", "D")}
    run_batch(trainer, batch)  # the poisoned step
    assert calls["n"] == 2
    assert changed(before[poisoned], snapshot(trainer, poisoned)) == []
    # The other group's gradients were finite: it still steps.
    assert any(k.endswith(".step") for k in changed(before[other], snapshot(trainer, other)))


def test_fused_adam_on_the_cpu_honours_found_inf():
    # The engine skips a non-finite step by setting the private `found_inf` attribute that torch's GradScaler uses;
    # this pins that behaviour, so that a torch upgrade that drops it fails here.
    weight = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = torch.optim.Adam([weight], lr=0.1, fused=True)

    def step(found_inf):
        weight.grad = torch.tensor([0.5, 0.25, -1.0])
        opt.found_inf = found_inf
        opt.step()
        del opt.found_inf

    step(torch.zeros(()))
    # Adam's first step is lr · sign(grad) (m̂ / √v̂ = g / |g|, eps aside).
    torch.testing.assert_close(weight.detach(), torch.tensor([0.9, -2.1, 3.1]), rtol=0, atol=1e-6)
    state = {k: v.clone() for k, v in opt.state[weight].items()}
    kept = weight.detach().clone()
    step(torch.ones(()))
    assert torch.equal(weight, kept)
    assert all(torch.equal(opt.state[weight][k], v) for k, v in state.items())
    step(torch.zeros(()))
    assert not torch.equal(weight, kept) and float(opt.state[weight]["step"]) == 2.0


# --- 5. Learning-rate schedules -----------------------------------------------------------------------------------
# lr 2e-4, n_epochs 2, n_epochs_decay 2 (4 epochs), lr_decay_iters 2; the factor per epoch 0..3, worked by hand:
# linear (the reference): 1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1) = 1, 1, 2/3, 1/3
# step: 0.1 ** (epoch // lr_decay_iters) = 1, 1, 0.1, 0.1
# cosine over the whole run: (1 + cos(π · epoch / 4)) / 2 = 1, (1 + √½) / 2, 1/2, (1 - √½) / 2
SCHEDULES = {
    "linear": [2e-4, 2e-4, 1.3333333e-4, 0.6666667e-4],
    "step": [2e-4, 2e-4, 2e-5, 2e-5],
    "cosine": [2e-4, 1.7071068e-4, 1e-4, 0.2928932e-4],
    "constant": [2e-4] * 4,
}


def train_seeing_lrs(config) -> tuple[list[dict[str, float]], list[dict]]:
    """Train; each group's lr when each step's G loss is computed, and the logged lines."""
    trainer = Trainer(config)
    seen = []

    def record(terms):
        seen.append(lr_of(trainer))
        return terms

    wrap_loss(trainer, "G", record)
    run_dir = trainer.fit()
    return seen, read_jsonl(run_dir / "logs" / "losses.jsonl")


@pytest.mark.parametrize("policy", sorted(SCHEDULES))
def test_lr_schedule_follows_the_formula_epoch_by_epoch(tiny_config, policy):
    # One image per epoch: step k runs in epoch k - 1.
    config = tiny_config("pix2pix", *no_report(f"train.lr_policy={policy}", "train.lr=2e-4", "train.n_epochs=2",
                                               "train.n_epochs_decay=2", "train.lr_decay_iters=2",
                                               "data.max_dataset_size=1", "train.log_every=1"))
    seen, log = train_seeing_lrs(config)
    expected = SCHEDULES[policy]
    assert [list(lrs) for lrs in seen] == [["G", "D"]] * 4
    for epoch, lrs in enumerate(seen):
        for group, lr in lrs.items():
            assert lr == pytest.approx(expected[epoch], rel=1e-6), (group, epoch)
    assert [(e["step"], e["epoch"]) for e in log] == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert [e["lr"] for e in log] == pytest.approx(expected, rel=1e-6)


def test_lr_warmup_scales_each_step_on_top_of_the_epoch_schedule(tiny_config):
    # Two images per epoch, linear schedule 1 + 2 epochs (factors 1, 2/3, 1/3), warmup_steps 4: step k uses
    # lr(epoch) · min(1, k / 4), by hand [1/4, 2/4 | 3/4 · 2/3, 2/3 | 1/3, 1/3] of each group's own lr (D at half G's:
    # TTUR); the log shows the lr each step used.
    config = tiny_config("pix2pix", *no_report("train.lr_policy=linear", "train.lr=2e-4", "train.n_epochs=1",
                                               "train.n_epochs_decay=2", "data.max_dataset_size=2",
                                               "train.log_every=1", "train.warmup_steps=4",
                                               "train.optimizers.D.lr=1e-4"))
    seen, log = train_seeing_lrs(config)
    factors = [1 / 4, 2 / 4, 1 / 2, 2 / 3, 1 / 3, 1 / 3]
    assert [lrs["G"] for lrs in seen] == pytest.approx([2e-4 * f for f in factors], rel=1e-6)
    assert [lrs["D"] for lrs in seen] == pytest.approx([1e-4 * f for f in factors], rel=1e-6)
    assert [e["lr"] for e in log] == pytest.approx([2e-4 * f for f in factors], rel=1e-6)


def test_cosine_schedule_matches_torch_cosine_annealing():
    # The same numbers as SCHEDULES["cosine"], from torch's own implementation over the whole run (T_max = 4).
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs == pytest.approx(SCHEDULES["cosine"], rel=1e-6)
    assert SCHEDULES["cosine"][1] == pytest.approx(2e-4 * (1 + math.sqrt(0.5)) / 2)


# --- 6. bf16 --------------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:train.mixed_precision. bf16 was asked for")  # the tests mock a CPU without bf16
def test_bf16_mixed_precision_runs_bf16_kernels_on_the_cpu(tiny_config):
    trainer = Trainer(tiny_config("cyclegan", "train.mixed_precision=bf16"))
    dtypes = {}
    for name, net in networks(trainer).items():
        conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        conv.register_forward_hook(lambda module, args, out, name=name: dtypes.setdefault(name, set()).add(out.dtype))
    run_batch(trainer, first_batch(trainer))
    assert dtypes == {name: {torch.bfloat16} for name in networks(trainer)}
    # The weights themselves stay float32 (the optimizer's master copy).
    assert all(p.dtype == torch.float32 for net in networks(trainer).values() for p in net.parameters())


# --- 7. Best model --------------------------------------------------------------------------------------------------
def test_best_model_follows_the_lowest_l1(tiny_config):
    config = tiny_config("pix2pix", *no_report("train.lr=0.002", "train.max_steps=12", "train.eval_every=2",
                                               "train.eval_split=test", "train.eval_metrics=[l1,psnr]",
                                               "train.best_metric=l1", "model.no_dropout=true"))
    run_dir = Trainer(config).fit()
    metrics = read_jsonl(run_dir / "logs" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [2, 4, 6, 8, 10, 12]
    l1 = [m["l1"] for m in metrics]
    best, worst = metrics[l1.index(min(l1))]["step"], metrics[l1.index(max(l1))]["step"]
    # Precondition: a run whose best is neither its worst nor its last evaluation tells "lower is better" from
    # "higher is better" and from "always the latest".
    assert best not in (worst, metrics[-1]["step"]), l1
    assert json.loads((run_dir / "model_best" / "config.json").read_text())["step"] == best


# --- 7b. Quality against doing nothing ------------------------------------------------------------------------------
class Copy(nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # evaluate finds the device from a parameter

    def forward(self, x):
        return x.clone()


@pytest.fixture
def near_identity_pairs(tmp_path):
    """Aligned A|B images where B is A a little brighter: doing nothing is already close (about 26 dB)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 3)):
        (tmp_path / "pairs" / split).mkdir(parents=True)
        for i in range(n):
            a = np.asarray(Image.fromarray(rng.integers(0, 200, (4, 4, 3), dtype=np.uint8)).resize((32, 32)))
            pair = np.concatenate([a, a + 12], 1)
            Image.fromarray(pair).save(tmp_path / "pairs" / split / f"{i}.png")
    return tmp_path / "pairs"


@pytest.mark.parametrize("residual", [False, True])
def test_evaluations_log_doing_nothing_and_warn_once_when_worse(tiny_config, near_identity_pairs, capsys, residual):
    # lr 1e-12: the generator does not change. A random one is worse than returning the input at every evaluation;
    # a residual one (model.residual) returns its input exactly, so it is never worse, and never warned about.
    from translate.evaluation import evaluate

    config = tiny_config("pix2pix", *no_report("train.lr=1e-12", "train.max_steps=10", "train.eval_every=2",
                                               "train.eval_split=test", "train.eval_metrics=[psnr,l1]",
                                               f"model.residual={str(residual).lower()}", "model.norm=instance",
                                               f"data.root={near_identity_pairs}"))
    run_dir = Trainer(config).fit()
    metrics = read_jsonl(run_dir / "logs" / "metrics.jsonl")
    # The baseline, computed here with another "do nothing" (a copy, not the trainer's 1×1 dirac convolution).
    expected = evaluate({"G": Copy()}, config, split="test", metrics=["psnr", "l1"])
    for m in metrics:
        assert m["psnr_do_nothing"] == pytest.approx(expected["psnr"]) and m["l1_do_nothing"] == pytest.approx(
            expected["l1"])
        assert (m["psnr"] < m["psnr_do_nothing"]) != residual
    if residual:  # the identity to 8 bits: equal to the baseline's numbers within rounding
        assert metrics[-1]["psnr"] == pytest.approx(expected["psnr"], abs=0.05)
    warned = capsys.readouterr().out.count("worse than returning the input unchanged")
    assert warned == (0 if residual else 1)  # once, at the 3rd evaluation in a row, not at the 4th and 5th


# --- 8. torch.compile ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compiled_training_matches_eager_after_two_steps(tiny_config, tmp_path, monkeypatch):
    # Fails, not skips, wherever a C compiler exists: a compile path that quietly falls back to eager is a failure.
    pytest.importorskip("torch._inductor")
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no C compiler: torch.compile cannot build its kernels here")
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", False)  # a compile error raises, not eager
    # No norm layers: no gradient is structurally zero (a conv bias before a norm is), so Adam's ±lr first steps
    # do not flip sign on rounding noise. A pixel D keeps compilation short.
    common = ["model.norm=none", "model.no_dropout=true", "model.netD=pixel", "train.max_steps=2",
              "train.report=false"]
    eager = Trainer(tiny_config("pix2pix", *common, f"train.output_dir={tmp_path / 'eager'}"))
    eager.fit()
    torch._dynamo.reset()
    compiled = Trainer(tiny_config("pix2pix", *common, "train.compile=true", f"train.output_dir={tmp_path / 'c'}"))
    torch._dynamo.utils.counters.clear()  # count only what training compiles (not a probe at start-up)
    run_dir = compiled.fit()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "the networks ran eager"
    assert load_config(run_dir / "config.yaml").train.compile, "the run's config records a fallback to eager"
    # Measured (AMD EPYC, torch 2.14): at most 4e-8 apart after 2 steps. 1e-5 is 1/20 of one step of lr 2e-4, the
    # least that a missed, doubled or wrong step moves a weight.
    for name, net in networks(eager).items():
        other = dict(networks(compiled)[name].named_parameters())
        for key, p in net.named_parameters():
            torch.testing.assert_close(other[key], p, rtol=0, atol=1e-5, msg=f"{name}.{key}")
