#!/usr/bin/env python
"""Speed and memory of the package's real code paths, as a Markdown table (and ``--json PATH``).

    PYTHONPATH=. python tools/benchmark.py                     # all rows: ~15 min on a quiet 2-core CPU
    PYTHONPATH=. python tools/benchmark.py --rows train --jobs cyclegan --precisions bf16 --compile
    PYTHONPATH=. python tools/benchmark.py --quick             # tiny smoke version (seconds)
    PYTHONPATH=. python tools/benchmark.py --profile --jobs cyclegan --precisions fp32   # top ops of one step
    PYTHONPATH=. python tools/benchmark.py --rows video --video-long 60   # videos vs PNG frames; a 1-min clip's peak

Rows: ``train`` (``Trainer.train_step`` on a fixed batch, median s/iter after warm-up), ``convert`` (the whole
``translate convert`` command, timed from outside; also on ``--processes`` processes under torchrun), ``data``
(dataset + DataLoader items/s), ``tiled`` (one large image converted in tiles: peak RSS), ``memory`` (a training
step with and without gradient checkpointing at ``--sizes``), ``video`` (a clip converted frame by frame against the
same frames as a folder of PNGs, frames/s in the images/s column; ``--video-long``: a long clip's peak). Each row runs
in a fresh process, so its peak memory is its own: peak RSS (VmHWM) on the CPU, ``torch.cuda.max_memory_allocated``
for in-process rows on a GPU. "FLOP-bound limit": the row's network FLOPs (counted with ``FlopCounterMode``; a training
step ≈ 3× the forward FLOPs of every network run) divided by this machine's measured convolution throughput, and how
far the row is from it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Reference figures (reference/README.md): s/iter for training, images/s (whole command) for test.py.
REFERENCE = {"cyclegan": 11.61, "pix2pix": 0.853, "convert": 1.35}
JOBS = {  # the reference's options for each job
    "cyclegan": ["model.recipe=cyclegan", "model.netG=resnet_9blocks", "model.netD=basic", "model.norm=instance",
                 "model.no_dropout=true", "model.gan_mode=lsgan", "model.cyclegan.pool_size=50",
                 "data.dataset_mode=unaligned"],
    "pix2pix": ["model.recipe=pix2pix", "model.netG=unet_256", "model.netD=basic", "model.norm=batch",
                "model.no_dropout=false", "model.gan_mode=vanilla", "model.pix2pix.pool_size=0",
                "data.dataset_mode=aligned"],
}
JOBS["cut"] = ["model.recipe=cut", "model.netD=basic", "data.dataset_mode=unaligned"]  # the paper's defaults
JOBS["fastcut"] = ["model.recipe=fastcut", "model.netD=basic", "data.dataset_mode=unaligned"]
DATA_OF = {"cut": "cyclegan", "fastcut": "cyclegan"}  # the unpaired images
# --quick: tiny networks and images, same code paths.
QUICK = {"cyclegan": ["model.ngf=8", "model.ndf=8", "data.load_size=72", "data.crop_size=64"],
         "cut": ["model.ngf=8", "model.ndf=8", "data.load_size=72", "data.crop_size=64"],
         "fastcut": ["model.ngf=8", "model.ndf=8", "data.load_size=72", "data.crop_size=64"],
         "pix2pix": ["model.ngf=8", "model.ndf=8", "model.netG=unet_128", "data.load_size=143", "data.crop_size=128"]}
RESULT = "BENCH_RESULT "
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16"}  # always given: the default, auto, differs between machines


# -- helpers ---------------------------------------------------------------------------------------------------
def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def child_env(threads: int) -> dict:
    """Environment of the child processes: this checkout importable, ``threads`` intra-op threads."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads)}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_gib() -> float:
    """This process's peak: GPU memory allocated on CUDA, else peak RSS (VmHWM) from /proc."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# oneDNN names its ISA once per process and each primitive's implementation as it runs ("jit:avx2" for fp32 on
# AVX2, "jit_bf16:avx512_core" for emulated bf16, an "...avx512_core_amx" one on AMX); a convolution that does not
# appear did not run in oneDNN.
_ONEDNN_PROBE = """import torch
x, w = torch.randn(1, 64, 32, 32), torch.randn(64, 64, 3, 3)
with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
    torch.nn.functional.conv2d(x, w)
    torch.nn.functional.conv2d(x.bfloat16(), w.bfloat16())
"""
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "bf16")


def onednn_seen() -> dict:
    """oneDNN's ISA on this CPU and the implementation of an fp32 and a bf16 3×3 convolution (a fresh process:
    the ISA line is printed once per process)."""
    out = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE], capture_output=True, text=True, timeout=300).stdout
    isa = next((ln.split("isa:", 1)[1] for ln in out.splitlines() if "isa:" in ln), "unknown")

    def conv(dtype: str) -> str:
        fields = next((ln.split(",") for ln in out.splitlines()
                       if ",exec," in ln and ",convolution," in ln and f"src:{dtype}:" in ln), None)
        return fields[fields.index("convolution") + 1] if fields else "not oneDNN"

    return {"onednn_isa": isa.strip(), "onednn_conv_fp32": conv("f32"), "onednn_conv_bf16": conv("bf16")}


def hardware() -> dict:
    """What decides this machine's speed: the CPU and its bf16 flags, torch's CPU capability, what oneDNN runs,
    the GPU, and what ``train.mixed_precision=auto`` resolves to here."""
    from translate import devices

    gpu = None
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        gpu = f"{torch.cuda.get_device_name()} (sm_{major}{minor}, bf16 {torch.cuda.is_bf16_supported()})"
    return {"cpu": devices.cpu_model(), "cpu_flags": [f for f in CPU_FLAGS if f in (devices.cpu_flags() or ())],
            "cpu_bf16_unit": devices.cpu_bf16_unit(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **onednn_seen(), "gpu": gpu, "auto_precision": devices.resolve_mixed_precision("auto")[1]}


def forward_gflop(net: torch.nn.Module, channels: int, height: int, width: int | None = None) -> float:
    """Forward GFLOP of ``net`` on one image, counted on the meta device (no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = net.to("meta")
    with torch.device("meta"):
        x = torch.empty(1, channels, height, width or height)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    return counter.get_total_flops() / 1e9


def smooth_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like test image: a smooth random colour field plus fine noise."""
    small = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    noise = rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(small) + noise, 0, 255).astype(np.uint8))


def write_images(folder: Path, n: int, width: int, height: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        smooth_image(rng, width, height).save(folder / f"{i:04d}.jpg", quality=90)
    return folder


def parse_video_size(spec: str) -> tuple[int, int, int]:
    """(width, height, frames) of a ``--video-sizes`` entry ``WxH:FRAMES``."""
    size, _, frames = spec.partition(":")
    width, height = (int(n) for n in size.lower().split("x"))
    return width, height, int(frames or 25)


def write_clip(path: Path, width: int, height: int, frames: int, fps: int, seed: int) -> Path:
    """A synthetic clip written with PyAV (H.264 4:2:0 CRF 18 where FFmpeg has it, else MPEG-4): a photo-like image
    panning 4 px a frame, made one frame at a time, so a clip of any length is written in constant memory."""
    import av

    from translate.inference.video import choose_codec

    still = np.asarray(smooth_image(np.random.default_rng(seed), width, height))
    strip = np.concatenate([still, still[:, ::-1]], 1)  # mirrored: the pan wraps around without a seam
    codec = choose_codec(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"} if codec == "libx264" else {}
        for t in range(frames):
            frame = np.take(strip, np.arange(4 * t, 4 * t + width) % (2 * width), axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_png_frames(clip: Path, folder: Path) -> Path:
    """The decoded frames of ``clip`` as PNG files in ``folder`` (what the folder rows convert)."""
    from translate.inference.video import iter_video_frames

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(iter_video_frames(clip)):
        Image.fromarray(frame).save(folder / f"{i:05d}.png", compress_level=1)
    return folder


def make_datasets(root: Path, n: int, size: int) -> None:
    """root/cyclegan/trainA|trainB (unaligned) and root/pix2pix/train (A|B side by side) of ``size``² JPEGs."""
    write_images(root / "cyclegan" / "trainA", n, size, size, 1)
    write_images(root / "cyclegan" / "trainB", n, size, size, 2)
    rng = np.random.default_rng(3)
    (root / "pix2pix" / "train").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = smooth_image(rng, size, size)
        ab = np.concatenate([np.asarray(a), 255 - np.asarray(a)], 1)
        Image.fromarray(ab).save(root / "pix2pix" / "train" / f"{i:04d}.jpg", quality=90)


def job_overrides(job: str, root: Path, quick: bool) -> list[str]:
    return [*JOBS[job], f"data.root={root / DATA_OF.get(job, job)}", *(QUICK[job] if quick else [])]


def median_times(step, warmup: int, iters: int) -> tuple[list[float], list[float]]:
    """(all times, timed ones) of ``warmup + iters`` calls of ``step``."""
    times = []
    for _ in range(warmup + iters):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times, times[warmup:]


# -- machine ---------------------------------------------------------------------------------------------------
def conv_throughput(quick: bool = False, bf16: bool = True) -> dict:
    """GFLOP/s of a resnet block's convolution (256→256, 3×3, 64×64, batch 4; --quick: 64 channels at 32², batch
    1): forward and forward+backward, fp32 and (``bf16``) bf16 autocast."""
    dev = device()
    c, s, n = (64, 32, 1) if quick else (256, 64, 4)
    conv = torch.nn.Conv2d(c, c, 3, padding=1).to(dev)
    x = torch.randn(n, c, s, s, device=dev, requires_grad=True)
    flop = 2 * c * c * 9 * s * s * n / 1e9
    result = {}

    def run(dtype, backward: bool):
        with torch.set_grad_enabled(backward), torch.autocast(dev.type, dtype, enabled=dtype is not None):
            y = conv(x)
        if backward:
            y.float().sum().backward()

    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16))[:2 if bf16 else 1]:
        for kind, backward in (("forward", False), ("train", True)):
            _, timed = median_times(partial(run, dtype, backward), 1 if quick else 2, 2 if quick else 5)
            result[f"{precision}_{kind}"] = flop * (3 if backward else 1) / statistics.median(timed)
    return result


# -- rows that run inside a worker process -----------------------------------------------------------------------
def plain_loop(trainer, batch: dict, precision: str):
    """The reference's training iteration written plainly, as the baseline on this machine: the same networks and
    loss maths, no Accelerate, no finiteness check, and single-tensor Adam (torch's CPU default, which the
    reference gets). Returns one step as a function."""
    recipe, nets, t = trainer.recipe, trainer.nets, trainer.config.train
    G, D = recipe.groups["G"], recipe.groups["D"]

    def adam(names):
        params = [p for n in names for p in nets[n].parameters()]
        return torch.optim.Adam(params, lr=t.lr, betas=(t.beta1, t.beta2), foreach=device().type == "cuda")

    opt_G, opt_D = adam(G), adam(D)
    autocast = partial(torch.autocast, device().type, torch.bfloat16, enabled=precision == "bf16")

    def step():
        for n in D:
            nets[n].requires_grad_(False)
        ctx = {}
        with autocast():
            terms = recipe.generator_loss(nets, batch, ctx)
        opt_G.zero_grad()
        sum(terms.values()).backward()
        opt_G.step()
        for n in D:
            nets[n].requires_grad_(True)
        with autocast():
            d_terms = recipe.discriminator_loss(nets, batch, ctx)
        opt_D.zero_grad()
        sum(d_terms.values()).backward()
        opt_D.step()

    return step


def train_row(job: str, variants: list[dict], batch: int, warmup: int, iters: int, root: str, quick: bool,
              threads: int) -> dict:
    """s/iter of the real engine, ``Trainer.train_step`` inside one ``accumulate`` block on a fixed batch (or of
    ``plain_loop`` on the same networks and batch: ``plain=True``), for each variant (precision, compile,
    channels_last, plain). Several variants run in this one process with their steps interleaved, round by round,
    so that the machine's drift hits them alike; their peak memory is then the process's."""
    from translate.config import load_config
    from translate.engine.trainer import Trainer

    root = Path(root)
    steps = []
    for v in variants:
        overrides = [*job_overrides(job, root, quick), f"data.batch_size={batch}", "data.num_workers=0",
                     f"train.mixed_precision={MIXED_PRECISION[v['precision']]}",
                     f"train.compile={v['compile']}", f"train.channels_last={v['channels_last']}",
                     "train.progress=false", f"train.output_dir={tempfile.mkdtemp(dir=root, prefix='run-')}"]
        config = load_config(None, overrides)
        trainer = Trainer(config)
        torch.set_num_threads(threads)  # the Trainer may set all cores; keep --threads
        data = next(iter(trainer.loader))

        def step(trainer=trainer, data=data):
            with trainer.accelerator.accumulate():
                trainer.train_step(data)

        steps.append(plain_loop(trainer, data, v["precision"]) if v["plain"] else step)
    firsts = [median_times(step, 0, 1)[0][0] for step in steps]  # compiles, where compiling
    for step in steps:
        median_times(step, warmup - 1, 0)
    timed = [[] for _ in steps]
    for _ in range(iters):
        for times, step in zip(timed, steps):
            times += median_times(step, 0, 1)[1]
    peak = peak_memory_gib()
    m, size = config.model, config.data.crop_size
    with torch.device("meta"):
        nets = trainer.recipe.build()  # shapes only, for counting FLOPs
    d_in = m.input_nc + m.output_nc if job == "pix2pix" else m.input_nc
    g, d = forward_gflop(nets[trainer.recipe.groups["G"][0]], m.input_nc, size), forward_gflop(
        nets[trainer.recipe.groups["D"][0]], d_in, size)
    # Networks run per step: CycleGAN 6 G (2 translations, 2 cycles, 2 identities) and 6 D (2 in the G phase,
    # 4 in the D phase); pix2pix 1 G and 3 D; CUT G on 2 images + 4 encoder passes (counted as half a G each) and
    # 3 D; FastCUT 1 G + 2 encoder passes and 3 D.
    runs = {"cyclegan": (6, 6), "pix2pix": (1, 3), "cut": (4, 3), "fastcut": (2, 3)}[job]
    gflop = 3 * batch * (runs[0] * g + runs[1] * d)
    return {"rows": [{"s_iter": statistics.median(t), "min_s": min(t), "max_s": max(t), "first_s": first,
                      "images_s": batch / statistics.median(t), "peak_gib": peak, "gflop": gflop}
                     for t, first in zip(timed, firsts)]}


def memory_row(job: str, size: int, checkpointing: bool, warmup: int, iters: int, root: str, quick: bool,
               threads: int, interleave: bool = False, limit_gib: float | None = None) -> dict:
    """Peak memory and s/iter of ``Trainer.train_step`` at ``size``² (batch 1), with or without
    train.gradient_checkpointing: peak RSS (VmHWM) of this fresh process on the CPU, max_memory_allocated on a GPU;
    ``step_gib``: the peak above what the process held before its first step (the steps' own memory). With
    ``interleave``: steps alternately without and with checkpointing in this one process, for their time ratio.
    ``limit_gib``: one step, stopped where the process's RSS passes that many GiB (the engine's ``PeakMeter``, as
    ``train.max_memory``'s probes), so that a step that cannot fit fails measured instead of meeting the
    machine's out-of-memory killer (which may pick another process); on a GPU an out-of-memory error does."""
    from translate.config import load_config
    from translate.engine.memory import PeakMeter, is_out_of_memory, release_free_memory, reset_peak
    from translate.engine.trainer import Trainer

    root = Path(root)
    overrides = [*job_overrides(job, root, quick), f"data.load_size={size}", f"data.crop_size={size}",
                 "data.batch_size=1", "data.num_workers=0", "train.mixed_precision=no", "train.progress=false",
                 f"train.gradient_checkpointing={str(checkpointing).lower()}",
                 f"train.output_dir={tempfile.mkdtemp(dir=root, prefix='run-')}"]
    trainer = Trainer(load_config(None, overrides))
    torch.set_num_threads(threads)
    data = next(iter(trainer.loader))
    release_free_memory(device())
    reset_peak(device())
    before = torch.cuda.memory_allocated() / 2**30 if torch.cuda.is_available() else \
        int(next(ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines()
                 if ln.startswith("VmRSS:"))) / 2**20

    def step():
        with trainer.accelerator.accumulate():
            trainer.train_step(data)

    if interleave:  # the time ratio alone, immune to the machine's drift: steps alternate off / on
        timed = {False: [], True: []}
        for i in range(2 * (warmup + iters)):
            trainer.set_checkpointing(i % 2 == 1)
            start = time.perf_counter()
            step()
            sync()
            if i >= 2 * warmup:
                timed[i % 2 == 1].append(time.perf_counter() - start)
        off, on = (statistics.median(timed[k]) for k in (False, True))
        return {"s_iter": on, "off_s": off, "ratio": on / off, "ratios": [b / a for a, b in zip(*timed.values())],
                "images_s": 1 / on, "peak_gib": peak_memory_gib()}
    if limit_gib is not None:
        meter, start = PeakMeter(device(), int(limit_gib * 2**30)), time.perf_counter()
        try:
            with meter:
                try:
                    step()
                    sync()
                finally:
                    meter.disarm()
        except BaseException as e:  # the meter's interruption lands anywhere in the step
            if not (meter.exceeded or is_out_of_memory(e)):
                raise
            why = f"RSS passed the limit of {limit_gib:.1f} GiB" if meter.exceeded else type(e).__name__
            return {"error": f"out of memory: {why} {time.perf_counter() - start:.0f} s into the first step, which "
                             f"was stopped there at {meter.value / 2**30:.1f} GiB (the process held {before:.2f} GiB "
                             "before it)", "peak_gib": meter.value / 2**30}
        times = timed = [time.perf_counter() - start]
    else:
        times, timed = median_times(step, warmup, iters)
    peak = peak_memory_gib()
    return {"s_iter": statistics.median(timed), "min_s": min(timed), "max_s": max(timed), "first_s": times[0],
            "images_s": 1 / statistics.median(timed), "peak_gib": peak, "step_gib": peak - before}


def data_row(workers: int, items: int, root: str, quick: bool, threads: int) -> dict:
    """Items/s (one item = an A and a B image, what a CycleGAN step of batch 1 takes) from the real dataset."""
    from torch.utils.data import DataLoader

    from translate.config import load_config
    from translate.data import build_dataset

    config = load_config(None, [*job_overrides("cyclegan", Path(root), quick), f"data.num_workers={workers}"])
    dataset = build_dataset(config, "train")
    loader = DataLoader(dataset, batch_size=1, shuffle=True, num_workers=workers, persistent_workers=workers > 0)

    def stream():
        epoch = 0
        while True:
            dataset.set_epoch(epoch)
            yield from loader
            epoch += 1

    it = stream()
    for _ in range(3 + 2 * workers):  # worker start-up and first batches are not counted
        next(it)
    start = time.perf_counter()
    for _ in range(items):
        next(it)
    elapsed = time.perf_counter() - start
    return {"images_s": items / elapsed, "s_iter": elapsed / items, "peak_gib": peak_memory_gib()}


def reset_peak_memory() -> None:
    """A new peak from here: ``max_memory_allocated`` on a GPU, VmHWM on the CPU (as
    ``translate.engine.memory.reset_peak``, without importing the training stack into a conversion's process)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux: the peak then includes the model's load
        pass


def rss_gib(key: str = "VmRSS") -> float:
    return int(next(ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines()
                    if ln.startswith(key + ":"))) / 2**20


def video_row(model: str, inputs: str, out: str, dtype: str, threads: int) -> dict:
    """Frames/s and peak memory of ``convert_folder`` (what ``translate convert`` runs) on one video file or a folder
    of frames, timed after the model is loaded; the peak (VmHWM on the CPU, ``max_memory_allocated`` on a GPU)
    also from then on, and ``before_gib``: the RSS with the model loaded."""
    from translate.inference import Translator
    from translate.inference.convert import convert_folder

    translator = Translator.from_pretrained(model, dtype=dtype)
    torch.set_num_threads(threads)
    before = rss_gib()
    reset_peak_memory()
    start = time.perf_counter()
    summary = convert_folder(translator, inputs, out, fmt="png", overwrite=True, progress=False)
    sync()
    elapsed = time.perf_counter() - start
    if summary["failed"]:
        return {"error": summary["failures"][0]["error"][:200]}
    frames = summary["frames"]
    return {"frames": frames, "s_iter": elapsed / frames, "images_s": frames / elapsed, "peak_gib": peak_memory_gib(),
            "rss_gib": rss_gib("VmHWM"), "before_gib": before, "device": str(translator.device),
            "dtype": {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(
                translator.dtype, str(translator.dtype))}


def profile_step(job: str, root: str, precision: str, quick: bool, threads: int, top: int = 15) -> str:
    """torch.profiler table (self CPU time) of one training step of ``job`` after one warm-up step."""
    from torch.profiler import ProfilerActivity, profile

    from translate.config import load_config
    from translate.engine.trainer import Trainer

    root = Path(root)
    config = load_config(None, [*job_overrides(job, root, quick), "data.num_workers=0",
                                f"train.mixed_precision={MIXED_PRECISION[precision]}",
                                "train.progress=false", f"train.output_dir={tempfile.mkdtemp(dir=root)}"])
    trainer = Trainer(config)
    torch.set_num_threads(threads)
    data = next(iter(trainer.loader))

    def step():
        with trainer.accelerator.accumulate():
            trainer.train_step(data)

    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step()
        sync()
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=top, max_name_column_width=50)


def in_worker(kind: str, **kwargs) -> dict:
    """Run one row in a fresh Python process (own peak memory, own Accelerate/compile state)."""
    spec = json.dumps({"kind": kind, **kwargs})
    proc = subprocess.run([sys.executable, __file__, "--worker", spec], capture_output=True, text=True,
                          env=child_env(kwargs["threads"]))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1][len(RESULT):])


# -- rows that time the command line -----------------------------------------------------------------------------
# Runs a module (-m NAME) or a script in this interpreter and writes the process's VmHWM (KiB) to $BENCH_HWM at
# exit. A child's ru_maxrss would not do: exec records the hiwater of the memory it replaces, which after Python's
# vfork is the parent's (this script's, up to ~2 GiB after generating the 4096² input).
_LAUNCHER = """import atexit, os, runpy, sys
def hwm():
    with open(os.environ["BENCH_HWM"] + os.environ.get("RANK", ""), "w") as f:
        f.write(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")))
atexit.register(hwm)
target, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_module(target[3:], run_name="__main__", alter_sys=True) if target.startswith("-m=") else \\
    runpy.run_path(target, run_name="__main__")
"""


def run_command(args: list[str], log: Path, threads: int, cli: bool = True,
                processes: int = 1) -> tuple[float, float, int]:
    """(wall seconds, peak RSS GiB, exit status) of ``python -m translate.cli ARGS`` (``cli=False``: of the script
    ``ARGS[0]`` with the rest as its arguments); ``processes`` > 1: that many under torchrun, the peak RSS of the
    largest."""
    hwm = log.with_suffix(".hwm")
    launch = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                        str(processes), "--no-python", sys.executable]
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, *launch, "-c", _LAUNCHER, *(["-m=translate.cli"] if cli else []),
                               *args], stdout=out, stderr=subprocess.STDOUT,
                              env={**child_env(threads), "BENCH_HWM": str(hwm)})
        elapsed = time.perf_counter() - start
    peaks = [int(p.read_text()) for p in hwm.parent.glob(hwm.name + "*")]  # one per rank under torchrun
    return elapsed, max(peaks) / 2**20 if peaks else float("nan"), proc.returncode


def make_model(directory: Path, ngf: int) -> tuple[Path, float]:
    """A randomly initialised resnet_9blocks model directory (CycleGAN-style: instance norm, no dropout); returns
    it and the generator's forward GFLOP per 256² image."""
    from translate.networks import create_generator
    from translate.networks.pretrained import generator_spec, save_pretrained

    torch.manual_seed(0)
    spec = generator_spec("resnet_9blocks", ngf, "instance", False, 3, 3)
    net = create_generator("resnet_9blocks", ngf=ngf, norm="instance", use_dropout=False)
    save_pretrained(directory, {"G": net}, {"recipe": "cyclegan", "generators": {"G": spec},
                                            "directions": {"AtoB": "G"}, "norm_mode": "eval"})
    return directory, forward_gflop(net, 3, 256)


def convert_row(model: Path, inputs: Path, out: Path, extra: list[str], n: int, threads: int,
                processes: int = 1) -> dict:
    elapsed, peak, status = run_command(["convert", str(model), str(inputs), str(out), "--quiet", "--format", "png",
                                         "--overwrite", *extra], out.with_suffix(".log"), threads,
                                        processes=processes)
    if status:
        return {"error": out.with_suffix(".log").read_text().strip().splitlines()[-1][:200]}
    summary = json.loads((out / "convert_summary.json").read_text())
    return {"s_iter": elapsed / n, "images_s": n / elapsed, "peak_gib": peak, "inner_images_s": summary["images_per_s"],
            "startup_s": elapsed - summary["elapsed_s"]}


def plain_convert(model: str, inputs: str, out: str) -> dict:
    """The reference's test.py loop written plainly, as the baseline on this machine: one image at a time, PIL in
    and out, a ``no_grad`` forward of the same network. Timed from outside, like the ``translate convert`` rows."""
    from translate.networks.pretrained import load_pretrained

    net = load_pretrained(model)[1]["G"].eval()
    for path in sorted(Path(inputs).iterdir()):
        x = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            y = net(x)
        y = ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(y).save(Path(out) / f"{path.stem}.png")
    return {}


def psnr_dirs(a: Path, b: Path) -> tuple[float, float]:
    """(mean, min) PSNR in dB between the 8-bit PNGs of two output folders."""
    values = []
    for path in sorted(a.glob("*.png")):
        x = np.asarray(Image.open(path), dtype=np.float64)
        y = np.asarray(Image.open(b / path.name), dtype=np.float64)
        mse = np.mean((x - y) ** 2)
        values.append(float("inf") if mse == 0 else 10 * np.log10(255**2 / mse))
    return float(np.mean(values)), float(np.min(values))


# -- the table ---------------------------------------------------------------------------------------------------
def fmt(value, spec: str = ".3g", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{value:{spec}}{unit}"


def table(rows: list[dict]) -> str:
    head = ["job", "settings", "s/iter", "images/s", "peak mem", "vs reference", "GFLOP/iter", "FLOP-bound limit",
            "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['job']} | {r['settings']} | failed: {r['error']} |" + " |" * (len(head) - 3))
            continue
        ref = r.get("reference")
        if ref is None:
            vs = "—"
        elif r["kind"] == "train":  # time per image (the reference trains with batch 1): lower is better
            vs = f"{r['s_iter'] / r.get('batch', 1) / ref:.2f}× time" + (" per image" if r.get("batch", 1) > 1 else "")
        else:  # images/s: higher is better
            vs = f"{r['images_s'] / ref:.2f}× speed"
        limit = r.get("gflop") and r.get("gflops") and r["gflop"] / r["gflops"]
        bound = f"{limit:.3g} s ({r['s_iter'] / limit:.1f}×)" if limit else "—"
        lines.append("| " + " | ".join([
            r["job"], r["settings"], fmt(r.get("s_iter")), fmt(r.get("images_s")),
            fmt(r.get("peak_gib"), ".2f", " GiB"), vs, fmt(r.get("gflop"), ".4g"), bound, r.get("notes", "")]) + " |")
    return "\n".join(lines)


WORKERS = {"train": train_row, "memory": memory_row, "data": data_row, "plain_convert": plain_convert,
           "video": video_row}


# -- main --------------------------------------------------------------------------------------------------------
DEFAULTS = {  # option: (default, default with --quick)
    "rows": ("train,convert,data,tiled", "train,convert,data,tiled"), "jobs": ("cyclegan,pix2pix", "cyclegan"),
    "precisions": ("fp32,bf16", "fp32"), "workers": ("0,1,2", "0"), "threads": (cores(), 1),
    "warmup": (1, 1), "iters": (3, 2), "images": (50, 3), "photos": (2, 0), "onnx": (True, False),
    "tiled_size": (4096, 320), "baseline": (True, True), "processes": (2, 2),
    "video_sizes": ("256x256:25,1280x720:6", "64x64:4,96x64:4"), "video_precisions": ("fp32,auto", "fp32,auto"),
    "video_long_size": ("1280x720", "96x64"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", help="comma list of train,convert,data,tiled,memory,video (default all but memory and "
                                  "video)")
    p.add_argument("--sizes", default="256,512,1024",
                   help="memory rows: image sides to train at, with and without checkpointing (default 256,512,1024)")
    p.add_argument("--jobs", help="training jobs: cyclegan,pix2pix,cut,fastcut (default cyclegan,pix2pix)")
    p.add_argument("--precisions", help="fp32,bf16 for training and conversion (default both)")
    p.add_argument("--batch", type=int, default=1, help="training batch size (default 1, as the reference)")
    p.add_argument("--compile", action="store_true", help="also train with train.compile=true (first step = compile)")
    p.add_argument("--channels-last", action="store_true", help="also train with train.channels_last=true")
    p.add_argument("--interleave", action="store_true",
                   help="run each job's training variants in one process, alternating their steps: comparisons "
                        "immune to the machine's drift (peak memory then shared)")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction,
                   help="also time a plain PyTorch loop on the same networks (default on)")
    p.add_argument("--warmup", type=int, help="untimed training steps first (default 1)")
    p.add_argument("--iters", type=int, help="timed CycleGAN steps; pix2pix runs 3× as many (default 3)")
    p.add_argument("--images", type=int, help="256² images converted (default 50, as the reference's test.py)")
    p.add_argument("--photos", type=int, help="1024×768 photos converted (default 2; 0: none)")
    p.add_argument("--onnx", action=argparse.BooleanOptionalAction, help="onnxruntime conversion rows (default on)")
    p.add_argument("--processes", type=int, help="processes of the torchrun conversion row (default 2; 1: no row)")
    p.add_argument("--workers", help="DataLoader worker counts to measure (default 0,1,2)")
    p.add_argument("--tiled-size", type=int, help="side of the image converted in tiles (default 4096)")
    p.add_argument("--video-sizes", metavar="WxH:FRAMES,...",
                   help="video rows: clip sizes and frame counts (default 256x256:25,1280x720:6: the paper-width model "
                        "takes seconds a 720p frame on a CPU; '': none, for --video-long alone)")
    p.add_argument("--video-fps", type=int, default=25, help="video rows: frame rate of the clips (default 25)")
    p.add_argument("--video-precisions", help="video rows: --dtype values to convert the clips in (default fp32,auto)")
    p.add_argument("--video-long", type=int, default=0, metavar="SECONDS",
                   help="video rows: also the peak memory of a SECONDS-long clip against a 5-second one, with a tiny "
                        "model (e.g. 60; default 0: not run)")
    p.add_argument("--video-long-size", metavar="WxH", help="size of those clips (default 1280x720)")
    p.add_argument("--threads", type=int, help="intra-op threads of every row (default: this machine's cores)")
    p.add_argument("--quick", action="store_true", help="tiny networks and images, fp32, 1 thread: a smoke test")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of a step of each job, exit")
    p.add_argument("--json", metavar="PATH", help="also write the rows and machine details as JSON")
    p.add_argument("--workdir", help="keep the synthetic data and outputs here (default: a temp dir, deleted)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, values in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, values[args.quick])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        spec = json.loads(args.worker)
        print(RESULT + json.dumps(WORKERS[spec.pop("kind")](**spec)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="translate-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.profile:
            make_datasets(work / "data", 4, 64 if args.quick else 256)
            for job in args.jobs.split(","):
                for precision in args.precisions.split(","):
                    ops = profile_step(job, str(work / "data"), precision, args.quick, args.threads)
                    print(f"### one {job} step, {precision}, {args.threads} threads\n```\n{ops}```", flush=True)
            return 0
        return benchmark(args, work)


def train_rows(args, data_root: Path, gflops: dict, add) -> None:
    q = args.quick
    variants = [(p, False, False) for p in args.precisions.split(",")]
    if args.compile:
        variants += [(p, True, False) for p, _, _ in variants]
    if args.channels_last:
        variants += [(p, False, True) for p, c, _ in variants if not c]
    # The plain loop next to each eager variant (same precision), so each engine row can say how it compares.
    variants = [{"precision": p, "compile": c, "channels_last": cl, "plain": plain} for p, c, cl in variants
                for plain in ([True, False] if args.baseline and not (c or cl) else [False])]
    for job in args.jobs.split(","):
        n = args.iters * (3 if job == "pix2pix" else 1)
        spec = dict(job=job, batch=args.batch, warmup=args.warmup, iters=n, root=str(data_root), quick=q,
                    threads=args.threads)
        def rows_of(group: list[dict], spec: dict = spec) -> list[dict]:
            result = in_worker("train", variants=group, **spec)
            return result.get("rows") or [result] * len(group)  # a failed worker: its error on each row

        results = rows_of(variants) if args.interleave else [rows_of([v])[0] for v in variants]
        plain_s_iter = {}
        for v, r in zip(variants, results):
            r = dict(r)
            settings = f"{v['precision']}, batch {args.batch}" + (", compile" if v["compile"] else "") + (
                ", channels_last" if v["channels_last"] else "") + (", tiny" if q else ", 256²")
            r.update(kind="train", job=f"{'plain loop' if v['plain'] else 'train'} {job}", settings=settings,
                     batch=args.batch, gflops=gflops.get(f"{v['precision']}_train"),
                     reference=None if q else REFERENCE.get(job))
            if "error" not in r:
                r["notes"] = (f"median of {n} after {args.warmup} warm-up"
                              + (", interleaved" if args.interleave else "")
                              + f"; min {r['min_s']:.3g}, max {r['max_s']:.3g}")
                if v["plain"]:
                    plain_s_iter[v["precision"]] = r["s_iter"]
                elif v["precision"] in plain_s_iter:
                    r["notes"] += f"; {r['s_iter'] / plain_s_iter[v['precision']]:.2f}× the plain loop's time"
                if v["compile"]:
                    r["notes"] += f"; first step (compile) {r['first_s']:.1f} s"
            add(r)


def available_gib() -> float:
    return int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                    if ln.startswith("MemAvailable:"))) / 2**20


def memory_rows(args, work: Path, add) -> None:
    """``--rows memory``: each job at each of ``--sizes``, without and with train.gradient_checkpointing (paper
    widths, batch 1, fp32), each row in a fresh process. A row whose estimate (4× the step memory of the size
    below, plus what the process holds) exceeds the memory available now is not run, and says so."""
    sizes = [128] if args.quick else [int(n) for n in args.sizes.split(",")]
    jobs = args.jobs.split(",")
    for job in jobs:
        step_gib = {}  # (size, checkpointing) -> the steps' own memory
        for size in sizes:
            root = work / f"data{size}"
            if not root.exists():
                make_datasets(root, 2, size)
            default = None
            for ckpt in (False, True):
                settings = f"{size}², batch 1, fp32" + (", gradient checkpointing" if ckpt else "")
                below, free = step_gib.get((size // 2, ckpt)), available_gib()
                # A row whose estimate (4× the step memory of the size below) exceeds the memory available runs one
                # step stopped where it passes what is available (less 2 GiB left to the rest of the machine).
                limit = free - 2.0 if below is not None and 4 * below + 1.0 > free else None
                # One step at 1024² takes minutes here: no warm-up step there (its first step is the timed one).
                warm = 0 if size >= 1024 or limit else args.warmup
                r = in_worker("memory", job=job, size=size, checkpointing=ckpt, warmup=warm, iters=args.iters,
                              root=str(root), quick=args.quick, threads=args.threads, limit_gib=limit)
                r.update(kind="memory", job=f"memory {job}", settings=settings)
                if limit and "error" in r:
                    r["error"] += (f"; estimated need ≈ {4 * below + 1:.0f} GiB (4× the {size // 2}² step), "
                                   f"{free:.0f} GiB available")
                if "error" not in r:
                    step_gib[(size, ckpt)] = r["step_gib"]
                    r["notes"] = (f"median of {1 if limit else args.iters} after {warm} warm-up; steps' own memory "
                                  f"{r['step_gib']:.2f} GiB; load {load_average()}")
                    if ckpt and default:
                        r["notes"] += (f"; {r['peak_gib'] / default['peak_gib']:.0%} of the peak, "
                                       f"{r['step_gib'] / default['step_gib']:.0%} of the step memory, "
                                       f"{r['s_iter'] / default['s_iter']:.2f}× the time without checkpointing")
                    default = default or (None if ckpt else r)
                add(r)
            if args.interleave and size <= 512:
                r = in_worker("memory", job=job, size=size, checkpointing=True, warmup=args.warmup,
                              iters=args.iters, root=str(root), quick=args.quick, threads=args.threads,
                              interleave=True)
                r.update(kind="memory", job=f"memory {job}", settings=f"{size}², checkpointing on/off interleaved")
                if "error" not in r:
                    r["notes"] = (f"checkpointing {r['ratio']:.2f}× the time without (median {r['s_iter']:.3g} vs "
                                  f"{r['off_s']:.3g} s; per round {', '.join(f'{x:.2f}' for x in r['ratios'])}); "
                                  f"load {load_average()}")
                add(r)


def convert_rows(args, work: Path, gflops: dict, add) -> None:
    q = args.quick
    size, n = (64, args.images) if q else (256, args.images)
    model, g256 = make_model(work / "model", 8 if q else 64)
    sets = [("256", write_images(work / "in256", n, size, size, 4), n, g256 * (size / 256) ** 2)]
    if args.photos:
        sets.append(("photo", write_images(work / "photos", args.photos, 1024, 768, 5), args.photos, g256 * 12))
    backends = [(p, ["--dtype", p]) for p in args.precisions.split(",")]
    if args.onnx:
        elapsed, _, status = run_command(["export", str(model)], work / "export.log", args.threads)
        export_note = f"export took {elapsed:.1f} s" if not status else "export failed"
        backends.append(("onnxruntime", ["--backend", "onnxruntime"]))
    for label, inputs, count, gflop in sets:
        outs, plain_images_s, fp32_row = {}, None, None
        if args.baseline:
            out = work / f"out-{label}-plain"
            out.mkdir(exist_ok=True)
            spec = json.dumps({"kind": "plain_convert", "model": str(model), "inputs": str(inputs), "out": str(out)})
            elapsed, peak, status = run_command([__file__, "--worker", spec], out.with_suffix(".log"), args.threads,
                                                cli=False)
            what = f"{count} images {size}²" if label == "256" else f"{count} photos 1024×768"
            r = {"error": "failed"} if status else {"s_iter": elapsed / count, "images_s": count / elapsed,
                                                    "peak_gib": peak, "notes": "whole command; the reference's loop"}
            r.update(kind="convert", job="plain loop resnet_9blocks", settings=f"{what}, fp32", gflop=gflop,
                     gflops=gflops["fp32_forward"], reference=None if q or label != "256" else REFERENCE["convert"])
            plain_images_s = r.get("images_s")
            add(r)
        for name, extra in backends:
            out = outs[name] = work / f"out-{label}-{name}"
            r = convert_row(model, inputs, out, extra, count, args.threads)
            what = f"{count} images {size}²" if label == "256" else f"{count} photos 1024×768"
            r.update(kind="convert", job="convert resnet_9blocks", settings=f"{what}, {name}", gflop=gflop,
                     gflops=gflops.get("bf16_forward" if name == "bf16" else "fp32_forward"),
                     reference=REFERENCE["convert"] if label == "256" and not q else None)
            if "error" not in r:
                notes = [f"whole command; {r['inner_images_s']:.3g} images/s without {r['startup_s']:.1f} s start-up"]
                if name != "fp32" and "fp32" in outs:
                    mean, low = psnr_dirs(outs["fp32"], out)
                    notes.append(f"PSNR vs fp32 {mean:.1f} dB (min {low:.1f})")
                if name == "onnxruntime":
                    notes.append(export_note)
                if plain_images_s:
                    notes.append(f"{r['images_s'] / plain_images_s:.2f}× the plain loop's images/s")
                r["notes"] = "; ".join(notes)
            fp32_row = r if name == "fp32" else fp32_row
            add(r)
        if label == "256" and args.processes > 1:
            add(processes_row(args, model, inputs, work, count, f"{what}, fp32", gflop, gflops, fp32_row,
                              outs.get("fp32")))


def processes_row(args, model: Path, inputs: Path, work: Path, count: int, settings: str, gflop: float,
                  gflops: dict, one: dict | None, one_out: Path | None) -> dict:
    """The fp32 conversion on ``--processes`` processes under torchrun (CPU processes, or one per GPU), against
    the 1-process fp32 row ``one`` (written to ``one_out``)."""
    n = args.processes
    threads = max(1, cores() // n)  # what translate convert gives each process under a launcher
    out = work / f"out-{n}-processes"
    r = convert_row(model, inputs, out, ["--dtype", "fp32"], count, threads, processes=n)
    where = (f"{torch.cuda.device_count()} GPUs" if device().type == "cuda"
             else f"CPU, {threads} thread{'s' * (threads > 1)} each")
    r.update(kind="convert", job="convert resnet_9blocks", settings=f"{settings}, {n} processes ({where}), torchrun",
             gflop=gflop, gflops=gflops["fp32_forward"], reference=None)
    if "error" not in r:
        notes = [f"whole command; {r['inner_images_s']:.3g} images/s without {r['startup_s']:.1f} s start-up",
                 f"peak RSS of the largest process; {cores()} cores shared"]
        if one and "error" not in one:
            same = {p.name: p.read_bytes() for p in out.glob("*.png")} == {
                p.name: p.read_bytes() for p in one_out.glob("*.png")}
            notes.append(f"{r['images_s'] / one['images_s']:.2f}× the 1-process fp32 row's images/s "
                         f"({r['inner_images_s'] / one['inner_images_s']:.2f}× without start-up); outputs "
                         + ("identical" if same else "differ"))
        r["notes"] = "; ".join(notes)
    return r


def data_rows(args, data_root: Path, rows: list[dict], add) -> None:
    consumers = [r for r in rows if r.get("job") == "train cyclegan" and "images_s" in r]
    need = max(r["images_s"] for r in consumers) if consumers else 1 / REFERENCE["cyclegan"]
    for workers in (int(w) for w in args.workers.split(",")):
        r = in_worker("data", workers=workers, items=8 if args.quick else 60, root=str(data_root), quick=args.quick,
                      threads=args.threads)
        r.update(kind="data", job="data unaligned", settings=f"{workers} workers, resize_and_crop "
                 + ("72→64" if args.quick else "286→256"))
        if "error" not in r:
            r["notes"] = (f"items (A+B) per s: {r['images_s'] / need:.0f}× the fastest CycleGAN step's "
                          f"{need:.3g}/s (needs ≥ 5×)")
        add(r)


def tiled_row(args, work: Path, gflops: dict, add) -> None:
    from translate.inference.tiling import padded_size, tile_positions

    side, tile = args.tiled_size, 128 if args.quick else 512  # 512: the CPU default of --tile auto
    model, g256 = make_model(work / "model", 8 if args.quick else 64)
    inputs = write_images(work / "big", 1, side, side, 6)
    extra = ["--dtype", "fp32"] + (["--tile", str(tile)] if args.quick else [])
    r = convert_row(model, inputs, work / "out-big", extra, 1, args.threads)
    tiles = len(tile_positions(padded_size(side, 4), tile, tile // 8, 4)) ** 2
    r.update(kind="tiled", job="convert tiled", settings=f"1 image {side}², fp32, {tiles} tiles of {tile}²",
             gflop=g256 * (tiles * tile**2 + min(side**2, 1 << 20)) / 256**2, gflops=gflops["fp32_forward"],
             notes="whole command; peak RSS of the process; FLOPs include the statistics pass (≤ 1 MP)")
    add(r)


def video_rows(args, work: Path, gflops: dict, add) -> None:
    """``--rows video``: a synthetic clip (.mp4, H.264) converted frame by frame (decode, translate, encode H.264)
    at each of ``--video-sizes``, in each of ``--video-precisions`` (``auto`` says what it resolved to, and is not
    run again at a size where it resolved to a precision already measured), next to the same frames as a folder of
    PNGs converted into PNGs (fp32). Each row in a fresh process, timed and its peak taken after the model is loaded.
    ``--video-long S``: the peak of a 5-second and an S-second clip at ``--video-long-size`` with a tiny model (ngf
    2: the time and memory are then mostly the pipeline's), which a streamed conversion keeps about equal."""
    model, g256 = make_model(work / "model", 8 if args.quick else 64)
    fps, resolved = args.video_fps, None
    for spec in filter(None, args.video_sizes.split(",")):
        width, height, n = parse_video_size(spec)
        clip = write_clip(work / f"clip-{width}x{height}.mp4", width, height, n, fps, 7)
        frames = write_png_frames(clip, work / f"frames-{width}x{height}")
        gflop, what = g256 * width * height / 256**2, f"{n} frames {width}×{height}"
        print(f"video rows: {what} ({n / fps:.2f} s at {fps} fps), the same frames as {n} PNGs", flush=True)
        done = {}
        for precision in args.video_precisions.split(","):
            if precision == "auto" and resolved in done:
                add({"kind": "video", "job": "convert video", "settings": f"{what}, auto (→ {resolved})",
                     "notes": f"not run again: auto resolved to {resolved} at a size above, so its figures are "
                              f"the {resolved} row's of this size"})
                continue
            runs = [("video", clip, work / f"out-{width}x{height}-{precision}.mp4")]
            if precision == "fp32":
                runs.append(("folder", frames, work / f"out-{width}x{height}-frames"))
            for kind, inputs, out in runs:
                r = in_worker("video", model=str(model), inputs=str(inputs), out=str(out), dtype=precision,
                              threads=args.threads)
                label = precision if precision != "auto" or "error" in r else f"auto (→ {r['dtype']})"
                r.update(kind="video", job="convert video" if kind == "video" else "convert PNG frames",
                         settings=f"{what}, {label}" if kind == "video" else f"{n} PNGs {width}×{height}, {label}",
                         gflop=gflop, reference=None)
                if "error" not in r:
                    r["gflops"] = gflops.get(f"{r['dtype']}_forward")
                    notes = [f"{r['frames']} frames; after the model's load; peak above it "
                             f"{r['rss_gib'] - r['before_gib']:.2f} GiB RSS"
                             + (f" ({r['device']}: peak = max_memory_allocated)" if r["device"] != "cpu" else "")]
                    if kind == "folder":
                        if "fp32" in done:
                            notes.append(f"the video's frames/s {done['fp32']['images_s'] / r['images_s']:.2f}× this")
                    else:
                        done[r["dtype"]] = r
                        resolved = r["dtype"] if precision == "auto" else resolved
                    r["notes"] = "; ".join(notes + [f"load {load_average()}"])
                add(r)
    if args.video_long:
        width, height, _ = parse_video_size(args.video_long_size)
        tiny, _ = make_model(work / "model-tiny", 2)
        short = None
        for seconds in sorted({min(5, args.video_long), args.video_long}):
            n = seconds * fps
            clip = write_clip(work / f"long-{seconds}s.mp4", width, height, n, fps, 8)
            out = work / f"long-{seconds}s-out.mp4"
            r = in_worker("video", model=str(tiny), inputs=str(clip), out=str(out), dtype="fp32", threads=args.threads)
            r.update(kind="video", job="video memory", settings=f"{n} frames {width}×{height} ({seconds} s at {fps} "
                                                                 "fps), resnet_9blocks ngf 2, fp32")
            if "error" not in r:
                r["notes"] = (f"peak above the loaded model {r['rss_gib'] - r['before_gib']:.2f} GiB RSS"
                              + (f"; {r['peak_gib'] / short['peak_gib']:.2f}× the {short['frames']}-frame clip's peak"
                                 if short else "") + f"; load {load_average()}")
                short = short or r
            add(r)
            clip.unlink()
            out.unlink(missing_ok=True)  # long clips are not kept


def benchmark(args: argparse.Namespace, work: Path) -> int:
    hw = hardware()
    meta = {"date": datetime.date.today().isoformat(), "cpu": hw["cpu"], "cores": cores(), "threads": args.threads,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "torch": torch.__version__,
            "python": platform.python_version(), "load_before": load_average(), "command": " ".join(sys.argv)}
    started = time.perf_counter()
    print(f"# translate benchmark, {meta['date']}: {meta['cpu']}, {meta['cores']} cores, {args.threads} threads, "
          f"GPU {meta['gpu'] or 'none'}, torch {meta['torch']}; load average {meta['load_before']}", flush=True)
    meta["hardware"] = hw
    print(f"hardware: CPU flags {' '.join(hw['cpu_flags']) or 'none of ' + ' '.join(CPU_FLAGS)}; bf16 unit "
          f"{hw['cpu_bf16_unit'] or 'none'}; torch CPU capability {hw['torch_cpu_capability']}; oneDNN ISA "
          f"{hw['onednn_isa']}, 3x3 conv fp32 {hw['onednn_conv_fp32']}, bf16 {hw['onednn_conv_bf16']}; GPU "
          f"{hw['gpu'] or 'none'}; auto precision here: {hw['auto_precision']}", flush=True)
    # bf16 only where it is asked for and runs natively: emulated, this probe alone takes many minutes.
    bf16 = "bf16" in args.precisions.split(",") and (hw["cpu_bf16_unit"] or device().type == "cuda")
    gflops = meta["conv_gflops"] = conv_throughput(args.quick, bool(bf16))
    print("conv throughput, GFLOP/s (a resnet block's 3×3 conv; train = forward+backward): "
          + ", ".join(f"{k} {v:.0f}" for k, v in gflops.items()), flush=True)
    data_root = work / "data"
    make_datasets(data_root, 4 if args.quick else 24, 64 if args.quick else 256)
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)

    wanted = args.rows.split(",")
    if "train" in wanted:
        train_rows(args, data_root, gflops, add)
    if "convert" in wanted:
        convert_rows(args, work, gflops, add)
    if "data" in wanted:
        data_rows(args, data_root, rows, add)
    if "tiled" in wanted:
        tiled_row(args, work, gflops, add)
    if "memory" in wanted:
        memory_rows(args, work, add)
    if "video" in wanted:
        video_rows(args, work, gflops, add)
    meta["load_after"] = load_average()
    meta["total_s"] = time.perf_counter() - started
    print(f"\n{table(rows)}\n\nvs reference: training = s/iter ÷ reference (< 1 is faster), conversion = images/s ÷ "
          "reference (> 1 is faster). FLOP-bound limit: network GFLOP ÷ measured conv GFLOP/s (in brackets: measured "
          f"÷ limit). Load average before {meta['load_before']}, after {meta['load_after']}; "
          f"total {meta['total_s']:.0f} s.")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
