"""The recipe contract: CUT/FastCUT, phases (n_critic, lazy R1), optimizer groups (TTUR), recipe options and
defaults, recipes from files outside the package; the shared losses and D layers on hand-worked values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from translate.config import ConfigError, load_config
from translate.engine.checkpoint import list_checkpoints
from translate.engine.trainer import Trainer, train
from translate.losses import adversarial_loss, patch_nce_loss, r1_penalty
from translate.methods import RECIPES

TOY = Path(__file__).parent / "recipes" / "toy_recipe.py"


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "logs" / "losses.jsonl").read_text().splitlines()]


def cut_config(tiny_config, recipe="cut", *overrides):
    # The paper's layer ids need resnet_9blocks' 19 layers; tiny widths, 4 patches.
    return tiny_config(recipe, "model.netG=resnet_9blocks", f"model.{recipe}.num_patches=4",
                       f"model.{recipe}.netF_nc=8", "train.max_steps=3", "train.report=false", *overrides)


# -- losses on hand-worked values -------------------------------------------------------------------------------
def test_patch_nce_matches_a_hand_worked_case():
    # One image, two patches, τ = 0.5. Query 0 = (0.6, 0.8), query 1 = (1, 0); keys = the unit vectors.
    # Row 0: logits (1.2, 1.6), positive 0: -1.2 + log(e^1.2 + e^1.6) = log(1 + e^0.4).
    # Row 1: logits (2, 0), positive 1: log(e^2 + 1).
    q = torch.tensor([[[0.6, 0.8], [1.0, 0.0]]])
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    expected = (math.log(1 + math.exp(0.4)) + math.log(math.exp(2) + 1)) / 2
    assert patch_nce_loss(q, k, 0.5).item() == pytest.approx(expected, rel=1e-6)
    # Keys carry no gradient (the reference detaches them); queries do.
    q.requires_grad_(True)
    k.requires_grad_(True)
    patch_nce_loss(q, k, 0.5).backward()
    assert k.grad is None and q.grad.abs().sum() > 0


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    D = nn.Conv2d(2, 1, 1, bias=True)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([3.0, 4.0]).view(1, 2, 1, 1))
    x = torch.randn(5, 2, 3, 3)
    # D(x).sum() over 9 pixels: ∂/∂x = w at every pixel -> ||∇||² = 9 · (3² + 4²) = 225 per image.
    assert r1_penalty(D, x).item() == pytest.approx(225.0)


def test_hinge_loss_values():
    p = torch.tensor([2.0, 0.5, -1.5])
    assert adversarial_loss(p, True, "hinge").item() == pytest.approx((0 + 0.5 + 2.5) / 3)  # relu(1 - p)
    assert adversarial_loss(p, False, "hinge").item() == pytest.approx((3 + 1.5 + 0) / 3)  # relu(1 + p)
    assert adversarial_loss(p, True, "hinge", for_discriminator=False).item() == pytest.approx(-1 / 3)


# -- CUT / FastCUT ----------------------------------------------------------------------------------------------
def test_cut_feature_mlp_has_the_reference_sizes_at_ngf_64():
    config = load_config(None, ["model.recipe=cut", "data.root=/x"])
    assert (config.model.ngf, config.model.netG, config.model.cut.nce_layers) == (64, "resnet_9blocks",
                                                                                 [0, 4, 8, 12, 16])
    from translate.methods.cut import CUT

    recipe = CUT(config)
    nets = recipe.build()
    F = recipe.build_after_first_batch(nets, {"A": torch.zeros(1, 3, 64, 64)})["F"]
    # The reference's PatchSampleF: per layer Linear(C, 256) -> ReLU -> Linear(256, 256), C = 3, 128, 256, 256, 256.
    assert [mlp[0].in_features for mlp in F.mlps] == [3, 128, 256, 256, 256]
    per_layer = [c * 256 + 256 + 256 * 256 + 256 for c in (3, 128, 256, 256, 256)]
    assert sum(p.numel() for p in F.parameters()) == sum(per_layer) == 560_384
    narrow = CUT(load_config(None, ["model.recipe=cut", "data.root=/x", "model.ngf=8", "model.cut.netF_nc=32"]))
    F = narrow.build_after_first_batch(narrow.build(), {"A": torch.zeros(1, 3, 64, 64)})["F"]
    assert [(m[0].in_features, m[0].out_features, m[2].out_features) for m in F.mlps] == [
        (3, 32, 32), (16, 32, 32), (32, 32, 32), (32, 32, 32), (32, 32, 32)]


def test_cut_and_fastcut_defaults_are_the_papers():
    cut = load_config(None, ["model.recipe=cut", "data.root=/x"])
    fast = load_config(None, ["model.recipe=fastcut", "data.root=/x"])
    assert (cut.model.cut.lambda_NCE, cut.model.cut.nce_idt, cut.model.cut.flip_equivariance) == (1.0, True, False)
    assert (fast.model.fastcut.lambda_NCE, fast.model.fastcut.nce_idt, fast.model.fastcut.flip_equivariance) == (
        10.0, False, True)
    assert (cut.model.gan_mode, cut.model.no_dropout, cut.model.init_type, cut.train.n_epochs) == (
        "lsgan", True, "xavier", 200)
    assert (fast.train.n_epochs, fast.train.n_epochs_decay) == (150, 50)


@pytest.mark.parametrize("recipe, directions", [
    ("pix2pix", {"BtoA": "G"}), ("cut", {"BtoA": "G"}), ("fastcut", {"BtoA": "G"}),
    ("cyclegan", {"BtoA": "G_A", "AtoB": "G_B"}),  # G_A learns what the swapped folders make A → B
    ("sr", {"AtoB": "G"}),  # one folder: no direction to follow
    ("dcgan", {})])
def test_each_recipe_names_the_direction_its_generators_translate_the_folders(recipe, directions, tmp_path):
    config = load_config(None, [f"model.recipe={recipe}", "data.direction=BtoA", f"data.root={tmp_path}"])
    assert RECIPES[recipe](config).directions == directions


@pytest.mark.parametrize("recipe", ["cut", "fastcut"])
def test_cut_trains_and_exports_a_plain_one_direction_model(tiny_config, recipe, tmp_path):
    from translate import Translator

    trainer = Trainer(cut_config(tiny_config, recipe, "train.ema=true"))
    f_before = {k: v.clone() for k, v in trainer.nets["F"].state_dict().items()}
    run_dir = trainer.fit()
    log = read_log(run_dir)
    assert {"loss_G_GAN", "loss_NCE", "loss_D_real", "loss_D_fake"} <= set(log[-1])
    assert ("loss_NCE_Y" in log[-1]) == (recipe == "cut")
    # F is trained with G (its own group member), but neither averaged nor exported.
    assert any(not torch.equal(f_before[k], v) for k, v in trainer.nets["F"].state_dict().items())
    assert set(trainer.ema) == {"G"}
    meta = json.loads((run_dir / "model" / "config.json").read_text())
    assert list(meta["generators"]) == ["G"] and meta["directions"] == {"AtoB": "G"}
    assert sorted(p.name for p in (run_dir / "model").glob("*.safetensors")) == ["G.safetensors"]
    image = Translator.from_pretrained(run_dir / "model")(torch.rand(3, 32, 32))
    assert image.shape == (3, 32, 32)


def test_cut_resume_is_exact(tiny_config, tmp_path):
    full = train(cut_config(tiny_config, "fastcut", f"train.output_dir={tmp_path / 'full'}", "train.max_steps=4",
                            "train.checkpoint_every=2"))
    part = tmp_path / "part"
    train(cut_config(tiny_config, "fastcut", f"train.output_dir={part}", "train.max_steps=2",
                     "train.checkpoint_every=2"))
    train(cut_config(tiny_config, "fastcut", f"train.output_dir={part}", "train.max_steps=4",
                     "train.checkpoint_every=2"), resume=True)
    assert read_log(full)[-1] == read_log(part)[-1]


# -- phases and optimizer groups ----------------------------------------------------------------------------------
def count_phase_calls(trainer, names):
    calls = {name: 0 for name in names}
    for name in names:
        real = getattr(trainer.recipe, name)

        def counted(nets, batch, ctx, real=real, name=name):
            calls[name] += 1
            return real(nets, batch, ctx)

        setattr(trainer.recipe, name, counted)
    return calls


def test_n_critic_and_lazy_r1_run_as_often_as_asked(tiny_config):
    trainer = Trainer(tiny_config("pix2pix", "model.n_critic=3", "model.r1_gamma=2", "model.r1_every=4",
                                  "train.max_steps=8", "train.log_every=1"))
    calls = count_phase_calls(trainer, ["generator_loss", "discriminator_loss", "r1_loss"])
    run_dir = trainer.fit()
    assert calls == {"generator_loss": 8, "discriminator_loss": 24, "r1_loss": 2}  # R1 at steps 0 and 4
    log = read_log(run_dir)
    assert [e["step"] for e in log if "loss_D_r1" in e] == [1, 5]


def test_lazy_r1_is_scaled_by_its_interval_and_eager_r1_is_not(tiny_config):
    def r1_term(every):
        trainer = Trainer(tiny_config("pix2pix", "model.r1_gamma=2", f"model.r1_every={every}"))
        batch = next(iter(trainer.loader))
        nets = trainer.nets
        real = trainer.recipe.real_images(batch)["D"]
        reference = r1_penalty(nets["D"], real).item()  # γ/2 = 1
        if every == 1:
            ctx = {"fake_B": nets["G"](batch["A"])}
            value = trainer.recipe.discriminator_loss(nets, batch, ctx)["loss_D_r1"].item()
        else:
            value = trainer.recipe.r1_loss(nets, batch, {})["loss_D_r1"].item()
        return value / reference

    assert r1_term(1) == pytest.approx(1.0, rel=1e-5)
    assert r1_term(16) == pytest.approx(16.0, rel=1e-5)


def test_ttur_gives_each_group_its_own_learning_rate(tiny_config):
    trainer = Trainer(tiny_config("pix2pix", "train.optimizers.D.lr=0.0001", "train.optimizers.G.beta1=0.0"))
    g, d = trainer.optimizers["G"].optimizer, trainer.optimizers["D"].optimizer
    assert g.param_groups[0]["lr"] == 0.0002 and d.param_groups[0]["lr"] == 0.0001
    assert g.param_groups[0]["betas"] == (0.0, 0.999) and d.param_groups[0]["betas"] == (0.5, 0.999)


def test_three_phase_recipe_resumes_exactly_and_accumulates(tiny_config, tmp_path):
    three = ["model.n_critic=2", "model.r1_gamma=1", "model.r1_every=3", "model.no_dropout=true",
             "model.norm=instance"]
    full = train(tiny_config("pix2pix", *three, f"train.output_dir={tmp_path / 'full'}", "train.max_steps=7"))
    part = tmp_path / "part"
    train(tiny_config("pix2pix", *three, f"train.output_dir={part}", "train.max_steps=4"))
    assert [p.name for p in list_checkpoints(part)] == ["step_000004"]
    train(tiny_config("pix2pix", *three, f"train.output_dir={part}", "train.max_steps=7"), resume=True)
    full_log, part_log = read_log(full), read_log(part)
    assert full_log[-1] == part_log[-1]


# -- recipes from outside the package, and config errors ------------------------------------------------------------
def test_a_recipe_file_outside_the_package_trains(tiny_config):
    config = tiny_config("pix2pix", f"model.recipe={TOY}:toy", "model.toy.lambda_rec=2", "train.max_steps=2")
    assert config.model.toy.lambda_rec == 2.0 and config.data.dataset_mode == "aligned"
    run_dir = train(config)
    assert {"loss_G_GAN", "loss_rec", "loss_D_real"} <= set(read_log(run_dir)[-1])
    assert (run_dir / "model" / "G.safetensors").is_file()


@pytest.mark.parametrize(("override", "message"), [
    ("train.optimizers.Q.lr=0.1", "recipe pix2pix has no optimizer group 'Q' (its groups: G, D)"),
    ("model.cyclegan.lambda_A=3", "model.cyclegan.* are options of recipe cyclegan, but this config has "
                                  "model.recipe=pix2pix"),
    ("model.recipe=nowhere.py:x", "model.recipe=nowhere.py:x: no such file nowhere.py"),
    ("model.gan_mode=hinj", "model.gan_mode='hinj' is not registered; did you mean 'hinge'? known: hinge, lsgan, "
                            "vanilla, wgangp"),
    ("model.gan_mode=qqq", "model.gan_mode='qqq' is not registered; known: hinge, lsgan, vanilla, wgangp"),
])
def test_recipe_config_errors_are_one_clear_line(tiny_config, override, message):
    with pytest.raises(ConfigError) as e:
        tiny_config("pix2pix", override)
    assert message in str(e.value) and "Traceback" not in str(e.value)


def test_smooth_l1_does_not_hold_a_residual_cyclegan_at_its_input(tiny_config):
    # A residual G starts as the identity: the cycle and identity terms sit at L1's corner, where their gradient is
    # L1's full slope on the float noise of tanh(atanh(x)); smooth L1's is that noise / beta, almost nothing.
    from translate.methods import RECIPES

    torch.manual_seed(0)
    batch = {"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}
    pull = {}
    for beta in (0.0, 0.1):
        config = tiny_config("cyclegan", "model.residual=true", f"model.cyclegan.smooth_l1_beta={beta}")
        recipe = RECIPES["cyclegan"](config)
        nets = recipe.build()
        terms = recipe.generator_loss(nets, batch, {})
        sum(v for k, v in terms.items() if "cycle" in k or "idt" in k).backward()
        pull[beta] = {g: sum(p.grad.norm() for p in nets[g].parameters() if p.grad is not None).item()
                      for g in ("G_A", "G_B")}
    for g in ("G_A", "G_B"):
        assert pull[0.0][g] > 1e-3 and pull[0.1][g] < 1e-4 * pull[0.0][g]
    with pytest.raises(ConfigError, match=r"model.cyclegan.smooth_l1_beta=-0.1 must be 0 \(L1, the paper's\)"):
        tiny_config("cyclegan", "model.cyclegan.smooth_l1_beta=-0.1")  # at load: tests/test_recipe_options.py


def test_a_recipe_file_that_fails_to_import_is_one_line(tiny_config, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_anywhere\n")
    with pytest.raises(ConfigError, match=r"importing .*bad.py failed: ModuleNotFoundError"):
        tiny_config("pix2pix", f"model.recipe={bad}:bad")


def test_penalties_under_a_loss_scale_equal_the_unscaled_ones():
    # fp16's grad scaler multiplies D's output before the input gradient is taken, then divides it back out.
    from translate.losses import gradient_penalty, penalty_scale

    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3))
    real, fake = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    torch.manual_seed(1)
    plain = gradient_penalty(D, real, fake), r1_penalty(D, real)
    torch.manual_seed(1)
    with penalty_scale(2.0**16):
        scaled = gradient_penalty(D, real, fake), r1_penalty(D, real)
    for a, b in zip(plain, scaled):
        assert a.item() == pytest.approx(b.item(), rel=1e-5)
    # ...and the backward through D really ran at the scale (what keeps fp16 gradients from underflowing).
    seen = []

    def watch(module, args, out):
        out.register_hook(lambda g: seen.append(g.max().item()))

    D[2].register_forward_hook(watch)
    with penalty_scale(2.0**16):
        r1_penalty(D, real)
    assert seen == [2.0**16]


class FakeScaler:
    """What torch's GradScaler does, on the CPU: scale the loss, unscale the gradients at the step, then change the
    scale (halved at every update here, as after an overflow, so that a scale shared between groups shows)."""

    def __init__(self, scale: float):
        self.value = scale

    def scale(self, loss):
        return loss * self.value

    def get_scale(self):
        return self.value

    def step(self, optimizer, closure=None):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad /= self.value
        optimizer.step()

    def update(self):
        self.value /= 2


def test_each_optimizer_group_has_its_own_grad_scaler_under_accumulation(tiny_config):
    # fp16 needs a GPU; the scaler logic is the same with a fake scaler. With one scaler shared by G and D, G's
    # step (which updates the scale) would come between D's two accumulated backward passes and mix two scales
    # in D's gradient. Powers of two: scaling and unscaling are exact, so the weights must equal an unscaled run's.
    from accelerate.optimizer import patch_optimizer_step

    def run(scalers):
        trainer = Trainer(tiny_config("pix2pix", "train.gradient_accumulation_steps=2", "model.no_dropout=true",
                                      "model.norm=instance"))
        for group, scaler in scalers.items():
            opt = trainer.optimizers[group]
            opt.scaler, opt._accelerate_step_called = scaler, False
            opt._optimizer_original_step_method = opt.optimizer.step
            opt._optimizer_patched_step_method = patch_optimizer_step(opt, opt.optimizer.step)
        trainer.scalers = scalers
        batches = iter(trainer.loader)
        for _ in range(2):
            with trainer.accelerator.accumulate():
                trainer.train_step(next(batches))
        return {f"{n}.{k}": v.clone() for n, net in trainer.nets.items() for k, v in net.state_dict().items()}

    plain, scaled = run({}), run({"G": FakeScaler(8.0), "D": FakeScaler(4.0)})
    assert all(torch.equal(plain[k], scaled[k]) for k in plain)
    shared = FakeScaler(8.0)
    mixed = run({"G": shared, "D": shared})
    assert any(not torch.equal(plain[k], mixed[k]) for k in plain if k.startswith("D."))


def test_a_phase_of_an_unknown_group_is_one_line_before_training(tiny_config):
    from translate.methods import RECIPES, Phase, register_recipe
    from translate.methods.pix2pix import Pix2Pix

    @register_recipe("bad_phase")
    class BadPhase(Pix2Pix):
        options = Pix2Pix.options

        def phases(self):
            return [Phase("Q", "generator_loss")]

    try:
        with pytest.raises(ConfigError, match="phase 'generator_loss' steps optimizer group 'Q', which is not among "
                                              r"its groups \(G, D\)"):
            Trainer(tiny_config("pix2pix", "model.recipe=bad_phase"))
    finally:
        del RECIPES["bad_phase"]
