"""``Translator``: an exported model directory in, a callable out that translates images of any kind and size.

    t = Translator.from_pretrained("runs/horse2zebra/model")      # device="auto", dtype="auto"
    zebra = t(horse)                           # PIL → PIL; numpy HWC uint8/uint16 → same; torch float [0, 1] → same
    horses = t([z1, z2], direction="BtoA", batch_size=8)
    depth = t(bands)                           # a model trained on data: (H, W, 5) uint16 → (H, W) uint16, its units

Images keep their size (padded to the generator's stride, then cropped back), their alpha channel and their kind:
gray and colour are converted to what the generator takes, and back (a gray photo through an RGB model comes out
gray, as files written by ``translate convert`` do); large images run in tiles (``translate.inference.tiling``).
A model trained with ``data.normalize`` (issue #31: any channel count, any sample type) states each side's
normalisation in its ``config.json``: inputs are normalised with its input side's and outputs come back through its
output side's, in the data's units and sample type (``Units``).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from translate.devices import warn_if_slow_bf16
from translate.imageio import array_to_pil, icc_fits, pil_to_array
from translate.inference.autotune import choose, resolve_dtype
from translate.inference.tiling import install_image_norms, pad_to_stride, padded_size, translate_tiled
from translate.networks import GENERATORS
from translate.networks.description import ModelDescription, describe
from translate.networks.pretrained import build_generator, load_pretrained
from translate.normalization import Normalization

# Images up to this many (padded) pixels run whole; larger ones in tiles, whose normalisation statistics come from
# one pass of at most this size. On the CPU resnet_9blocks at ngf 64 needs ~0.9 GiB for 1 MP in fp32; on CUDA the
# budget follows the free memory (see default_whole_pixels).
WHOLE_PIXELS = {"cpu": 1 << 20, "accelerator": 1 << 22}
TILE = {"cpu": 512, "accelerator": 1024}
_BYTES_PER_PIXEL = 1000  # measured peak of a whole pass, resnet_9blocks at ngf 64 in fp32, per input pixel
_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0}
_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601-2, as PIL's convert("L")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA, else Apple MPS, else the CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_whole_pixels(device: torch.device, dtype: torch.dtype, ngf: int) -> int:
    """The largest image run whole: 1 MP on the CPU; on CUDA what half the free memory holds, by the measured
    peak per pixel scaled with the width and the dtype (at least 4 MP)."""
    if device.type != "cuda":
        return WHOLE_PIXELS["cpu" if device.type == "cpu" else "accelerator"]
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return WHOLE_PIXELS["accelerator"]
    per_pixel = _BYTES_PER_PIXEL * ngf / 64 * torch.finfo(dtype).bits / 32
    return max(WHOLE_PIXELS["accelerator"], int(free / 2 / per_pixel))


def _match_channels(x: Tensor, n: int) -> Tensor:
    """NCHW colour channels → the generator's ``n``: gray → RGB by repetition, RGB → gray by luma."""
    c = x.shape[1]
    if c == n:
        return x
    if c == 1 and n == 3:
        return x.repeat(1, 3, 1, 1)
    if c == 3 and n == 1:
        return (x * _LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise ValueError(f"cannot feed a {c}-channel image to a generator with {n} input channels")


def _back_to_input_channels(y: Tensor, channels: int, spec: dict) -> Tensor:
    """Output CHW → the input's colour channels when the way in changed them (gray through an RGB model comes out
    gray, RGB through a gray model RGB); a model that changes the channels itself (colourisation) is left alone."""
    if channels != spec["input_nc"] and spec["output_nc"] == spec["input_nc"]:
        return _match_channels(y[None], channels)[0]
    return y


def _resize_alpha(alpha: Tensor, size) -> Tensor:
    """1HW alpha → ``size`` (an upscaler's output), bilinear, in its own dtype."""
    if tuple(alpha.shape[-2:]) == tuple(size):
        return alpha
    top = _SCALE.get(alpha.dtype)
    resized = torch.nn.functional.interpolate(alpha[None].float(), size=tuple(size), mode="bilinear",
                                              align_corners=False)[0]
    return resized.round_().clamp_(0, top).to(alpha.dtype) if top else resized.clamp_(0, 1).to(alpha.dtype)


def _split_alpha(pixels: Tensor, n: int) -> tuple[Tensor, Tensor | None]:
    """CHW pixels → colour and alpha: a 2nd (gray) or 4th (RGB) channel the generator does not take is alpha."""
    c = pixels.shape[0]
    if c != n and c in (2, 4):
        return pixels[:-1], pixels[-1:]
    return pixels, None


def _torch_dtype(name: str) -> torch.dtype:
    return torch.from_numpy(np.empty(0, np.dtype(name))).dtype


class Units:
    """What one generator's pixels are and how they map to its [-1, 1] and back: ``input`` and ``output`` are the
    normalisations of the sides it reads and writes (``ModelDescription.units``), None for a model that states
    none. A side normalised by ``auto`` (or none) takes images as they always were: scaled by their own sample type
    (uint8, uint16, float in [0, 1]), gray and colour converted; any other method is data: the stated channels, any
    sample type, the model's statistics."""

    def __init__(self, input: dict | None = None, output: dict | None = None):
        self.input = Normalization.from_dict(input) if input else None
        self.output = Normalization.from_dict(output) if output else None

    @staticmethod
    def _data(norm: Normalization | None) -> bool:
        return norm is not None and norm.method != "auto"

    @property
    def data_in(self) -> bool:
        return self._data(self.input)

    @property
    def data_out(self) -> bool:
        return self._data(self.output)

    @property
    def target_dtype(self) -> str | None:
        """The sample type of the training targets, which translations come in; None for image models whose sides
        share a sample type (or state none): they give back the input's, as they always did (a 16-bit photo through
        an 8-bit model comes out 16-bit)."""
        out = self.output
        if out is None or (out.method == "auto" and not self.data_in
                           and (self.input is None or self.input.dtype == out.dtype)):
            return None
        return out.dtype

    def output_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The sample type of the translation of pixels of ``dtype``: ``target_dtype``, or ``dtype`` where that is
        None and for float pixels through an image model (in [0, 1] either way)."""
        target = self.target_dtype
        if target is None or (dtype.is_floating_point and self.output.method == "auto" and not self.data_in):
            return dtype
        return _torch_dtype(target)

    @staticmethod
    def _affine(norm: Normalization, channels: int) -> tuple[Tensor, Tensor]:
        center, half = norm.affine(channels=channels)
        return torch.from_numpy(center).view(-1, 1, 1), torch.from_numpy(half).view(-1, 1, 1)

    def normalise(self, x: Tensor, n: int) -> Tensor:
        """Float NCHW data in the input side's units → float32 in [-1, 1], ``n`` channels (gray and colour converted
        in data units first, as ``imageio.conform`` does for training)."""
        x = _match_channels(x.double(), n)
        center, half = self._affine(self.input, n)
        y = (x - center) / half
        if self.input.method == "percentile":
            y.clamp_(-1, 1)
        return y.float()

    def denormalise(self, y: Tensor) -> Tensor:
        """CHW generator output in [-1, 1] → float64 in the output side's units (not yet rounded or cast)."""
        center, half = self._affine(self.output, y.shape[0])
        return y.double() * half + center


def _cast(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Values in a sample type's units → that type: integers rounded and kept within its range, floats as they are."""
    if dtype.is_floating_point:
        return x.to(dtype)
    info = torch.iinfo(dtype)
    return x.round_().clamp_(info.min, info.max).to(dtype)


def _rescale_alpha(alpha: Tensor, dtype: torch.dtype) -> Tensor:
    """Alpha in its own sample type's range (uint8 0..255, uint16 0..65535, float 0..1) → ``dtype``'s (integers
    beyond those: 0..their maximum)."""
    if alpha.dtype == dtype:
        return alpha
    unit = alpha.double() / _SCALE.get(alpha.dtype, 1.0)
    if dtype.is_floating_point:
        return unit.to(dtype)
    return _cast(unit * _SCALE.get(dtype, torch.iinfo(dtype).max), dtype)


def _from_unit(y: Tensor, dtype: torch.dtype) -> Tensor:
    """Generator output in [-1, 1] (float32, modified in place) → ``dtype``: integers use their full range."""
    if dtype in _SCALE:
        top = _SCALE[dtype]
        return y.add_(1).mul_(top / 2).round_().clamp_(0, top).to(dtype)
    return y.add_(1).mul_(0.5).clamp_(0, 1).to(dtype)


def _check_pixels(pixels: Tensor, where: str, data: bool = False) -> None:
    """uint8, uint16, or float in [0, 1]: float data in 0..255 would otherwise be clipped to white without a word.
    ``data`` (a model side normalised by its statistics): any real sample type, finite values."""
    if data:
        if pixels.dtype == torch.bool or pixels.is_complex():
            raise TypeError(f"{where}: unsupported dtype {pixels.dtype} (real numbers)")
        if pixels.is_floating_point() and pixels.numel() and not torch.isfinite(pixels).all():
            raise ValueError(f"{where}: holds NaN or infinite values, which the model's normalisation cannot map")
        return
    if pixels.dtype in (torch.uint8, torch.uint16):
        return
    if pixels.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"{where}: unsupported dtype {pixels.dtype} (uint8, uint16, or float in [0, 1])")
    if pixels.numel() and not (pixels.min() >= 0 and pixels.max() <= 1):  # NaN fails both comparisons
        low, high = pixels.min().item(), pixels.max().item()
        raise ValueError(f"{where}: float pixels must lie in [0, 1], these span {low:.4g}..{high:.4g} (divide 8-bit "
                         f"values by 255, or pass uint8)")


def _unpack(images, data: bool = False):
    """User input → (list of CHW tensors on the CPU, in their own dtype, alpha included; a function that builds
    the user's type back from the list of outputs). ``data``: the generator reads data (``Units.data_in``): any
    sample type, PIL's 32-bit modes kept as they are."""
    if isinstance(images, list | tuple):
        parts = [_unpack(image, data) for image in images]

        def restore(outputs):
            result, k = [], 0
            for pixels, rebuild in parts:
                result.append(rebuild(outputs[k:k + len(pixels)]))
                k += len(pixels)
            return result

        return [p for pixels, _ in parts for p in pixels], restore
    if isinstance(images, Image.Image):
        icc = images.info.get("icc_profile")
        if data and images.mode in ("F", "I"):  # float / 32-bit samples: data units, not [0, 1] or 16 bits
            array = np.array(images)[..., None]
        else:
            array = pil_to_array(images)
        return [torch.from_numpy(array).permute(2, 0, 1)], partial(_to_pil, icc=icc)
    if isinstance(images, np.ndarray):
        if images.ndim not in (2, 3):
            raise ValueError(f"numpy images must be HW or HWC, not shape {images.shape}")
        array = np.ascontiguousarray(images if images.ndim == 3 else images[..., None])
        with warnings.catch_warnings():
            # Read-only arrays (np.asarray of a PIL image) are fine: the pixels are only read.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            pixels = torch.from_numpy(array).permute(2, 0, 1)
        _check_pixels(pixels, "numpy image", data)
        return [pixels], partial(_to_numpy, squeeze=images.ndim == 2)
    if isinstance(images, Tensor):
        _check_pixels(images, "tensor image", data)
        if images.ndim == 3:
            return [images.detach().cpu()], lambda outputs: _to_tensor(outputs[0], images.device)
        if images.ndim == 4:
            return list(images.detach().cpu()), lambda outputs: _to_tensor(torch.stack(outputs), images.device)
        raise ValueError(f"tensor images must be CHW or BCHW, not shape {tuple(images.shape)}")
    raise TypeError(f"cannot translate {type(images).__name__}: give PIL images, numpy HWC arrays, torch CHW/BCHW "
                    f"tensors, or a list of them")


def _to_pil(outputs: list[Tensor], icc: bytes | None) -> Image.Image:
    array = outputs[0].permute(1, 2, 0).numpy()
    c, dtype = array.shape[2], array.dtype
    if not (dtype in (np.uint8, np.uint16) and c <= 4 or dtype == np.float32 and c == 1):
        raise ValueError(f"the translation is {c}-channel {dtype.name}, which a PIL image cannot hold: pass a numpy "
                         f"array (H, W, C) to get it")
    image = array_to_pil(array) if c > 1 or dtype != np.float32 else Image.fromarray(array[..., 0])
    if icc and icc_fits(icc, array.shape[2]):
        image.info["icc_profile"] = icc
    return image


def _to_tensor(output: Tensor, device: torch.device) -> Tensor:
    output = output.to(device)
    # Made under inference_mode: a normal tensor instead, which the caller may modify or use with autograd.
    return output.clone() if output.is_inference() else output


def _to_numpy(outputs: list[Tensor], squeeze: bool) -> np.ndarray:
    array = outputs[0].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(array[..., 0] if squeeze and array.shape[2] == 1 else array)


class Translator:
    """Translates images with the generators of an exported model directory.

    Call it with a PIL image, a numpy HWC (or HW) array of uint8/uint16/float in [0, 1], a torch CHW or BCHW tensor
    (float in [0, 1] as torchvision's ``to_tensor``, or uint8), or a list of those: you get the same kinds back,
    same size, same dtype, gray for gray (PIL "L"/"I;16", 2-D arrays) unless the model itself makes colour, plus the
    input's alpha channel, unchanged. Float pixels outside [0, 1] are refused (ValueError). A PIL image's
    pixels are taken as they are (``ImageOps.exif_transpose`` first for upright photos; folder conversion does it).

    A model trained on data (``data.normalize`` other than auto, or sides of different sample types: see ``Units``)
    takes arrays and tensors of its input side's channels in the data's units, any sample type, and gives back its
    output side's channels in the training targets' units and sample type (uint8, uint16, float32, ...): the input
    side's normalisation applied on the way in, the output side's inverted on the way out.

    ``tile``: "auto" runs images above ``whole_pixels`` (1 MP on the CPU, ≥ 4 MP on GPUs) in tiles of 512 px (CPU) or
    1024 px; an int runs images with a side above it in tiles of that size; 0 never tiles. ``tile_overlap``: the
    least number of pixels neighbouring tiles share ("auto": an eighth of the tile). A GPU running out of memory on a
    whole image falls back to tiles.

    The constructor takes over ``generators`` (nn.Modules by name, or .onnx paths for ``backend="onnxruntime"``) of
    the model ``description`` (``translate.networks.description``): they are moved to ``device`` and their
    instance-norm layers replaced by ``tiling.ImageNorm``.
    """

    def __init__(self, generators: dict, description: ModelDescription, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, backend: str = "torch", tile: int | str = "auto",
                 tile_overlap: int | str = "auto", whole_pixels: int | None = None):
        self.description, self.config = description, description.config
        self.model_dir: Path | None = None  # set by from_pretrained
        self.specs, self.directions = description.generators, description.directions
        self.generators = dict(generators)
        self.device, self.dtype, self.backend = torch.device(device), dtype, backend
        self.norm_mode = description.norm_mode
        self.units = {name: Units(*description.units(name)) for name in self.specs}
        self.norms = {}
        if backend == "torch":
            warn_if_slow_bf16(self.device, dtype, "Translator")
            train = self.norm_mode == "train"
            for name, net in self.generators.items():
                # "train": the reference's test.py without --eval: dropout active, batch norm on the statistics of
                # each input (ImageNorm per image, so that batched images stay independent as with its batch of 1).
                net.train(train).requires_grad_(False).to(self.device)
                self.norms[name] = install_image_norms(net, batch_norm_per_image=train)
        kind = "cpu" if self.device.type == "cpu" else "accelerator"
        self.tile = tile
        self.tile_size = TILE[kind]
        self.tile_overlap = tile_overlap
        ngf = max(spec.get("ngf", 64) for spec in self.specs.values())
        # A ×s upscaler's output and late activations have s² times the input's pixels: the budget shrinks with it.
        self.whole_pixels = whole_pixels or default_whole_pixels(self.device, dtype, ngf) // description.scale**2
        self._warned = set()
        self._receptive_fields: dict[str, int | None] = {}
        for name in self.specs:
            self._check_tile(name, tile)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path | ModelDescription, *, device: str | torch.device = "auto",
                        dtype: str | torch.dtype = "auto", backend: str = "torch", onnx: str | Path | None = None,
                        tile: int | str = "auto", tile_overlap: int | str = "auto",
                        whole_pixels: int | None = None) -> Translator:
        """Load ``model_dir`` (``config.json`` + safetensors; EMA weights when the run kept them, which the trainer
        exports as the weights). ``backend="onnxruntime"`` runs the exported ``.onnx`` files instead (``onnx``: a
        file for a one-generator model), on the providers onnxruntime picks; ``device``/``dtype`` then do not apply.
        ``dtype="auto"``: bf16 where the device runs it natively and the model's output stays close to fp32, else
        fp32; ``backend="auto"``: onnxruntime where it is faster for this model (``translate.inference.autotune``).
        """
        description = describe(model_dir)
        description.require("image")
        options = dict(tile=tile, tile_overlap=tile_overlap, whole_pixels=whole_pixels)
        onnx_files = None
        if backend == "auto" or (backend == "torch" and str(dtype) == "auto"):
            device = resolve_device(device)
            choice = choose(description, device, dtype, backend)  # measured once per model and machine, cached
            backend, dtype, onnx_files = choice.backend, choice.dtype, choice.onnx
        if backend == "torch":
            _, nets = load_pretrained(description)
            device = resolve_device(device)
            translator = cls(nets, description, device=device, dtype=resolve_dtype(dtype, device), **options)
        elif backend == "onnxruntime":
            from translate.inference.export import onnx_paths

            paths = onnx_files or onnx_paths(description)
            if onnx is not None:
                if len(paths) != 1:
                    raise ValueError(f"onnx= names one file but {description.directory} has generators "
                                     f"{', '.join(paths)}")
                paths = {next(iter(paths)): Path(onnx)}
            translator = cls(paths, description, device="cpu", dtype=torch.float32, backend=backend, **options)
        else:
            raise ValueError(f"unknown backend {backend!r}: auto, torch or onnxruntime")
        translator.model_dir = description.directory
        return translator

    @classmethod
    def from_reference(cls, checkpoint: str | Path, out_dir: str | Path, *, device: str | torch.device = "auto",
                       dtype: str | torch.dtype = "auto", tile: int | str = "auto",
                       tile_overlap: int | str = "auto", **options) -> Translator:
        """Import a pytorch-CycleGAN-and-pix2pix checkpoint into ``out_dir`` (``options``: ``netG``, ``G_B``,
        ``norm``, ``test_mode``, ... of ``translate.inference.reference.import_reference``) and load it."""
        from translate.inference.reference import import_reference

        model_dir = import_reference(checkpoint, out_dir, **options)
        return cls.from_pretrained(model_dir, device=device, dtype=dtype, tile=tile, tile_overlap=tile_overlap)

    def __repr__(self) -> str:
        nets = ", ".join(f"{d}: {g} ({self.specs[g]['netG']})" for d, g in self.directions.items())
        return f"Translator({nets}; {self.backend}, {self.device}, {str(self.dtype).removeprefix('torch.')})"

    def generator_name(self, direction: str | None = None) -> str:
        """The generator for ``direction`` ("AtoB", "BtoA", or a generator name; None: the model's only one, or
        AtoB)."""
        return self.description.generator(direction)

    def __call__(self, images, *, direction: str | None = None, batch_size: int = 1, tile: int | str | None = None,
                 tile_overlap: int | str | None = None):
        """Translate ``images`` (see the class docstring); images of equal size run ``batch_size`` at a time."""
        name = self.generator_name(direction)
        pixels, restore = _unpack(images, self.units[name].data_in)
        outputs = self.translate_pixels(pixels, name, batch_size=batch_size,
                                        tile=self.tile if tile is None else tile,
                                        tile_overlap=self.tile_overlap if tile_overlap is None else tile_overlap)
        return restore(outputs)

    @torch.inference_mode()
    def translate_pixels(self, pixels: list[Tensor], name: str, *, batch_size: int = 1, tile: int | str = "auto",
                         tile_overlap: int | str = "auto") -> list[Tensor]:
        """CHW tensors (uint8, uint16 or float in [0, 1]; alpha included; for a model of data, any sample type in
        the data's units) → their translations: same dtype, or the output side's (``Units.output_dtype``)."""
        stride, min_size = self._geometry(name)
        scale = self.description.scale
        self._check_tile(name, tile)
        if self.backend == "onnxruntime" and self.norm_mode == "train":
            batch_size = 1  # the exported batch norm pools its statistics over the batch
        results: list[Tensor | None] = [None] * len(pixels)
        groups = defaultdict(list)
        for i, p in enumerate(pixels):
            groups[(tuple(p.shape), p.dtype)].append(i)
        for (shape, dtype), indices in groups.items():
            h, w = shape[-2:]
            if self._needs_tiles(h, w, stride, min_size, tile):
                for i in indices:
                    results[i] = self._translate_tiled(name, pixels[i], batch_size, tile, tile_overlap)
                continue
            for start in range(0, len(indices), max(1, batch_size)):
                chunk = indices[start:start + max(1, batch_size)]
                colours, alphas = zip(*(self._split_alpha(pixels[i], name) for i in chunk))
                x = self._prepare(torch.stack(colours).float(), dtype, name)
                try:
                    y = self._forward(name, pad_to_stride(x, stride, min_size))[..., :h * scale, :w * scale]
                except torch.OutOfMemoryError:
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                    # From now on images this large run in tiles, and the statistics pass gets half their size.
                    self.whole_pixels = min(self.whole_pixels, x.shape[-2] * x.shape[-1] // 2)
                    self._warn_once("oom", f"out of memory on a whole image: running in tiles, whole-image passes "
                                           f"limited to {self.whole_pixels:,} pixels")
                    for i in chunk:
                        results[i] = self._translate_tiled(name, pixels[i], batch_size, tile, tile_overlap)
                    continue
                for k, i in enumerate(chunk):
                    results[i] = self._finish(y[k], colours[k].shape[0], alphas[k], dtype, name)
        return results

    def _geometry(self, name: str) -> tuple[int, int]:
        entry = GENERATORS[self.specs[name]["netG"]]
        return entry.stride, entry.min_size

    def _check_tile(self, name: str, tile: int | str) -> None:
        """Refuse tiles smaller than the input an output pixel depends on (for generators that state it): each tile
        would then lack part of its pixels' context."""
        if tile == "auto" or not tile:
            return
        if name not in self._receptive_fields:
            net = self.generators[name]
            net = net if isinstance(net, torch.nn.Module) else build_generator(self.specs[name])
            self._receptive_fields[name] = getattr(net, "receptive_field", None)
        field = self._receptive_fields[name]
        if field and int(tile) < field:
            raise ValueError(f"tile {tile} px is smaller than the receptive field of {self.specs[name]['netG']} "
                             f"({field} input px): use a tile of at least {field} px, or 0 for none")

    def _needs_tiles(self, h: int, w: int, stride: int, min_size: int, tile: int | str) -> bool:
        hp, wp = padded_size(h, stride, min_size), padded_size(w, stride, min_size)
        if tile == "auto":
            return hp * wp > self.whole_pixels
        return bool(tile) and max(hp, wp) > padded_size(int(tile), stride, min_size)

    def _split_alpha(self, pixels: Tensor, name: str) -> tuple[Tensor, Tensor | None]:
        """Colour and alpha (see ``_split_alpha``); for a model of data, alpha is only the one channel beyond those
        its input side reads (as in training: ``imageio.conform``)."""
        n = self.specs[name]["input_nc"]
        if self.units[name].data_in and pixels.shape[0] != n + 1:
            return pixels, None
        return _split_alpha(pixels, n)

    def _prepare(self, x: Tensor, dtype: torch.dtype, name: str) -> Tensor:
        """Float NCHW in the source's range (for a model of data: its units) → the generator's input: [-1, 1],
        the generator's channels. Out of place: a float32 source's ``.float()`` is the caller's own tensor."""
        n, units = self.specs[name]["input_nc"], self.units[name]
        if units.data_in:
            return units.normalise(x, n)
        return _match_channels(x * (2 / _SCALE.get(dtype, 1.0)) - 1, n)

    def _finish(self, y: Tensor, channels: int, alpha: Tensor | None, dtype: torch.dtype, name: str) -> Tensor:
        """Generator output (CHW, [-1, 1]) → the input's channels where the way in changed them, in the output
        sample type (``Units.output_dtype``), with the input's alpha."""
        spec, units = self.specs[name], self.units[name]
        out_dtype = units.output_dtype(dtype)
        if units.data_out:
            y = _cast(_back_to_input_channels(units.denormalise(y), channels, spec), out_dtype)
        else:
            y = _from_unit(_back_to_input_channels(y, channels, spec), out_dtype)
        if alpha is None:
            return y
        return torch.cat([y, _rescale_alpha(_resize_alpha(alpha, y.shape[-2:]), y.dtype)])

    def _generator(self, name: str):
        net = self.generators[name]
        if isinstance(net, Path):  # onnxruntime: a session is created on first use
            from translate.inference.export import OnnxGenerator

            if not net.is_file():
                raise FileNotFoundError(f"{net} does not exist: export the model first (translate export)")
            net = self.generators[name] = OnnxGenerator(net)
        return net

    def _forward(self, name: str, x: Tensor) -> Tensor:
        """Float32 NCHW CPU batch in [-1, 1], sides on the stride grid → generator output, float32 on the CPU
        (called under ``translate_pixels``' inference mode)."""
        net = self._generator(name)
        if self.backend == "onnxruntime":
            return net(x.contiguous()).float()
        autocast = nullcontext() if self.dtype == torch.float32 else torch.autocast(self.device.type, self.dtype)
        with autocast:
            return net(x.to(self.device)).float().cpu()

    def _translate_tiled(self, name: str, pixels: Tensor, batch_size: int, tile: int | str,
                         tile_overlap: int | str) -> Tensor:
        spec = self.specs[name]
        stride, min_size = self._geometry(name)
        size = self.tile_size if tile == "auto" or not tile else int(tile)
        # Measured on resnet_9blocks (ngf 64, 1024×768, 256-px tiles): 64 px of overlap gave 54 dB to the whole
        # image, 128 px 71 dB; the receptive field reaches ~85 px, but its far end weighs little.
        overlap = size // 8 if tile_overlap == "auto" else int(tile_overlap)
        norms = self.norms.get(name)
        if self.backend == "onnxruntime" and (spec.get("norm") == "instance" or self.norm_mode == "train"):
            self._warn_once("onnx-tiles", "onnxruntime runs each tile with its own normalisation statistics, so "
                                          "tiles may differ in colour; the torch backend shares them")
        colour, alpha = self._split_alpha(pixels, name)
        prepare = partial(self._prepare, dtype=pixels.dtype, name=name)
        y = translate_tiled(partial(self._forward, name), colour[None], prepare, out_channels=spec["output_nc"],
                            tile=size, overlap=overlap, stride=stride, min_size=min_size,
                            batch_size=max(1, batch_size), norms=norms, stats_pixels=self.whole_pixels,
                            scale=self.description.scale)
        return self._finish(y[0], colour.shape[0], alpha, pixels.dtype, name)

    def video(self, src: str | Path, dst: str | Path, *, direction: str | None = None, batch_size: int = 1,
              temporal: float = 0.0, codec: str | None = None, crf: int | None = None, **options) -> dict:
        """Translate the video file ``src`` into ``dst`` (.mp4 .mov .mkv .webm .avi), every frame, streamed: same
        frame count, timestamps (variable frame rates too), frame rate, size and rotation metadata (frames reach the
        model upright, as displayed, and are stored back as the input stored them), audio copied
        (``translate.inference.video.translate_video``; ``temporal``: flicker filter strength in [0, 1)). Returns
        what was done (frames, codec, ...)."""
        from translate.inference.video import translate_video  # PyAV, OpenCV: only for videos

        return translate_video(self, src, dst, direction=direction, batch_size=batch_size, temporal=temporal,
                               codec=codec, crf=crf, **options)

    def frames(self, frames, *, direction: str | None = None, batch_size: int = 1, temporal: float = 0.0):
        """Translate an iterable of frames ((H, W, C) uint8/uint16 arrays, e.g. a video's, in order) lazily: yields
        one output array per frame, holding one batch at a time (``temporal``: as in ``video``)."""
        from translate.inference.video import translate_frames

        for item in translate_frames(self, frames, direction=direction, batch_size=batch_size, temporal=temporal):
            yield item.output

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)


__all__ = ["Translator", "default_whole_pixels", "resolve_device", "resolve_dtype"]
