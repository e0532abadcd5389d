"""Which tensor each network receives in each phase of every recipe, against the papers' wiring written out by hand
(the reference code's conventions: pytorch-CycleGAN-and-pix2pix, contrastive-unpaired-translation). One real training
step per check, driven by the engine; forward hooks record every network call with its phase, and the expected inputs
are the batch's tensors or outputs the hooks recorded, compared by value (torch.equal), never by shape alone."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from itertools import islice

import pytest
import torch
import torch.nn.functional as F
from test_engine_numerics import first_batch
from test_recipes import cut_config
from test_sr import sr_config
from torch import Tensor
from torch.func import functional_call

from translate.engine.trainer import Trainer
from translate.methods.sr import downscale, upscale_bicubic

G, D = "generator_loss", "discriminator_loss"  # the phases, by the recipe method that computes their loss


@dataclass
class Call:
    phase: str
    net: str
    x: Tensor  # the network's (first) input, a detached copy
    graph: bool  # whether that input carried a graph (a gradient could flow back through it)
    out: Tensor


class Wiring:
    """Records every forward call of the trainer's networks (but ``skip``) during ``step``, with the phase it came
    from, and each phase's loss terms."""

    def __init__(self, trainer: Trainer, skip: tuple[str, ...] = ()):
        self.trainer, self.calls, self.terms, self.phase = trainer, [], {}, None
        for name, net in trainer.nets.items():
            if name not in skip:
                net.register_forward_hook(partial(self._record, name))
        for loss in {phase.loss for phase in trainer.phases}:
            setattr(trainer.recipe, loss, partial(self._phase, loss, getattr(trainer.recipe, loss)))

    def _phase(self, loss, real, nets, batch, ctx):
        self.phase = loss
        try:
            terms = self.terms[loss] = real(nets, batch, ctx)
        finally:
            self.phase = None
        return terms

    def _record(self, name, module, args, out):
        if self.phase is not None:  # calls outside a phase (the tests' own) are not the recipe's
            x = args[0]
            self.calls.append(Call(self.phase, name, x.detach().clone(), x.requires_grad, out.detach().clone()))

    def step(self, batch: dict) -> dict:
        """One training step (every phase) on ``batch``, as the loop runs it; returns the phases' ctx."""
        self.calls, self.terms = [], {}
        with self.trainer.accelerator.accumulate():
            return self.trainer.train_step(batch)[1]

    def inputs(self, phase: str, net: str) -> list[Call]:
        return [c for c in self.calls if (c.phase, c.net) == (phase, net)]

    def output(self, net: str, x: Tensor, phase: str = G) -> Tensor:
        """What ``net`` returned, in ``phase``, for input ``x``."""
        for c in self.inputs(phase, net):
            if same(c.x, x):
                return c.out
        raise AssertionError(f"{phase}: {net} never received the expected input (it received shapes "
                             f"{[tuple(c.x.shape) for c in self.inputs(phase, net)]})")

    def check(self, expected: dict[tuple[str, str], dict[str, Tensor]]) -> None:
        """Each (phase, network) received exactly the named inputs, in any order, and no network was called in a
        phase that ``expected`` leaves out."""
        called = {(c.phase, c.net) for c in self.calls}
        assert called <= set(expected), f"calls nobody expected: {sorted(called - set(expected))}"
        for (phase, net), inputs in expected.items():
            left = self.inputs(phase, net)
            for label, x in inputs.items():
                found = next((i for i, c in enumerate(left) if same(c.x, x)), None)
                assert found is not None, f"{phase}: {net} never received {label}"
                left.pop(found)
            assert not left, f"{phase}: {net} also received {len(left)} unexpected input(s)"
        # G's phase sees fakes that G's gradient flows back through; D's phase sees none (fakes detached).
        assert all(not c.graph for c in self.calls if c.phase == D), "a discriminator phase input carries a graph"


def same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def says(prediction: Tensor, real: bool, gan_mode: str) -> Tensor:
    """How far D's raw output is from calling its input real (or fake): BCE with logits, or least squares."""
    target = torch.full_like(prediction, float(real))
    return {"vanilla": F.binary_cross_entropy_with_logits, "lsgan": F.mse_loss}[gan_mode](prediction, target)


def check_term(w: Wiring, phase: str, name: str, value: Tensor) -> None:
    """Loss term ``name`` of ``phase`` equals ``value``, the term computed by hand from the recorded tensors."""
    got = w.terms[phase][name].item()
    assert got == pytest.approx(value.item(), rel=1e-5, abs=1e-7), f"{name} = {got}, by hand {value.item()}"


def check_judged(w: Wiring, name: str, real: Tensor, fake: Tensor) -> None:
    """D ``name``'s phase: its real term is half the loss of calling ``real`` real, its fake term of calling ``fake``
    fake (the papers halve D's objective)."""
    mode = w.trainer.config.model.gan_mode
    check_term(w, D, f"loss_{name}_real", 0.5 * says(w.output(name, real, D), True, mode))
    check_term(w, D, f"loss_{name}_fake", 0.5 * says(w.output(name, fake, D), False, mode))


def check_fooled(w: Wiring, term: str, name: str, fake: Tensor, weight: float = 1.0) -> None:
    """G's adversarial ``term``: D ``name`` should call ``fake`` real."""
    check_term(w, G, term, weight * says(w.output(name, fake), True, w.trainer.config.model.gan_mode))


def l1(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).abs().mean()


def same_list(a: list[Tensor], b: list[Tensor]) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


# -- one test per recipe ------------------------------------------------------------------------------------------
def test_pix2pix_d_judges_input_output_pairs(tiny_config):
    # pix2pix_model.py: fake_AB = cat(real_A, fake_B); D(fake_AB) for G (no detach); D(fake_AB.detach()) and
    # D(cat(real_A, real_B)) for D; L1(fake_B, real_B) · lambda_L1.
    trainer = Trainer(tiny_config("pix2pix", "model.no_dropout=true"))
    w = Wiring(trainer)
    batch = first_batch(trainer)
    ctx = w.step(batch)
    A, B = batch["A"], batch["B"]
    fake_B = w.output("G", A)
    AB, A_fake_B = torch.cat([A, B], 1), torch.cat([A, fake_B], 1)
    w.check({(G, "G"): {"real_A": A},
             (G, "D"): {"cat(real_A, G(real_A))": A_fake_B},
             (D, "D"): {"cat(real_A, real_B)": AB, "cat(real_A, G(real_A))": A_fake_B}})
    assert all(c.graph for c in w.inputs(G, "D")), "G's adversarial term gets no gradient through D"
    check_fooled(w, "loss_G_GAN", "D", A_fake_B)
    check_term(w, G, "loss_G_L1", 100 * l1(fake_B, B))
    check_judged(w, "D", AB, A_fake_B)
    assert same_list(trainer.recipe.visuals(batch, ctx), [A, fake_B, B])


def test_cyclegan_each_d_judges_its_own_domain(tiny_config):
    # cycle_gan_model.py: fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A);
    # idt_A = G_A(B) vs B · lambda_B · lambda_identity, idt_B = G_B(A) vs A · lambda_A · lambda_identity;
    # G: D_A(fake_B), D_B(fake_A); D_A: real_B vs pooled fake_B, D_B: real_A vs pooled fake_A.
    # Different cycle weights, so that a swapped weight shows; no pool, so that D sees this step's fakes.
    trainer = Trainer(tiny_config("cyclegan", "model.cyclegan.pool_size=0", "model.cyclegan.lambda_A=3",
                                  "model.cyclegan.lambda_B=5"))
    w = Wiring(trainer)
    batch = first_batch(trainer)
    ctx = w.step(batch)
    A, B = batch["A"], batch["B"]
    fake_B, fake_A = w.output("G_A", A), w.output("G_B", B)
    w.check({(G, "G_A"): {"real_A": A, "G_B(real_B) (cycle B)": fake_A, "real_B (identity)": B},
             (G, "G_B"): {"real_B": B, "G_A(real_A) (cycle A)": fake_B, "real_A (identity)": A},
             (G, "D_A"): {"G_A(real_A)": fake_B},
             (G, "D_B"): {"G_B(real_B)": fake_A},
             (D, "D_A"): {"real_B": B, "G_A(real_A)": fake_B},
             (D, "D_B"): {"real_A": A, "G_B(real_B)": fake_A}})
    assert all(c.graph for c in w.inputs(G, "D_A") + w.inputs(G, "D_B")), "G gets no gradient through D"
    cycles = [c for c in w.inputs(G, "G_A") if same(c.x, fake_A)] + [c for c in w.inputs(G, "G_B") if same(c.x, fake_B)]
    assert all(c.graph for c in cycles), "a cycle is cut: the first generator gets no gradient through it"
    check_fooled(w, "loss_G_A", "D_A", fake_B)
    check_fooled(w, "loss_G_B", "D_B", fake_A)
    idt = 0.5
    check_term(w, G, "loss_cycle_A", 3 * l1(w.output("G_B", fake_B), A))
    check_term(w, G, "loss_cycle_B", 5 * l1(w.output("G_A", fake_A), B))
    check_term(w, G, "loss_idt_A", 5 * idt * l1(w.output("G_A", B), B))
    check_term(w, G, "loss_idt_B", 3 * idt * l1(w.output("G_B", A), A))
    check_judged(w, "D_A", B, fake_B)
    check_judged(w, "D_B", A, fake_A)
    assert same_list(trainer.recipe.visuals(batch, ctx), [A, fake_B, B, fake_A])


POOLED = {  # recipe -> (D, its real input, the fake its generator made this step), per batch and wiring
    "cyclegan": lambda b, w: [("D_A", b["B"], w.output("G_A", b["A"])), ("D_B", b["A"], w.output("G_B", b["B"]))],
    "pix2pix": lambda b, w: [("D", torch.cat([b["A"], b["B"]], 1), torch.cat([b["A"], w.output("G", b["A"])], 1))],
}


@pytest.mark.parametrize("recipe", sorted(POOLED))
def test_pooled_fakes_come_from_the_discriminators_own_generator(tiny_config, recipe):
    # With an image pool D also sees older fakes, but only ones that its own generator made (and for pix2pix, with
    # the input they were made from).
    trainer = Trainer(tiny_config(recipe, f"model.{recipe}.pool_size=2", "model.no_dropout=true"))
    w = Wiring(trainer)
    made, older = {}, 0
    for batch in islice(iter(trainer.loader), 6):
        w.step(batch)
        for name, real, fake in POOLED[recipe](batch, w):
            made.setdefault(name, []).append(fake)
            judged = [c.x for c in w.inputs(D, name) if not same(c.x, real)]
            assert len(judged) == 1, f"{name} did not judge real and fake once each"
            for image in judged[0]:
                steps = [t for t, f in enumerate(made[name]) if any(torch.equal(image, g) for g in f)]
                assert steps, f"{name} judged a fake that its generator never made"
                older += max(steps) < len(made[name]) - 1
    assert older > 0, "the pool never gave back an older fake: the test saw nothing"


def test_dcgan_d_judges_real_images_against_g_of_noise(dcgan_config, tmp_path):
    trainer = Trainer(dcgan_config(tmp_path / "run"))
    w = Wiring(trainer)
    batch = first_batch(trainer)
    w.step(batch)
    real = batch["A"]
    (g,) = w.inputs(G, "G")
    assert g.x.shape == (len(real), trainer.config.model.dcgan.nz) and not g.graph  # G maps latents
    fake = g.out
    w.check({(G, "G"): {"z": g.x}, (G, "D"): {"G(z)": fake}, (D, "D"): {"real": real, "G(z)": fake}})
    assert all(c.graph for c in w.inputs(G, "D")), "G's adversarial term gets no gradient through D"
    check_fooled(w, "loss_G_GAN", "D", fake)
    check_judged(w, "D", real, fake)


@pytest.fixture
def hr_like_root(unpaired_root):
    """A folder of 32² images for the super-resolution recipe (its own crops are 32² in these tests)."""
    return unpaired_root / "trainA"


def test_sr_d_judges_the_high_res_crop_against_g_of_its_downscale(hr_like_root, tmp_path):
    trainer = Trainer(sr_config(hr_like_root, tmp_path))
    w = Wiring(trainer)
    batch = first_batch(trainer)
    ctx = w.step(batch)
    hr = batch["A"]  # 32² crops: already multiples of 4
    lr = downscale(hr)
    fake = w.output("G", lr)
    assert fake.shape == hr.shape
    w.check({(G, "G"): {"downscale(hr)": lr}, (G, "D"): {"G(lr)": fake}, (D, "D"): {"hr": hr, "G(lr)": fake}})
    assert all(c.graph for c in w.inputs(G, "D")), "G's adversarial term gets no gradient through D"
    o = trainer.config.model.sr
    check_term(w, G, "loss_G_L1", o.lambda_L1 * l1(fake, hr))
    check_fooled(w, "loss_G_GAN", "D", fake, o.lambda_GAN)
    check_judged(w, "D", hr, fake)
    assert same_list(trainer.recipe.visuals(batch, ctx), [upscale_bicubic(lr), fake, hr])


# -- CUT and FastCUT: PatchNCE through the recipe's own patch sampling ------------------------------------------------
def layer_features(G_module, state: dict, x: Tensor, layers: list[int]) -> list[Tensor]:
    """G's outputs of ``layers`` (indices into G.model) during one whole forward of ``x`` with weights ``state``."""
    feats, hooks = {}, [G_module.model[i].register_forward_hook(
        lambda m, a, out, i=i: feats.setdefault(i, out)) for i in layers]
    try:
        with torch.no_grad():
            functional_call(G_module, state, (x,))
    finally:
        for h in hooks:
            h.remove()
    return [feats[i] for i in layers]


def embedded(F_module, state: dict, layer: int, feat: Tensor) -> Tensor:
    """(batch, C, H, W) -> (batch, H·W, nc): F's MLP of ``layer`` at every location, L2-normalised."""
    prefix = f"mlps.{layer}."
    params = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    with torch.no_grad():
        return F.normalize(functional_call(F_module.mlps[layer], params, (feat.flatten(2).transpose(1, 2),)), dim=-1)


def at(rows: Tensor, table: Tensor) -> Tensor:
    """(batch, P, d) rows and (batch, L, d) locations -> (batch, P, L): where each row equals a location's value."""
    return (rows[:, :, None] - table[:, None]).abs().amax(-1) < 1e-5


@pytest.mark.parametrize("recipe", ["cut", "fastcut"])
def test_cut_queries_and_keys_are_taken_at_the_same_places(tiny_config, monkeypatch, recipe):
    # cut_model.py: fake = G(cat(real_A, real_B)) (CUT: nce_idt) or G(real_A) (FastCUT), the input flipped at random
    # under flip_equivariance; fake_B = fake[:n] goes to D. NCE(src, tgt): keys from G's features of src (real_A;
    # real_B for NCE_Y), queries from G's features of tgt (fake_B; idt_B = fake[n:]), flipped back when the input
    # was flipped, sampled at the keys' patch ids; mean over layers · lambda_NCE (CUT: both halved).
    import translate.methods.cut as cut

    trainer = Trainer(cut_config(tiny_config, recipe))
    o = getattr(trainer.config.model, recipe)
    G_net, F_net = trainer.nets["G"], trainer.nets["F"]
    nce_calls = []

    def recording(q, k, temperature):
        value = real_nce(q, k, temperature)
        nce_calls.append((q.detach().clone(), k.detach().clone(), value.detach()))
        return value

    real_nce = cut.patch_nce_loss
    monkeypatch.setattr(cut, "patch_nce_loss", recording)
    w = Wiring(trainer, skip=("F",))
    orientations = set()
    for batch in islice(iter(trainer.loader), 6 if o.flip_equivariance else 1):
        nce_calls.clear()
        # G and F as this step's G phase uses them (its optimizer step comes after).
        G_state = {k: v.clone() for k, v in G_net.state_dict().items()}
        F_state = {k: v.clone() for k, v in F_net.state_dict().items()}
        ctx = w.step(batch)
        A, B = batch["A"], batch["B"]
        n = len(A)
        real = torch.cat([A, B]) if o.nce_idt else A
        (g,) = w.inputs(G, "G")
        flipped = o.flip_equivariance and same(g.x, real.flip(3))
        orientations.add(flipped)
        fake_B = g.out[:n]
        w.check({(G, "G"): {"flip(real)" if flipped else "real": real.flip(3) if flipped else real},
                 (G, "D"): {"G(real)[:n]": fake_B}, (D, "D"): {"real_B": B, "G(real)[:n]": fake_B}})
        assert all(c.graph for c in w.inputs(G, "D")), "G's adversarial term gets no gradient through D"
        check_fooled(w, "loss_G_GAN", "D", fake_B, o.lambda_GAN)
        check_judged(w, "D", B, fake_B)
        assert same_list(trainer.recipe.visuals(batch, ctx), [A, fake_B, B])

        # Each PatchNCE call: find the layer and source whose F-embedded features hold every key row, then each
        # query row must be F's embedding of the output's features (flipped back) at the same place as its key.
        pairs = {"real_A": (A, fake_B)} | ({"real_B": (B, g.out[n:])} if o.nce_idt else {})
        tables = {}
        for source, (image, output) in pairs.items():
            keys = layer_features(G_net, G_state, image, o.nce_layers)
            queries = layer_features(G_net, G_state, output, o.nce_layers)
            if flipped:
                queries = [f.flip(3) for f in queries]
            for layer, (k, q) in enumerate(zip(keys, queries)):
                tables[layer, source] = (embedded(F_net, F_state, layer, k), embedded(F_net, F_state, layer, q))
        found = {}
        for q, k, value in nce_calls:
            where = {key: at(k, kt) for key, (kt, _) in tables.items() if kt.shape[0] == k.shape[0]}
            matches = [key for key, m in where.items() if m.any(-1).all()]
            assert len(matches) == 1, f"PatchNCE keys that are no input's features at one layer: {matches}"
            (key,) = matches
            assert (where[key] & at(q, tables[key][1])).any(-1).all(), \
                f"{key}: a query is not the output's feature at its key's place"
            assert key not in found, f"PatchNCE ran twice on {key}"
            found[key] = value
        assert set(found) == set(tables)
        layers, half = len(o.nce_layers), 0.5 if o.nce_idt else 1.0
        nce_A = sum(found[i, "real_A"] for i in range(layers)) / layers
        check_term(w, G, "loss_NCE", half * o.lambda_NCE * nce_A)
        if o.nce_idt:
            nce_B = sum(found[i, "real_B"] for i in range(layers)) / layers
            check_term(w, G, "loss_NCE_Y", half * o.lambda_NCE * nce_B)
        if orientations == {False, True}:
            break
    if o.flip_equivariance:
        assert orientations == {False, True}, "six steps were not enough to see a flipped and an unflipped input"
