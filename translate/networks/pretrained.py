"""The exported model directory: ``config.json`` + one ``<paper name>.safetensors`` per generator, never pickle.

Written by the trainer (``run/model``) and by the reference-checkpoint importer; read by ``Translator``, ``Sampler``,
``translate eval``/``export``/``report`` and by ``train.init_from``. ``config.json`` is a ``ModelDescription``
(``translate.networks.description``): everything needed to rebuild and use the generators.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save
from torch import nn

from translate.fileio import atomic_directory
from translate.networks import create_generator
from translate.networks.description import FORMAT_VERSION, NORMALIZATION, ModelDescription, describe, read_config

__all__ = ["FORMAT_VERSION", "NORMALIZATION", "build_generator", "describe", "generator_spec", "load_pretrained",
           "read_config", "save_pretrained"]


def generator_spec(netG: str, ngf: int, norm: str, use_dropout: bool, input_nc: int, output_nc: int,
                   upsample: str = "transpose", residual: bool = False) -> dict:
    spec = {"netG": netG, "ngf": ngf, "norm": norm, "use_dropout": use_dropout,
            "input_nc": input_nc, "output_nc": output_nc, "upsample": upsample}
    if residual:  # only then: an older translate, which cannot build it, refuses the spec instead of ignoring it
        spec["residual"] = True
    return spec


def build_generator(spec: dict) -> nn.Module:
    """Rebuild a generator, uninitialised, from its spec: ``{"netG": name, **its builder's keyword arguments}``."""
    options = {k: v for k, v in spec.items() if k != "netG"}
    # upsample="transpose" is every image builder's default (and what specs written before model.upsample meant):
    # only another choice is passed on, so generators registered without an ``upsample`` argument keep loading.
    if options.get("upsample") == "transpose":
        del options["upsample"]
    return create_generator(spec["netG"], **options, init_type=None)


def save_pretrained(directory: str | Path, generators: dict[str, nn.Module], meta: dict | ModelDescription) -> Path:
    """Write the model directory atomically (temp dir, then rename), readable as the umask allows (not 0700, which
    would lock colleagues out of a shared model). ``meta``: a description, or the content of its ``config.json``
    (at least ``generators`` specs and ``directions`` ({"AtoB": "G_A", ...}), then whatever the model should
    carry: recipe, step, training config...), from which the kind, scale and channels are derived."""
    description = meta if isinstance(meta, ModelDescription) else ModelDescription.from_config(meta)
    directory = Path(directory)
    missing = set(generators) - set(description.generators)
    if missing:
        raise ValueError(f"no architecture given for generators {sorted(missing)}")
    with atomic_directory(directory) as tmp:
        for name, net in generators.items():
            state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            # save() and a plain write: safetensors' save_file creates its files 0600, whatever the umask.
            (tmp / f"{name}.safetensors").write_bytes(save(state, metadata={"format": "pt"}))
        (tmp / "config.json").write_text(json.dumps(description.to_json(), indent=2) + "\n")
    return directory


def load_pretrained(directory: str | Path | ModelDescription,
                    names: list[str] | None = None) -> tuple[dict, dict[str, nn.Module]]:
    """Rebuild the generators of a model directory (or of its description) with their weights, in eval mode:
    (its config.json content, {name: generator})."""
    description = describe(directory)
    nets = {}
    for name in names or list(description.generators):
        net = build_generator(description.generators[name])
        weights = description.directory / f"{name}.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing from the model directory")
        net.load_state_dict(load_file(weights))
        nets[name] = net.eval()
    return description.config, nets
