"""Every registered network: shape, parameter count at the default width (the reference's), gradients, finiteness."""

import pytest
import torch

from translate.networks import DISCRIMINATORS, GENERATORS, create_discriminator, create_generator, init_weights
from translate.networks.generators import ResizeConv2d, up_conv
from translate.networks.pretrained import build_generator, generator_spec, load_pretrained, save_pretrained

# Measured from the reference implementation at ngf = ndf = 64.
GENERATOR_PARAMS = {
    ("resnet_9blocks", "instance"): 11_378_179,
    ("resnet_9blocks", "batch"): 11_383_427,
    ("resnet_6blocks", "instance"): 7_837_699,
    ("unet_256", "batch"): 54_413_955,
    ("unet_256", "instance"): 54_409_603,
    ("unet_128", "batch"): 41_828_995,
}
DISCRIMINATOR_PARAMS = {
    ("basic", 3, "instance"): 2_764_737,
    ("basic", 6, "batch"): 2_768_705,
    ("n_layers", 3, "instance"): 2_764_737,  # n_layers_D=3 is `basic`
    ("pixel", 3, "instance"): 8_705,
}


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(("name", "norm"), list(GENERATOR_PARAMS))
def test_generator_parameter_count_matches_reference(name, norm):
    net = create_generator(name, norm=norm, ngf=64, init_type=None)
    assert n_params(net) == GENERATOR_PARAMS[name, norm]


@pytest.mark.parametrize(("name", "nc", "norm"), list(DISCRIMINATOR_PARAMS))
def test_discriminator_parameter_count_matches_reference(name, nc, norm):
    net = create_discriminator(name, input_nc=nc, ndf=64, n_layers=3, norm=norm, init_type=None)
    assert n_params(net) == DISCRIMINATOR_PARAMS[name, nc, norm]


# Same-size image translators; the noise (dcgan) and ×4 (sr_*) generators have their own tests (test_dcgan.py,
# test_sr.py).
TRANSLATION = sorted(n for n, e in GENERATORS.items() if e.kind == "image" and e.scale == 1)


def test_every_registered_network_is_covered():
    assert {n for n, _ in GENERATOR_PARAMS} == set(TRANSLATION)
    assert {n for n, _, _ in DISCRIMINATOR_PARAMS} == set(DISCRIMINATORS)


@pytest.mark.parametrize("name", TRANSLATION)
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_generator_shape_gradients_finite(name, norm):
    torch.manual_seed(0)
    size = GENERATORS[name].min_size if GENERATORS[name].min_size > 8 else 36
    net = create_generator(name, input_nc=1, output_nc=3, ngf=4, norm=norm, use_dropout=True)
    x = torch.rand(2, 1, size, size) * 2 - 1
    y = net(x)
    assert y.shape == (2, 3, size, size)
    assert torch.isfinite(y).all() and y.abs().max() <= 1
    y.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
@pytest.mark.parametrize("n_layers", [1, 3, 4])
def test_discriminator_shape_gradients_finite(name, n_layers):
    torch.manual_seed(0)
    net = create_discriminator(name, input_nc=6, ndf=4, n_layers=n_layers, norm="instance")
    out = net(torch.randn(2, 6, 64, 64))
    assert out.shape[:2] == (2, 1) and torch.isfinite(out).all()
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_basic_patchgan_output_is_30x30_at_256():
    # 70×70 receptive field, 30×30 patches on a 256² image, as in the paper.
    net = create_discriminator("basic", ndf=4, norm="batch")
    assert net(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_types(init_type):
    torch.manual_seed(0)
    net = init_weights(create_generator("resnet_6blocks", ngf=4, norm="batch", init_type=None), init_type, 0.02)
    conv = net.model[1]
    assert torch.isfinite(conv.weight).all() and conv.weight.std() > 0
    if init_type == "normal":
        assert abs(conv.weight.std().item() - 0.02) < 0.005


def test_unknown_network_lists_the_registered_ones():
    with pytest.raises(KeyError, match="resnet_9blocks"):
        create_generator("resnet_99blocks")


def test_user_registered_generator_is_buildable():
    from translate import register_generator

    @register_generator("tiny_test_net", stride=1)
    def tiny(input_nc, output_nc, ngf, norm, use_dropout):
        return torch.nn.Conv2d(input_nc, output_nc, 1)

    try:
        assert create_generator("tiny_test_net", ngf=1)(torch.zeros(1, 3, 5, 5)).shape == (1, 3, 5, 5)
    finally:
        del GENERATORS["tiny_test_net"]


# ---- model.upsample=resize_conv (Odena et al. 2016) --------------------------------------------------------------

def up_convs(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d | ResizeConv2d)]


@pytest.mark.parametrize("name", ["resnet_6blocks", "resnet_9blocks", "unet_128", "unet_256"])
def test_resize_conv_replaces_the_transposed_convolutions(name):
    size = max(GENERATORS[name].min_size, 32)
    kwargs = {"input_nc": 1, "output_nc": 3, "ngf": 4, "norm": "instance"}
    reference, resized = create_generator(name, **kwargs), create_generator(name, upsample="resize_conv", **kwargs)
    # Every one, except the U-Net's innermost (the first met): its input is one pixel, whose resize would be flat.
    kept = 1 if name.startswith("unet") else 0
    n = len(up_convs(reference))
    assert [type(m) for m in up_convs(resized)] == [torch.nn.ConvTranspose2d] * kept + [ResizeConv2d] * (n - kept)
    # The same place in the module tree: keys are the reference's, only the up-convolutions' shapes differ.
    assert list(resized.state_dict()) == list(reference.state_dict())
    # Each k×k transposed convolution (in→out) becomes a 3×3 convolution (in→out): k² − 9 fewer weights per pair.
    saved = sum(m.in_channels * m.out_channels * (m.kernel_size[0] ** 2 - 9) for m in up_convs(reference)[kept:])
    assert n_params(reference) - n_params(resized) == saved
    x = torch.rand(2, 1, size, size) * 2 - 1
    y = resized(x)
    assert y.shape == (2, 3, size, size) and torch.isfinite(y).all()
    y.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in resized.parameters())


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_resize_conv_unet_still_uses_its_bottleneck(norm):
    # A flat 2×2 map out of the innermost level would be zeroed by the norm after it: the bottleneck's weights
    # would then change nothing.
    from translate.networks.generators import UnetSkipConnectionBlock

    torch.manual_seed(0)
    net = create_generator("unet_128", ngf=4, norm=norm, upsample="resize_conv")
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    before = net(x)
    innermost = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)][-1]
    with torch.no_grad():
        innermost.model[1].weight.normal_(0, 1)
    assert (net(x) - before).abs().max() > 1e-3


def test_resize_conv_is_nearest_upsampling_then_a_reflect_padded_convolution():
    torch.manual_seed(0)
    conv = ResizeConv2d(4, 2)
    x = torch.randn(1, 4, 5, 6)
    up = x.repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest ×2 by hand
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(up, (1, 1, 1, 1), mode="reflect"), conv.weight,
                                          conv.bias)
    assert torch.allclose(conv(x), expected, atol=1e-6)


def test_resize_conv_has_no_checkerboard_on_a_flat_input():
    # A transposed convolution with stride 2 gives the four output phases different kernel taps, so a flat input
    # comes out as a periodic 2×2 pattern; resize + convolution gives every phase the same taps.
    torch.manual_seed(0)
    transposed = up_conv(3, 3, 3, "transpose", padding=1, output_padding=1)
    resized = up_conv(3, 3, 3, "resize_conv")
    x = torch.ones(1, 3, 8, 8)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the borders
    assert transposed(x)[inner].std((2, 3)).min() > 1e-3  # per channel
    assert resized(x)[inner].std((2, 3)).max() < 1e-6


@pytest.mark.parametrize("upsample", ["transpose", "resize_conv"])
def test_upsample_survives_the_export(tmp_path, upsample):
    net = create_generator("resnet_6blocks", ngf=4, norm="instance", upsample=upsample).eval()
    spec = generator_spec("resnet_6blocks", 4, "instance", False, 3, 3, upsample)
    save_pretrained(tmp_path / "model", {"G": net}, {"generators": {"G": spec}, "directions": {"AtoB": "G"}})
    _, loaded = load_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "config.json").read_text().count(f'"upsample": "{upsample}"') == 1
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded["G"](x), net(x))


def test_specs_without_upsample_build_transposed_convolutions():
    spec = generator_spec("unet_128", 4, "batch", False, 3, 3)
    del spec["upsample"]  # a model exported before the option existed
    assert all(isinstance(m, torch.nn.ConvTranspose2d) for m in up_convs(build_generator(spec)))


# ---- model.residual: a generator that starts as the identity ------------------------------------------------------

@pytest.mark.parametrize("name,upsample", [("resnet_6blocks", "transpose"), ("unet_128", "resize_conv"),
                                           ("unet_128", "transpose")])
def test_residual_generator_starts_as_the_identity_with_the_reference_keys(name, upsample):
    torch.manual_seed(0)
    kwargs = {"ngf": 4, "norm": "instance", "upsample": upsample}
    net, reference = create_generator(name, residual=True, **kwargs), create_generator(name, **kwargs)
    assert list(net.state_dict()) == list(reference.state_dict())
    x = torch.randint(0, 256, (2, 3, 128, 128)).float() / 127.5 - 1  # 8-bit images, the ends included
    # Every 8-bit value comes back as itself once quantised, though init_weights ran over the whole network.
    assert torch.equal(((net(x) + 1) * 127.5).round(), ((x + 1) * 127.5).round())
    # One Adam step on a loss that wants every pixel darker moves every pixel down: the change is learnt.
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    net(x).mean().backward()
    optimizer.step()
    assert (net(x) < x - 1e-4).float().mean() > 0.99


def test_residual_output_is_tanh_of_the_input_s_atanh_plus_the_change():
    from translate.networks.generators import residual_output

    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    r = torch.tensor([0.3, -0.2, 1.0, 0.0, -2.0])
    # By hand: atanh(0.5) = 0.549306; ±1 enter as ±0.999, atanh(0.999) = 3.800201.
    expected = torch.tanh(torch.tensor([-3.800201 + 0.3, -0.549306 - 0.2, 1.0, 0.549306, 3.800201 - 2.0]))
    assert torch.allclose(residual_output(x, r), expected, atol=1e-5)


def test_residual_generator_survives_the_export(tmp_path):
    torch.manual_seed(0)
    net = create_generator("unet_128", ngf=4, norm="instance", residual=True)
    with torch.no_grad():  # away from the identity, so a loaded plain U-Net would differ
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    spec = generator_spec("unet_128", 4, "instance", False, 3, 3, residual=True)
    save_pretrained(tmp_path / "model", {"G": net.eval()}, {"generators": {"G": spec}, "directions": {"AtoB": "G"}})
    _, loaded = load_pretrained(tmp_path / "model")
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    assert torch.equal(loaded["G"](x), net(x))
    assert "residual" not in generator_spec("unet_128", 4, "instance", False, 3, 3)  # old specs stay as they were


def test_residual_generator_needs_as_many_outputs_as_inputs():
    with pytest.raises(ValueError, match="residual needs as many output channels as input channels, not 1 -> 3"):
        create_generator("resnet_6blocks", input_nc=1, output_nc=3, ngf=4, residual=True)
