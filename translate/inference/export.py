"""Export a model directory's generators to ONNX and run such files with onnxruntime (``OnnxGenerator``).

File naming: a model directory with one generator exports to ``MODEL_DIR/model.onnx``; one with several (CycleGAN)
to ``MODEL_DIR/<generator>.onnx`` each (``G_A.onnx``: AtoB, ``G_B.onnx``: BtoA). Batch, height and width are
dynamic; sides must be multiples of the generator's stride, which is stored in the file's metadata, with the
generator's ``scale`` (output side / input side: 4 for a ×4 upscaler). A noise model (DCGAN) takes (batch, nz) latents.
Any channel count (``input_nc``, ``output_nc`` in the metadata); a model trained on data also records its sides'
normalisations (``normalize_input``, ``normalize_output``: JSON of ``translate.normalization``), which the file's
[-1, 1] values go through.
onnx and onnxruntime are optional dependencies (``pip install 'translate[onnx]'``), imported on first use.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import torch
from torch import nn

from translate.networks import GENERATORS
from translate.networks.description import ModelDescription, describe
from translate.networks.pretrained import load_pretrained

DEFAULT_OPSET = 17
TOLERANCE = 1e-4  # max abs difference to PyTorch accepted at export, on outputs in [-1, 1]
_DYNAMIC = {0: "batch", 2: "height", 3: "width"}


class ExportError(RuntimeError):
    """The exported file does not reproduce the PyTorch generator."""


def _require(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise ImportError(f"ONNX export and inference need the '{name}' package: pip install 'translate[onnx]' "
                          f"(onnx and onnxruntime)") from None


class BatchStatsNorm(nn.Module):
    """Batch norm normalising with the statistics of the current batch, i.e. its train-mode forward, written as
    plain ops: models imported with ``norm_mode: train`` (the reference's test.py without --eval) then export
    without ONNX's training-mode BatchNormalization, which onnxruntime does not run. Running stats stay untouched."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.eps = bn.eps
        self.weight = nn.Parameter(bn.weight.detach().clone())
        self.bias = nn.Parameter(bn.bias.detach().clone())

    def forward(self, x):
        mean = x.mean((0, 2, 3), keepdim=True)
        var = x.var((0, 2, 3), unbiased=False, keepdim=True)  # batch norm normalises with the biased variance
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def prepare_for_export(net: nn.Module, norm_mode: str = "eval") -> nn.Module:
    """A copy of ``net`` in eval mode (dropout off: an exported model is deterministic); with ``norm_mode="train"``
    its batch-norm layers use batch statistics, as ``net.train()`` would."""
    net = copy.deepcopy(net).eval()
    if norm_mode == "train":
        for name, module in list(net.named_modules()):
            if isinstance(module, nn.BatchNorm2d):
                parent, _, leaf = name.rpartition(".")
                setattr(net.get_submodule(parent), leaf, BatchStatsNorm(module))
    return net


def sample_size(netG: str) -> int:
    """The side of the square input traced at export: at least 64 px and a multiple of the stride."""
    entry = GENERATORS[netG]
    return math.ceil(max(64, entry.min_size) / entry.stride) * entry.stride


def onnx_paths(model_dir: str | Path | ModelDescription) -> dict[str, Path]:
    """Where ``export_onnx`` writes each generator by default: ``model.onnx`` for one, ``<name>.onnx`` for several."""
    description = describe(model_dir)
    model_dir, names = description.directory, list(description.generators)
    if len(names) == 1:
        return {names[0]: model_dir / "model.onnx"}
    return {name: model_dir / f"{name}.onnx" for name in names}


def sample_input(description: ModelDescription, name: str, height: int, width: int, batch: int = 1,
                 seed: int = 0) -> torch.Tensor:
    """A seeded input of generator ``name``: an image in [-1, 1], or latents where the model takes noise."""
    g, spec = torch.Generator().manual_seed(seed), description.generators[name]
    if description.behaviour.takes == "noise":
        return torch.randn(batch, spec["nz"], generator=g)
    return torch.rand(batch, spec["input_nc"], height, width, generator=g) * 2 - 1


def dynamic_axes(description: ModelDescription) -> dict[str, dict[int, str]]:
    if description.behaviour.takes == "noise":
        return {"input": {0: "batch"}, "output": {0: "batch"}}
    # An upscaler's output sides are not the input's: other names, or ONNX would take them for equal.
    output = _DYNAMIC if description.scale == 1 else {0: "batch", 2: "out_height", 3: "out_width"}
    return {"input": _DYNAMIC, "output": output}


def export_generator(net: nn.Module, path: str | Path, x: torch.Tensor, *, axes: dict | None = None,
                     opset: int = DEFAULT_OPSET, metadata: dict | None = None) -> Path:
    """Trace ``net`` (already prepared: eval mode) on the input ``x`` into one ONNX file with ``axes`` dynamic
    (default: batch, height and width of an image-to-image generator)."""
    onnx = _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # Expected and harmless: instance norm always uses input statistics (and checks its size in Python);
        # reflection pads keep a Slice op.
        warnings.filterwarnings("ignore", message="(Constant folding|ONNX export mode is set)", category=UserWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # instance norm's size check
        # The TorchScript exporter needs no onnxscript and writes a single file (no external data under 2 GB).
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes=axes or {"input": _DYNAMIC, "output": _DYNAMIC})
    if metadata:
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
        onnx.save(model, str(path))
    return path


def max_abs_diff(onnx_net: OnnxGenerator, net: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (onnx_net(x) - net(x)).abs().max().item()


def export_onnx(model_dir: str | Path | ModelDescription, out: str | Path | None = None, *,
                direction: str | None = None, opset: int = DEFAULT_OPSET, verify: bool = True,
                log=print) -> dict[str, Path]:
    """Export the generators of ``model_dir`` (or of its description; or only the one for ``direction``: "AtoB",
    "BtoA" or a generator name).

    Each file is checked with onnxruntime against PyTorch on a random non-square input; above ``TOLERANCE`` the file
    is deleted and ``ExportError`` raised. Returns {generator name: path}.
    """
    _require("onnx")
    if verify:
        _require("onnxruntime")
    description = describe(model_dir)
    names = list(description.generators) if direction is None else [description.generator(direction)]
    if out is not None and len(names) > 1:
        raise ValueError(f"one output file given but the model has {len(names)} generators ({', '.join(names)}): "
                         f"pass --direction, or omit the output to write {', '.join(n + '.onnx' for n in names)}")
    paths = {names[0]: Path(out)} if out is not None else {n: onnx_paths(description)[n] for n in names}
    _, nets = load_pretrained(description, names)
    norm_mode = description.norm_mode
    for name, path in paths.items():
        spec = description.generators[name]
        entry, size = GENERATORS[spec["netG"]], sample_size(spec["netG"])
        net = prepare_for_export(nets[name], norm_mode)
        metadata = {"translate_generator": name, "netG": spec["netG"], "kind": description.kind,
                    "scale": description.scale, "stride": entry.stride, "min_size": entry.min_size,
                    "input_nc": spec.get("input_nc"), "output_nc": spec.get("output_nc"), "nz": spec.get("nz"),
                    "norm_mode": norm_mode, "range": "[-1, 1]",
                    "directions": json.dumps([d for d, g in description.directions.items() if g == name])}
        # A model of data (#31): the normalisations that map its input's units to [-1, 1] and [-1, 1] back to its
        # output's, so that the file alone says what its numbers mean (Translator applies them around it).
        for key, units in zip(("normalize_input", "normalize_output"), description.units(name)):
            metadata[key] = json.dumps(units) if units else None
        export_generator(net, path, sample_input(description, name, size, size), axes=dynamic_axes(description),
                         opset=opset, metadata={k: v for k, v in metadata.items() if v is not None})
        if verify:
            # Non-square and a different width from the traced input (a larger batch for latents), so the dynamic
            # axes are exercised too.
            x = sample_input(description, name, size, 2 * size, seed=1,
                             batch=3 if description.behaviour.takes == "noise" else 1)
            diff = max_abs_diff(OnnxGenerator(path), net, x)
            if not diff <= TOLERANCE:
                path.unlink(missing_ok=True)
                raise ExportError(f"{name}: onnxruntime differs from PyTorch by {diff:.3g} (> {TOLERANCE:g}) on "
                                  f"{tuple(x.shape)}; file removed")
            log(f"{path}: {name} ({spec['netG']}), opset {opset}, onnxruntime vs PyTorch max abs diff {diff:.2e} "
                f"on {tuple(x.shape)}")
        else:
            log(f"{path}: {name} ({spec['netG']}), opset {opset}, not verified")
        if norm_mode == "train" and spec.get("use_dropout"):
            log(f"note: {name} uses dropout, which is off in the ONNX file (deterministic outputs), unlike the "
                f"PyTorch model in norm_mode 'train'")
    return paths


class OnnxGenerator:
    """An exported generator run by onnxruntime: float32 NCHW tensors in [-1, 1] in, the same out.

    ``stride`` (height and width must be multiples of it) comes from the file's metadata, else from the model
    directory's ``config.json`` beside it, else 1. Runs on CUDA when onnxruntime has that provider, else on CPU.
    """

    def __init__(self, path: str | Path, *, providers: list[str] | None = None, threads: int | None = None):
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist")
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        netG = self.metadata.get("netG") or self._netG_from_config()
        entry = GENERATORS.get(netG) if netG else None
        self.netG = netG
        self.stride = int(self.metadata.get("stride", entry.stride if entry else 1))
        self.min_size = int(self.metadata.get("min_size", entry.min_size if entry else 1))

    def _netG_from_config(self) -> str | None:
        if not (self.path.parent / "config.json").is_file():
            return None
        generators = describe(self.path.parent).generators
        if self.path.stem in generators:
            return generators[self.path.stem]["netG"]
        if len(generators) == 1:
            return next(iter(generators.values()))["netG"]
        return None

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (y,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(y).to(x.device)

    def __repr__(self) -> str:
        return f"OnnxGenerator({str(self.path)!r}, netG={self.netG!r}, stride={self.stride})"
