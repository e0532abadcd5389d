"""DCGAN: the networks against pytorch/examples' (sizes, parameter counts, init), the built-in digits, the registry."""

import numpy as np
import pytest
import torch
from torch import nn

from translate.networks import GENERATORS, create_generator, init_weights
from translate.networks.dcgan import DCGANDiscriminator, plan
from translate.networks.pretrained import build_generator

# pytorch/examples dcgan (and the PyTorch DCGAN tutorial) at nz 100, ngf = ndf = 64, 3 channels, 64²: printed there
# as 3,576,704 (G) and 2,765,568 (D) parameters.
EXAMPLES_G, EXAMPLES_D = 3_576_704, 2_765_568


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_parameter_counts_match_pytorch_examples():
    assert n_params(create_generator("dcgan", init_type=None)) == EXAMPLES_G
    assert n_params(DCGANDiscriminator()) == EXAMPLES_D


def test_layers_at_64_follow_the_paper():
    g = create_generator("dcgan", init_type=None).main
    convs = [m for m in g if isinstance(m, nn.ConvTranspose2d)]
    # 100 → 512 at 4², 256 at 8², 128 at 16², 64 at 32², 3 at 64²; no biases (batch norm follows)
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == \
        [(100, 512, 4, 1), (512, 256, 4, 2), (256, 128, 4, 2), (128, 64, 4, 2), (64, 3, 4, 2)]
    assert all(c.bias is None for c in convs) and isinstance(g[-1], nn.Tanh)
    d = DCGANDiscriminator().main
    # No batch norm after the first convolution, LeakyReLU 0.2, one logit from the 4² map, no pooling.
    assert isinstance(d[1], nn.LeakyReLU) and d[1].negative_slope == 0.2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d) == 3
    assert not any(isinstance(m, nn.MaxPool2d | nn.AvgPool2d | nn.Linear) for m in d)


@pytest.mark.parametrize(("size", "base", "doublings"), [(64, 4, 4), (32, 4, 3), (28, 7, 2), (48, 6, 3)])
def test_sizes(size, base, doublings):
    assert plan(size) == (base, doublings)
    g = create_generator("dcgan", nz=10, ngf=4, output_nc=1, image_size=size)
    d = DCGANDiscriminator(1, 4, size)
    y = g(torch.randn(3, 10))
    assert y.shape == (3, 1, size, size) and y.abs().max() <= 1
    assert d(y).shape == (3, 1, 1, 1)
    d(y).mean().backward()
    assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize("size", [27, 100, 4, 8 * 9])
def test_unsupported_sizes_are_one_line(size):
    with pytest.raises(ValueError, match=f"image_size {size} is not 4..7 times a power of two"):
        plan(size)


def test_init_is_normal_002_and_batch_norm_around_one():
    torch.manual_seed(0)
    g = create_generator("dcgan")
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    gammas = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(weights.mean().item()) < 1e-3 and abs(weights.std().item() - 0.02) < 1e-3
    assert abs(gammas.mean().item() - 1) < 5e-3 and abs(gammas.std().item() - 0.02) < 5e-3
    init_weights(DCGANDiscriminator())  # the shared initialiser covers D too


def test_registered_as_noise_and_rebuilt_from_its_spec():
    assert GENERATORS["dcgan"].kind == "noise"
    spec = {"netG": "dcgan", "nz": 12, "ngf": 4, "output_nc": 1, "image_size": 28}
    net = build_generator(spec)
    assert (net.nz, net.image_size) == (12, 28) and net(torch.randn(2, 12)).shape == (2, 1, 28, 28)


def test_digits_builtin():
    from PIL import ImageFont

    from translate.data.builtin import BUILTINS, MODES, _digit

    assert MODES["digits"] == "single" and "digits" in BUILTINS
    font = ImageFont.load_default(80)
    a = [_digit(d, np.random.default_rng(0), font) for d in range(10)]
    assert all(x.shape == (28, 28) and x.dtype == np.uint8 for x in a)
    # White strokes on black, the border left dark as in MNIST, and the ten digits look different.
    assert all(x.max() == 255 and x[[0, -1]].max() < 64 for x in a)
    assert min(np.abs(a[i].astype(int) - a[j]).mean() for i in range(10) for j in range(i)) > 3
    # Deterministic: the same seed stream gives the same pixels.
    np.testing.assert_array_equal(_digit(3, np.random.default_rng(1), font), _digit(3, np.random.default_rng(1), font))


# -- the recipe, end to end on tiny data --------------------------------------------------------------------------
def test_paper_defaults(digits_root):
    import translate.methods.dcgan  # noqa: F401
    from translate.config import load_config

    c = load_config(None, ["model.recipe=dcgan", f"data.root={digits_root}"])
    assert (c.model.netG, c.model.norm, c.model.gan_mode, c.model.dcgan.nz) == ("dcgan", "batch", "vanilla", 100)
    assert (c.train.lr, c.train.beta1, c.data.batch_size, c.data.crop_size) == (0.0002, 0.5, 128, 64)


def test_trains_exports_and_samples(dcgan_config, tmp_path):
    from PIL import Image

    from translate.engine.trainer import train
    from translate.inference.sampler import Sampler
    from translate.inference.translator import Translator

    run = train(dcgan_config(tmp_path / "run"))
    sampler = Sampler.from_pretrained(run / "model")
    assert (sampler.nz, sampler.spec["image_size"]) == (16, 28)
    assert [im.size for im in sampler(3, seed=0)] == [(28, 28)] * 3
    with pytest.raises(ValueError, match="generates from noise"):
        Translator.from_pretrained(run / "model")
    # The fixed-latent grid: 32 samples as 8 columns of 4 rows, 28 px + 2 px padding each.
    assert Image.open(run / "samples" / "step_000002.png").size == (8 * 30 + 2, 4 * 30 + 2)


def test_n_critic_steps_see_new_samples(dcgan_config, tmp_path):
    from translate.engine.trainer import Trainer

    trainer = Trainer(dcgan_config(tmp_path / "run", "model.gan_mode=wgangp", "model.n_critic=3"))
    batch = next(iter(trainer.loader))
    seen = []
    trainer.nets["D"].register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    terms, ctx, _ = trainer.train_step(batch)
    assert ctx["critic_steps"] == 3 and {"loss_D_gp", "loss_G_GAN"} <= set(terms)
    # The critic has no batch norm under WGAN-GP (its penalty is per sample).
    assert not any(isinstance(m, nn.BatchNorm2d) for m in trainer.nets["D"].modules())
    # D calls: G's adversarial term, then per critic step reals, fakes and the penalty's interpolates: the fakes
    # of the three critic steps differ.
    fakes = [seen[2 + 3 * k] for k in range(3)]
    assert not torch.equal(fakes[0], fakes[1]) and not torch.equal(fakes[1], fakes[2])


@pytest.mark.slow
@pytest.mark.parametrize("options", [["model.gan_mode=lsgan"], ["model.gan_mode=hinge", "model.spectral_norm=true"],
                                     ["model.minibatch_stddev=true", "model.r1_gamma=1", "model.r1_every=2"]])
def test_shared_losses_and_d_layers_train(dcgan_config, tmp_path, options):
    import json

    from translate.engine.trainer import train

    run = train(dcgan_config(tmp_path / "run", *options))
    rows = [json.loads(line) for line in (run / "logs" / "losses.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(v) for row in rows for v in row.values() if isinstance(v, float))
