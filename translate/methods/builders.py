"""The networks recipes build from the shared ``model.*`` keys: ``model.netG`` and ``model.netD`` with their common
options, and the spec a generator is exported with. Recipe files import them from ``translate.methods``."""

from __future__ import annotations

from torch import nn


def build_discriminator(config, input_nc: int) -> nn.Module:
    """``model.netD`` with the D options every recipe shares (see ``with_d_options``)."""
    from translate.networks import create_discriminator

    m = config.model
    return with_d_options(config, create_discriminator(m.netD, input_nc=input_nc, ndf=m.ndf, n_layers=m.n_layers_D,
                                                       norm=m.norm, init_type=m.init_type, init_gain=m.init_gain))


def with_d_options(config, net: nn.Module) -> nn.Module:
    """Any discriminator with ``model.minibatch_stddev`` (a stddev channel before its last layer) and
    ``model.spectral_norm`` (on its convolutions)."""
    from translate.networks.layers import add_minibatch_stddev, apply_spectral_norm

    m = config.model
    if m.minibatch_stddev:
        net = add_minibatch_stddev(net)
    if m.spectral_norm:
        net = apply_spectral_norm(net)
    return net


def build_generator(config, input_nc: int, output_nc: int) -> nn.Module:
    """``model.netG`` with the shared generator options."""
    from translate.networks import create_generator

    m = config.model
    # Only options away from their defaults are passed, so generators registered without them still build.
    options = {} if m.upsample == "transpose" else {"upsample": m.upsample}
    if m.residual:
        options["residual"] = True
    return create_generator(m.netG, input_nc=input_nc, output_nc=output_nc, ngf=m.ngf, norm=m.norm,
                            use_dropout=not m.no_dropout, init_type=m.init_type, init_gain=m.init_gain, **options)


def image_spec(config, input_nc: int, output_nc: int) -> dict:
    """The exported spec of a ``build_generator`` network."""
    from translate.networks.pretrained import generator_spec

    m = config.model
    return generator_spec(m.netG, m.ngf, m.norm, not m.no_dropout, input_nc, output_nc, m.upsample, m.residual)
