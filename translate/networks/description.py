"""What a model directory holds, read once: ``describe(directory)`` → a ``ModelDescription`` (its kind, generators,
directions, scale, channels, normalisation and the ``config.json`` it came from), which every consumer takes.

What a kind of model does differently (what its generators take, which command runs it, how ``translate eval`` and
the report treat it) is declared in ``MODEL_KINDS``, here and nowhere else: a new kind is a row there plus its own
files. ``config.json`` states the kind from format 2 on; older directories (and new ones being described for
export) get it derived here from the generator registry.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from translate.networks import GENERATORS

FORMAT_VERSION = 2  # 2: config.json states kind, scale, input_nc and output_nc
# Generators see images in [-1, 1]: x * 2 - 1 from [0, 1], as in the reference's Normalize((0.5,), (0.5,)).
NORMALIZATION = {"mean": 0.5, "std": 0.5}


@dataclass(frozen=True)
class Kind:
    """What one kind of model does differently from the others."""

    takes: str  # what its generators take: "image" (Translator, translate convert) or "noise" (Sampler)
    upscales: bool  # its output is larger than its input
    does: str  # for messages: "this model <does>"
    command: str  # the command that runs it
    evaluator: str  # "module:function(description, data, **options) -> Evaluation" that `translate eval` runs
    # (a name, imported when used: evaluation sits above the networks)
    report: str  # "grids": sample grids and a test gallery; "strip": the samples of fixed latents over time, with
    # the collapse watch's metrics, no gallery

    def evaluate(self, *args, **options):
        module, _, name = self.evaluator.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **options)


_EVALUATE = "translate.evaluation.evaluate"
MODEL_KINDS: dict[str, Kind] = {
    "translation": Kind("image", False, "translates images", "translate convert", f"{_EVALUATE}:evaluate_translation",
                        "grids"),
    "super-resolution": Kind("image", True, "upscales images", "translate convert", f"{_EVALUATE}:evaluate_upscaling",
                             "grids"),
    "noise": Kind("noise", False, "generates from noise", "translate sample", f"{_EVALUATE}:evaluate_samples", "strip"),
}


@dataclass(frozen=True)
class ModelDescription:
    """One model directory, as read (``describe``) or about to be written (``pretrained.save_pretrained``)."""

    kind: str  # a key of MODEL_KINDS
    generators: dict[str, dict]  # name → spec ({"netG": registry name, **its builder's keyword arguments})
    directions: dict[str, str]  # "AtoB" → generator name; empty for a noise model
    scale: int = 1  # output side / input side
    input_nc: int | None = 3  # channels of the (first direction's) generator; None: it takes latents
    output_nc: int = 3
    norm_mode: str = "eval"  # "train": batch statistics at test time (imported reference models, test.py)
    normalize: dict | None = None  # data normalisation of the model's images; None: NORMALIZATION
    config: dict = field(default_factory=dict, repr=False)  # config.json's content (recipe, step, training config)
    directory: Path | None = None

    @classmethod
    def from_config(cls, config: dict, directory: str | Path | None = None) -> ModelDescription:
        """The description of a ``config.json`` content: the fields it states are taken, the others (every one
        before format 2, and a new model's) derived from its generators' registry entries."""
        generators, directions = config["generators"], dict(config.get("directions") or {})
        data = (config.get("config") or {}).get("data") or {}
        if list(directions) == ["AtoB"] and data.get("direction") == "BtoA" and data.get("dataset_mode") != "single":
            # Written before a one-generator recipe's directions followed data.direction (CUT trained BtoA said
            # "AtoB"): the direction its training read, as such models are written now.
            directions = {"BtoA": directions["AtoB"]}
        entries = [GENERATORS.get(spec["netG"]) for spec in generators.values()]
        takes = "noise" if any(e is not None and e.kind == "noise" for e in entries) else "image"
        scale = config.get("scale", max([e.scale for e in entries if e is not None], default=1))
        kind = config.get("kind") or next((k for k, v in MODEL_KINDS.items()
                                           if v.takes == takes and v.upscales == (scale > 1)), None)
        if kind not in MODEL_KINDS:
            raise ValueError(f"{directory or 'config.json'}: unknown kind of model {kind!r} (this translate knows "
                             f"{', '.join(MODEL_KINDS)}): upgrade translate")
        first = generators[next(iter(directions.values()), next(iter(generators)))]
        return cls(kind, generators, directions, scale, config.get("input_nc", first.get("input_nc")),
                   config.get("output_nc", first.get("output_nc", 3)), config.get("norm_mode", "eval"),
                   config.get("normalize"), config, None if directory is None else Path(directory))

    def to_json(self) -> dict:
        """The content of ``config.json``: the format version, the description's fields, then the rest of
        ``config`` (recipe, step, ...)."""
        from translate import __version__

        data = {"format_version": FORMAT_VERSION, "translate_version": __version__, "kind": self.kind,
                "scale": self.scale, "input_nc": self.input_nc, "output_nc": self.output_nc,
                "norm_mode": self.norm_mode, "normalization": NORMALIZATION,
                **({"normalize": self.normalize} if self.normalize is not None else {})}
        return {**data, **{k: v for k, v in self.config.items() if k not in data},
                "generators": self.generators, "directions": self.directions}

    @property
    def behaviour(self) -> Kind:
        return MODEL_KINDS[self.kind]

    @property
    def files(self) -> list[str]:
        """The files the model is made of, config.json first."""
        return ["config.json", *(f"{name}.safetensors" for name in self.generators)]

    def require(self, takes: str, note: str = "") -> None:
        """A one-line ValueError unless this model's generators take ``takes`` ("image" or "noise")."""
        if self.behaviour.takes != takes:
            raise ValueError(f"{self.directory}: this model {self.behaviour.does}: use {self.behaviour.command}{note}")

    def generator(self, direction: str | None = None) -> str:
        """The generator for ``direction`` ("AtoB", "BtoA", or a generator name; None: the model's only one, or
        AtoB, or its first generator)."""
        if direction is None:
            if len(self.directions) == 1:
                return next(iter(self.directions.values()))
            direction = "AtoB" if "AtoB" in self.directions else next(iter(self.generators))
        if direction in self.directions:
            return self.directions[direction]
        if direction in self.generators:
            return direction
        raise ValueError(f"unknown direction {direction!r}; this model has {', '.join(self.directions)} "
                         f"(generators {', '.join(self.generators)})")

    def sides(self, name: str) -> tuple[str, str]:
        """The data sides ("A", "B": the keys of ``normalize``, the network's sides after the training's
        ``data.direction``) that generator ``name`` reads and writes. ``directions`` name the folders' direction, so
        with ``data.direction=BtoA`` the folders' "BtoA" is the network's A → B (pix2pix's G, CycleGAN's G_A)."""
        direction = next((d for d, g in self.directions.items() if g == name), "AtoB")
        if self.config.get("config", {}).get("data", {}).get("direction") == "BtoA":
            direction = "AtoB" if direction == "BtoA" else "BtoA"
        return ("B", "A") if direction == "BtoA" else ("A", "B")

    def units(self, name: str) -> tuple[dict | None, dict | None]:
        """The normalisations (``translate.normalization`` dicts) of what generator ``name`` reads and writes, or
        None where the model states none (models before #31, imported ones: images, scaled by their sample type).
        A model trained on one folder (super-resolution) has side A only, which is then both."""
        if not self.normalize:
            return None, None
        stats = self.normalize
        only = next(iter(stats.values())) if len(stats) == 1 else None
        return tuple(stats.get(side, only) for side in self.sides(name))


def read_config(directory: str | Path) -> dict:
    """``config.json`` of a model directory as a dict, refused when a newer translate wrote it."""
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


def describe(model: str | Path | ModelDescription) -> ModelDescription:
    """The description of the model directory ``model`` (a description is returned as it is)."""
    if isinstance(model, ModelDescription):
        return model
    return ModelDescription.from_config(read_config(model), model)


__all__ = ["FORMAT_VERSION", "MODEL_KINDS", "Kind", "ModelDescription", "describe", "read_config"]
