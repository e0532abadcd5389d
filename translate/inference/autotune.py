"""``dtype="auto"`` and ``backend="auto"`` of the Translator, decided by measuring the model once per machine on a
fixed probe image and cached in ``MODEL_DIR/.probe.json`` (``$TRANSLATE_CACHE/probe/`` where that is read-only).

dtype: bf16 where the device runs it natively (``translate.devices``) and the model's bf16 output stays within
``MIN_PSNR_DB`` of fp32 on the probe, fp32 elsewhere. backend: onnxruntime where it runs the probe faster than
torch, using the model's ONNX export or one built and cached here; torch otherwise. Both are measured on the plain
networks (the Translator's steps around them are the same for every dtype and backend).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from translate.devices import cpu_model, resolve_mixed_precision
from translate.fileio import temp_path, write_text
from translate.networks import GENERATORS
from translate.networks.description import ModelDescription, describe
from translate.networks.pretrained import load_pretrained

log = logging.getLogger(__name__)
MIN_PSNR_DB = 40.0  # bf16 is used where its output is at least this close to fp32's (8-bit images: ±0.5 is 54 dB)
PROBE_NAME = ".probe.json"
PROBE_SIDE = 256  # the images the paper models are trained on
TIMING_ROUNDS = 3
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


@dataclass
class Choice:
    backend: str  # "torch" | "onnxruntime"
    dtype: torch.dtype  # of the torch backend
    onnx: dict[str, Path] | None  # onnxruntime: the file of each generator
    reason: str  # one line, e.g. "bf16: this CPU has AMX; bf16 output 42.3 dB from fp32 on the probe"


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """``"auto"`` without measuring: bfloat16 on GPUs that support it, float32 elsewhere (bfloat16 on the CPU is
    opt-in: ``"bf16"``, about twice as fast on CPUs with bf16 instructions, outputs within ~0.04 of float32)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def cache_dir() -> Path:
    """``$TRANSLATE_CACHE`` or ``~/.cache/translate``, as ``translate.data.builtin`` (which inference does not
    import)."""
    return Path(os.environ.get("TRANSLATE_CACHE") or "~/.cache/translate").expanduser()


def fallback_dir(model_dir: Path) -> Path:
    """Where the probe results and ONNX files of a read-only ``model_dir`` go."""
    return cache_dir() / "probe" / hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]


def fingerprint(description: ModelDescription) -> dict[str, list[int]]:
    """Size and mtime of the files the model is made of: a re-exported model is measured again."""
    model_dir = description.directory
    return {f: [(s := (model_dir / f).stat()).st_size, s.st_mtime_ns] for f in description.files
            if (model_dir / f).is_file()}


def hardware_key(device: torch.device) -> str:
    """The machine a measurement belongs to: a model directory may be copied to another."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return f"{device.type}: {name}, torch {torch.__version__}"


class ProbeCache:
    """The measurements of one model directory, by machine; they are dropped when the model's files change."""

    def __init__(self, description: ModelDescription):
        model_dir = description.directory
        self.paths = [model_dir / PROBE_NAME, fallback_dir(model_dir) / "probe.json"]
        self.fingerprint = fingerprint(description)
        self.data = {"fingerprint": self.fingerprint}
        for path in self.paths:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if data.get("fingerprint") == self.fingerprint:
                self.data = data
                break

    def get(self, machine: str, key: str):
        return self.data.get(machine, {}).get(key)

    def put(self, machine: str, key: str, value) -> None:
        """Store and write the whole file atomically: next to the model where that is writable, else in the cache
        directory."""
        self.data.setdefault(machine, {})[key] = value
        for path in self.paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, json.dumps(self.data, indent=1) + "\n")
                return
            except OSError:
                continue
        log.warning("could not write the probe results to %s", " or ".join(map(str, self.paths)))


def _temp_in(directory: Path, suffix: str) -> Path | None:
    """A fresh temp name in ``directory`` (made if missing), to be renamed over the real file once written (the
    umask decides its mode); None where the directory cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(directory / f"probe{suffix}")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError:
        return None
    return tmp


def probe_pixels(channels: int, side: int) -> torch.Tensor:
    """The fixed probe: a photo-like CHW image in [0, 1] (a smooth random colour field plus fine noise), seeded."""
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(1, channels, 6, 6, generator=g), size=(side, side), mode="bicubic")[0]
    return (smooth + 0.03 * torch.randn(channels, side, side, generator=g)).clamp(0, 1)


def probe_side(spec: dict) -> int:
    entry = GENERATORS[spec["netG"]]
    return max(math.ceil(PROBE_SIDE / entry.stride), math.ceil(entry.min_size / entry.stride)) * entry.stride


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two images in [0, 1], in dB (inf where equal)."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def probe_input(spec: dict) -> torch.Tensor:
    """The probe as generator ``spec``'s input: a batch of one in [-1, 1]."""
    return probe_pixels(spec["input_nc"], probe_side(spec))[None] * 2 - 1


def run_probe(net, x: torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A generator's output on ``x`` in ``dtype`` (autocast), as images in [0, 1], float32 on the CPU."""
    autocast = nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype)
    with torch.inference_mode(), autocast:
        return net(x.to(device)).float().cpu().add_(1).mul_(0.5).clamp_(0, 1)


def measure_bf16_psnr(model_dir: Path | ModelDescription, device: torch.device) -> dict[str, float]:
    """PSNR of each generator's bf16 autocast output against its fp32 output on the probe, in dB."""
    description = describe(model_dir)
    _, nets = load_pretrained(description)
    result = {}
    for name, net in nets.items():
        x, net = probe_input(description.generators[name]), net.to(device)
        result[name] = psnr_db(*(run_probe(net, x, device, d) for d in (torch.float32, torch.bfloat16)))
    return result


def choose_dtype(description: ModelDescription, device: torch.device, cache: ProbeCache) -> tuple[torch.dtype, str]:
    precision, reason = resolve_mixed_precision("auto", device)
    if precision != "bf16":
        return torch.float32, reason
    # A model of 16-bit or float data (#31): bf16's 8-bit mantissa would round its results coarser than the data.
    fine = sorted({out["dtype"] for name in description.generators
                   if (out := description.units(name)[1]) and out.get("dtype", "uint8") != "uint8"})
    if fine:
        return torch.float32, f"fp32: the model's results are {', '.join(fine)} data, finer than bf16 keeps"
    machine = hardware_key(device)
    psnr = cache.get(machine, "bf16_psnr_db")
    if psnr is None:
        psnr = measure_bf16_psnr(description, device)
        cache.put(machine, "bf16_psnr_db", psnr)
    worst = min(psnr.values())
    if worst >= MIN_PSNR_DB:
        return torch.bfloat16, f"{reason}; bf16 output {worst:.1f} dB from fp32 on the probe"
    return torch.float32, f"fp32: bf16 output only {worst:.1f} dB from fp32 on the probe (< {MIN_PSNR_DB:g})"


def _fresh(paths: dict[str, Path], model_dir: Path) -> bool:
    """Every file exists and is at least as new as its generator's weights."""
    return all(p.is_file() and p.stat().st_mtime_ns >= (model_dir / f"{n}.safetensors").stat().st_mtime_ns
               for n, p in paths.items())


def _export_to(description: ModelDescription, paths: dict[str, Path]) -> bool:
    """Export each generator to its path (atomically: concurrent conversions may read it); False where the folder
    cannot be written."""
    from translate.inference.export import export_onnx

    for name, path in paths.items():
        tmp = _temp_in(path.parent, ".onnx")
        if tmp is None:
            return False
        try:
            export_onnx(description, tmp, direction=name, log=log.info)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return True


def onnx_files(description: ModelDescription) -> dict[str, Path]:
    """The model's ONNX files: its own export (``translate export``'s names) where it is as new as the weights,
    else one built there or, where the model directory is read-only, in the cache directory."""
    from translate.inference.export import onnx_paths

    model_dir = description.directory
    candidates = (onnx_paths(description), {n: fallback_dir(model_dir) / f"{n}.onnx" for n in description.generators})
    for paths in candidates:
        if _fresh(paths, model_dir):
            return paths
    for paths in candidates:
        if _export_to(description, paths):
            return paths
    raise OSError(f"cannot write an ONNX export of {model_dir}, nor in {fallback_dir(model_dir)}")


def measure_seconds(description: ModelDescription, device: torch.device, dtype: torch.dtype,
                    files: dict[str, Path]) -> dict[str, float]:
    """Best-of-``TIMING_ROUNDS`` seconds of the first generator on the probe, torch and onnxruntime alternating
    round by round (so the machine's drift hits both alike), after one untimed call each."""
    from translate.inference.export import OnnxGenerator

    name, spec = next(iter(description.generators.items()))
    net = load_pretrained(description, [name])[1][name].to(device)
    runs = {"torch": lambda x: run_probe(net, x, device, dtype), "onnxruntime": OnnxGenerator(files[name])}
    x = probe_input(spec)
    times = {backend: [] for backend in runs}
    for round_ in range(TIMING_ROUNDS + 1):
        for backend, run in runs.items():
            start = time.perf_counter()
            run(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_:
                times[backend].append(time.perf_counter() - start)
    return {backend: min(t) for backend, t in times.items()}


def choose_backend(description: ModelDescription, device: torch.device, dtype: torch.dtype,
                   cache: ProbeCache) -> tuple[str, dict[str, Path] | None, str]:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch", None, "torch: onnxruntime is not installed"
    if description.norm_mode == "train" or any(s.get("norm") == "instance" for s in description.generators.values()):
        # onnxruntime normalises each tile of a large image by itself; the torch backend shares the statistics.
        return "torch", None, "torch: onnxruntime would normalise the tiles of large images each on its own"
    try:
        files = onnx_files(description)
    except (RuntimeError, OSError) as e:  # ExportError included: the file did not reproduce the model
        return "torch", None, f"torch: no ONNX export ({e})"
    machine, key = hardware_key(device), f"seconds {str(dtype).removeprefix('torch.')}"
    seconds = cache.get(machine, key)
    if seconds is None:
        seconds = measure_seconds(description, device, dtype, files)
        cache.put(machine, key, seconds)
    timing = f"probe {seconds['onnxruntime']:.3g} s with onnxruntime, {seconds['torch']:.3g} s with torch"
    if seconds["onnxruntime"] < seconds["torch"]:
        return "onnxruntime", files, f"onnxruntime: {timing}"
    return "torch", None, f"torch: {timing}"


def choose(model_dir: str | Path | ModelDescription, device: torch.device, dtype: str | torch.dtype = "auto",
           backend: str = "auto") -> Choice:
    """Resolve ``dtype``/``backend`` "auto" for ``model_dir`` (or its description) on ``device``
    (measured on first use, then read from the cache). An explicit dtype or backend is kept."""
    if backend == "onnxruntime":
        return Choice(backend, torch.float32, None, "onnxruntime: as set")
    description = describe(model_dir)
    cache = ProbeCache(description)
    if dtype == "auto":
        dtype, reason = choose_dtype(description, device, cache)
    else:
        dtype, reason = resolve_dtype(dtype, device), "dtype as set"
    files = None
    if backend == "auto":
        backend, files, why = choose_backend(description, device, dtype, cache)
        reason = f"{reason}; {why}"
    log.info("%s: %s", description.directory, reason)
    return Choice(backend, dtype, files, reason)
