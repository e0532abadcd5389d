"""The exported model directory: ``config.json`` + one ``<paper name>.safetensors`` per generator, never pickle.

Written by the trainer (``run/model``) and by the reference-checkpoint importer; read by ``Translator`` and by
``train.init_from``. Everything needed to rebuild the generators is in ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save
from torch import nn

from translate.fileio import atomic_directory
from translate.networks import create_generator

FORMAT_VERSION = 1
# Generators see images in [-1, 1]: x * 2 - 1 from [0, 1], as in the reference's Normalize((0.5,), (0.5,)).
NORMALIZATION = {"mean": 0.5, "std": 0.5}


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


def save_pretrained(directory: str | Path, generators: dict[str, nn.Module], meta: dict) -> Path:
    """Write the model directory atomically (temp dir, then rename), readable as the umask allows (not 0700, which
    would lock colleagues out of a shared model); ``meta`` must hold ``generators`` specs and
    ``directions`` ({"AtoB": "G_A", ...}); format and library versions are added here."""
    from translate import __version__

    directory = Path(directory)
    missing = set(generators) - set(meta["generators"])
    if missing:
        raise ValueError(f"no architecture given for generators {sorted(missing)}")
    config = {"format_version": FORMAT_VERSION, "translate_version": __version__, "normalization": NORMALIZATION,
              **meta}
    with atomic_directory(directory) as tmp:
        for name, net in generators.items():
            state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            # save() and a plain write: safetensors' save_file creates its files 0600, whatever the umask.
            (tmp / f"{name}.safetensors").write_bytes(save(state, metadata={"format": "pt"}))
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def read_config(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        hint = " (a training run directory holds it in model/)" if (directory / "checkpoints").is_dir() else ""
        raise FileNotFoundError(f"{directory} is not a translate model directory: no config.json{hint}")
    config = json.loads(path.read_text())
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {config['format_version']}; this translate reads up to "
                         f"{FORMAT_VERSION}: upgrade translate")
    return config


def load_pretrained(directory: str | Path, names: list[str] | None = None) -> tuple[dict, dict[str, nn.Module]]:
    """Rebuild the generators of a model directory with their weights, in eval mode."""
    directory = Path(directory)
    config = read_config(directory)
    nets = {}
    for name in names or list(config["generators"]):
        net = build_generator(config["generators"][name])
        weights = directory / f"{name}.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing from the model directory")
        net.load_state_dict(load_file(weights))
        nets[name] = net.eval()
    return config, nets
