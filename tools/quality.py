#!/usr/bin/env python
"""Quality against a known truth: train on the built-in photo2stylized data, translate its test photos, and score
them against their true stylisations (PSNR, SSIM, LPIPS where it runs offline, and the colour and texture gap of
translate.data.gap between outputs and truths: whether they have the truths' colours and detail, wherever they put
them), next to two baselines. ``--task`` picks another filter as the truth: near tasks, whose output keeps the
input's layout and detail (stylized_strong, enhanced), and far tasks, whose output changes its texture (sketch: a
pencil drawing; cartoon: flat posterised colours with outlines; stripes: zebra stripes in the warm regions only): the
same photos, a different task, on which settings chosen on the first are checked. A config with
``model.residual: auto`` is resolved from each task's training data as training resolves it (translate.data.gap),
and the choice is printed.

    PYTHONPATH=. python tools/quality.py                                   # paper vs recommended, both recipes
    PYTHONPATH=. python tools/quality.py --recipes cyclegan --levers diffaugment ema --seeds 0 1
    PYTHONPATH=. python tools/quality.py --configs configs/cyclegan_recommended.yaml my.yaml --steps 800

CycleGAN trains on the unpaired ``photo2stylized``, pix2pix on ``photo2stylized_paired`` (the same photos beside
their stylisations); both are tested on the same 14 held-out photos. Baselines: "do nothing" (output = input) and
per-channel histogram matching (the tone curves that map the pooled training photos onto their pooled
stylisations, applied to each test photo; no test truth seen); and, as a bound for tone changes alone, each photo
matched to its own truth.

Every run gets the same budget: ``--steps`` optimizer steps, networks ``--width`` wide, ``--size`` px crops taken at
the data's own scale (a config's load/crop ratio is kept). A config's lr schedule (n_epochs + n_epochs_decay) is
compressed into the budget, keeping its proportions. A lever row toggles one option of a config (on if the config
has it off, off if on). Runs are cached by their resolved config under ``--out``: rerunning reuses finished ones.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from translate import Translator, load_config, train  # noqa: E402
from translate.config import to_yaml  # noqa: E402
from translate.data import build_dataset, ensure_builtin  # noqa: E402
from translate.data.builtin import FAR_TASKS, PHOTO_FILTERS  # noqa: E402
from translate.data.gap import images_gap, resolve_auto  # noqa: E402
from translate.evaluation.metrics import LPIPS, psnr, ssim  # noqa: E402
from translate.networks import GENERATORS  # noqa: E402

NATIVE = 128  # side of the built-in photo2stylized images
PAPER = {"cyclegan": "configs/cyclegan_horse2zebra.yaml", "pix2pix": "configs/pix2pix_facades.yaml"}
RECOMMENDED = {"cyclegan": "configs/cyclegan_recommended.yaml", "pix2pix": "configs/pix2pix_recommended.yaml"}
PAIRED = {"cyclegan": False, "cut": False, "fastcut": False, "pix2pix": True}  # the recipes, and the data each takes
SHALLOWER = {"unet_256": "unet_128"}  # the same U-Net one level shallower, for the 128 px built-in images
# name: (overrides that turn the lever on, overrides that turn it off)
LEVERS = {
    "diffaugment": (["train.diffaugment=color,translation,cutout"], ["train.diffaugment=''"]),
    "diffaugment_color": (["train.diffaugment=color,translation,cutout"], ["train.diffaugment=translation,cutout"]),
    "augment": (["data.augment=[color_jitter,affine]"], ["data.augment=[]"]),
    "resize_conv": (["model.upsample=resize_conv"], ["model.upsample=transpose"]),
    "unet": (["model.netG=unet_256"], ["model.netG=resnet_9blocks"]),
    "ema": (["train.ema=true", "train.ema_decay=0.99"], ["train.ema=false"]),  # ramped (train.ema_warmup)
    "ema_warmup": (["train.ema_warmup=true"], ["train.ema_warmup=false"]),
    "cosine": (["train.lr_policy=cosine"], ["train.lr_policy=linear"]),
    "warmup": (["train.warmup_steps=40"], ["train.warmup_steps=0"]),  # a tenth of the default budget
    "lr_1e-3": (["train.lr=0.001"], ["train.lr=0.0002"]),
    "ttur": (["train.optimizers.D.lr=0.0001"], ["train.optimizers.D.lr=null"]),  # D at half G's paper lr
    "fast_d": (["train.optimizers.D.lr=0.002"], ["train.optimizers.D.lr=null"]),  # D at twice G's 1e-3 (Heusel)
    "instance_norm": (["model.norm=instance"], ["model.norm=batch"]),
    "spectral_norm": (["model.spectral_norm=true"], ["model.spectral_norm=false"]),
    "r1": (["model.r1_gamma=1.0"], ["model.r1_gamma=0.0"]),
    "identity_5": (["model.cyclegan.lambda_identity=5.0"], ["model.cyclegan.lambda_identity=0.5"]),
    "no_identity": (["model.cyclegan.lambda_identity=0.0"], ["model.cyclegan.lambda_identity=0.5"]),
    "smooth_l1": (["model.cyclegan.smooth_l1_beta=1.0"], ["model.cyclegan.smooth_l1_beta=0.0"]),
    "resnet": (["model.netG=resnet_9blocks"], ["model.netG=unet_256"]),
    "cycle_5": (["model.cyclegan.lambda_A=5.0", "model.cyclegan.lambda_B=5.0"],
                ["model.cyclegan.lambda_A=10.0", "model.cyclegan.lambda_B=10.0"]),
    "no_pool": (["model.cyclegan.pool_size=0"], ["model.cyclegan.pool_size=50"]),
    # pix2pix taught the truth pixel by pixel (the adversarial term at 1 % of its weight): what the generator reaches
    # with the answer in hand, the bound for a model that must find it unpaired
    "l1_only": (["model.pix2pix.lambda_L1=10000.0"], ["model.pix2pix.lambda_L1=100.0"]),
    "residual": (["model.residual=true"], ["model.residual=false"]),
    "no_residual": (["model.residual=false"], ["model.residual=true"]),  # on a residual=auto config: the plain one
    "temporal": (["train.temporal=1.0"], ["train.temporal=0.0"]),  # the equivariance term (video: less flicker)
    "temporal_10": (["train.temporal=10.0"], ["train.temporal=0.0"]),
    "temporal_100": (["train.temporal=100.0"], ["train.temporal=0.0"]),  # pix2pix's L1 weight
}


def task_data(recipe: str, task: str) -> list[str]:
    """The overrides that train ``recipe`` on the built-in data of ``task``: its paired form for paired recipes."""
    if PAIRED[recipe]:
        return [f"data.builtin=photo2{task}_paired", "data.dataset_mode=aligned", "data.direction=AtoB"]
    return [f"data.builtin=photo2{task}", "data.dataset_mode=unaligned", "data.direction=AtoB"]


def test_pairs(task: str = "stylized") -> tuple[np.ndarray, np.ndarray]:
    """The held-out photos and their true filtered versions, uint8 (N, H, W, 3) each."""
    folder = ensure_builtin(f"photo2{task}_paired") / "test"
    pairs = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    return pairs[:, :, :NATIVE], pairs[:, :, NATIVE:]


def histogram_matched(photos: np.ndarray, task: str = "stylized") -> np.ndarray:
    """Each channel through the tone curve that maps the pooled training photos' histogram onto the pooled histogram
    of their stylisations (learnt from the training pairs only; the same curve for every test photo)."""
    from skimage.exposure import match_histograms

    folder = ensure_builtin(f"photo2{task}_paired") / "train"
    pairs = np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    train_A, train_B = pairs[:, :NATIVE], pairs[:, NATIVE:]
    matched = match_histograms(train_A, train_B, channel_axis=-1)
    # match_histograms maps equal values to equal values: read each channel's curve off the pooled images.
    curves = np.zeros((3, 256))
    for c in range(3):
        values, first = np.unique(train_A[..., c], return_index=True)
        curves[c] = np.interp(np.arange(256), values, matched[..., c].ravel()[first])
    out = np.stack([curves[c][photos[..., c]] for c in range(3)], axis=-1)
    return np.round(out).clip(0, 255).astype(np.uint8)


def oracle_matched(photos: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each photo matched to its own truth's histograms: the best a tone curve alone can do (it peeks)."""
    from skimage.exposure import match_histograms

    return np.stack([np.round(match_histograms(p, t, channel_axis=-1)).clip(0, 255).astype(np.uint8)
                     for p, t in zip(photos, truth)])


def clip_warping_error(model_dir: Path | None) -> float:
    """The warping error (Lai et al. 2018; translate.evaluation.flicker) of the built-in clip translated frame by
    frame by the model in ``model_dir``, or of the clip itself (None)."""
    from translate.data.builtin import ensure_clip
    from translate.evaluation.flicker import clip_flicker, warping_error
    from translate.inference.video import iter_video_frames

    if model_dir is None:
        return warping_error(iter_video_frames(ensure_clip()))
    translator = Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")
    return clip_flicker(translator, ensure_clip())["warping_error"]["frame_by_frame"]


def score(outputs: np.ndarray, truth: np.ndarray, lpips: LPIPS | None) -> dict[str, float]:
    x, y = (torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255 for a in (outputs, truth))
    result = {"psnr": psnr(x, y).mean().item(), "ssim": ssim(x, y).mean().item()}
    # Whether the outputs have the truths' colours and detail anywhere in the image, not pixel by pixel: on a far
    # task an unpaired model can draw the right texture in other places, which PSNR and SSIM count as error.
    gap = images_gap(x * 2 - 1, y * 2 - 1)
    result |= {"colour_gap": gap.colour, "texture_gap": gap.texture}
    if lpips is not None:
        result["lpips"] = lpips(x, y).mean().item()
    return result


def load_task_config(path: str, overrides: list[str] = ()):
    # Configs for a user's own data may name no dataset yet; any built-in one lets them validate.
    return load_config(path, ["data.builtin=photo2stylized", *overrides])


def run_config(path: str, steps: int, size: int, width: int, seed: int, out: Path, extra: list[str],
               precision: str = "no", task: str = "stylized"):
    """The Config of one budgeted run of ``path`` with ``extra`` overrides on ``task``, trained in ``precision``."""
    base = load_task_config(path, extra)
    recipe = base.model.recipe
    if recipe not in PAIRED:
        raise SystemExit(f"{path}: recipe {recipe!r} has no built-in quality task (known: {', '.join(PAIRED)})")
    if base.model.residual == "auto":
        # model.residual=auto (and netG=auto), decided from this task's training data before anything depends on the
        # generator (its crop) and before the run is named: an auto run and the run of its choice made explicit are
        # the same run. Measured on the U-Nets' budget crops, as training on them would measure it.
        netG = "unet_256" if base.model.netG == "auto" else base.model.netG
        probe = run_config(path, steps, size, width, seed, out, [*extra, "model.residual=true", f"model.netG={netG}"],
                           precision, task)
        probe.model.residual, probe.model.netG = "auto", base.model.netG
        resolve_auto(probe, build_dataset(probe), lambda line: print(f"{Path(path).stem}, seed {seed}: {line}",
                                                                      flush=True))
        return run_config(path, steps, size, width, seed, out,
                          [*extra, f"model.residual={probe.model.residual}", f"model.netG={probe.model.netG}"],
                          precision, task)
    netG = SHALLOWER.get(base.model.netG, base.model.netG)
    crop = max(size, GENERATORS[netG].min_size)
    load_size = max(crop, round(NATIVE * base.data.load_size / base.data.crop_size))
    budget = ["data.root=''", *task_data(recipe, task), f"model.netG={netG}", f"model.ngf={width}",
              f"model.ndf={width}", f"data.crop_size={crop}", f"data.load_size={load_size}", "data.num_workers=0",
              f"train.seed={seed}", f"train.max_steps={steps}", f"train.checkpoint_every={steps}",
              f"train.sample_every={steps}", "train.progress=false", "train.report=false", "train.compile=false",
              "train.eval_every=0", f"train.mixed_precision={precision}"]
    config = load_config(path, extra + budget)  # the budget last: it already holds what the levers changed
    # The schedule, compressed into the budget: the epochs the run touches, split as the config splits them.
    per_epoch = math.ceil(len(build_dataset(config)) / config.data.batch_size)
    epochs = math.ceil(steps / per_epoch)
    t = config.train
    t.n_epochs = round(epochs * t.n_epochs / (t.n_epochs + t.n_epochs_decay))
    t.n_epochs_decay = epochs - t.n_epochs
    digest = hashlib.sha256(to_yaml(config).encode()).hexdigest()[:10]
    t.output_dir = str(out / f"{Path(path).stem}-{digest}")
    return config


def train_once(config) -> float:
    """Train (or reuse a finished run of the same resolved config); the training's wall time in seconds."""
    run_dir = Path(config.train.output_dir)
    timing = run_dir / "quality.json"
    if timing.is_file() and (run_dir / "model" / "config.json").is_file():
        return json.loads(timing.read_text())["seconds"]
    if run_dir.exists():  # an interrupted run: start it again
        import shutil

        shutil.rmtree(run_dir)
    start = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - start
    timing.write_text(json.dumps({"seconds": seconds}) + "\n")
    return seconds


def translate_all(model_dir: Path, photos: np.ndarray) -> np.ndarray:
    # fp32 whatever the training precision: the scores measure the training, and auto is bf16 on some CPUs.
    translator = Translator.from_pretrained(model_dir, device="cpu", dtype="fp32")
    return np.stack([translator(p, direction="AtoB") for p in photos])


def lever_rows(path: str, names: list[str]) -> list[tuple[str, list[str]]]:
    """(label, overrides) for the config itself and each lever toggled from its state in the config."""
    rows = [(Path(path).stem, [])]
    base = to_yaml(load_task_config(path))
    for name in names:
        on, off = LEVERS[name]
        has_it = to_yaml(load_task_config(path, on)) == base
        rows.append((f"{Path(path).stem} {'−' if has_it else '+'} {name}", off if has_it else on))
    return rows


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").is_file() else \
        platform.machine()
    from translate.devices import cpu_bf16_unit

    return f"{cpu} ({torch.get_num_threads()} threads, bf16 unit: {cpu_bf16_unit() or 'none'})"


def summarise(values: list[float], digits: int = 2) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({' / '.join(f'{v:.{digits}f}' for v in values)})"


HEADS = {"colour_gap": "colour gap", "texture_gap": "texture gap"}  # lower is better, as LPIPS and WARP
DIGITS = {"warp": 4, "colour_gap": 3, "texture_gap": 3}


def table(rows: list[dict], metrics: list[str]) -> str:
    head = ["row", "recipe", "steps", "train s", *(HEADS.get(m, m.upper()) for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["label"], row.get("recipe", "—"), str(row.get("steps", "—")),
                 summarise(row["seconds"], 0) if row.get("seconds") else "—"]
        cells += [summarise([s[m] for s in row["scores"] if m in s], DIGITS.get(m, 2)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def picture(path: Path, columns: list[np.ndarray], count: int) -> None:
    """``count`` test images, one per row; the columns side by side, 2 px apart."""
    gap = np.full((NATIVE, 2, 3), 255, np.uint8)
    rows = []
    for i in range(count):
        cells = [c[i] for c in columns]
        rows.append(np.concatenate([x for cell in cells for x in (cell, gap)][:-1], axis=1))
    grid = np.concatenate([x for r in rows for x in (r, np.full((2, r.shape[1], 3), 255, np.uint8))][:-1])
    Image.fromarray(grid).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=list(PAPER), choices=list(PAPER),
                        help="paper and recommended config of each (ignored with --configs)")
    parser.add_argument("--configs", nargs="+", help="config files to compare instead")
    parser.add_argument("--levers", nargs="*", default=[], help=f"one row per lever and config: {', '.join(LEVERS)}")
    parser.add_argument("--task", default="stylized", choices=list(PHOTO_FILTERS),
                        help="photo2<task>: the filter whose output is the truth (default stylized: the one the "
                             f"recommended configs were chosen on; the others check them; far from the input: "
                             f"{', '.join(FAR_TASKS)})")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--size", type=int, default=64, help="training crop (U-Nets take at least their minimum)")
    parser.add_argument("--width", type=int, default=16, help="model.ngf and model.ndf")
    parser.add_argument("--precision", default="no", choices=["no", "bf16", "auto"],
                        help="train.mixed_precision of every run (default no = fp32: the same numbers on every CPU; "
                             "bf16 measures its cost in quality, on a CPU with bf16 instructions)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "quality")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--picture", type=Path, help="save input | truth | each config's output (first seed)")
    parser.add_argument("--picture-images", type=int, default=4)
    parser.add_argument("--clip", action="store_true",
                        help="also translate the built-in clip and give its warping error (flicker; lower is less): "
                             "for the temporal levers")
    args = parser.parse_args(argv)
    unknown = [name for name in args.levers if name not in LEVERS]
    if unknown:
        parser.error(f"unknown lever {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    configs = args.configs or [p for r in args.recipes for p in (PAPER[r], RECOMMENDED[r]) if (REPO / p).is_file()]
    missing = [p for p in configs if not Path(p).is_file()]
    if missing:
        parser.error(f"config file not found: {', '.join(missing)}")

    photos, truth = test_pairs(args.task)
    reason = LPIPS.unavailable()
    lpips = None if reason else LPIPS()
    metrics = ["psnr", "ssim", "colour_gap", "texture_gap"] + ([] if reason else ["lpips"]) + (
        ["warp"] if args.clip else [])
    matched = histogram_matched(photos, args.task)
    nothing = score(photos, truth, lpips) | ({"warp": clip_warping_error(None)} if args.clip else {})
    rows = [{"label": "do nothing (output = input)", "scores": [nothing]},
            {"label": "histogram matching (train curves)", "scores": [score(matched, truth, lpips)]},
            {"label": "histogram matching to each truth (oracle)",
             "scores": [score(oracle_matched(photos, truth), truth, lpips)]}]
    shown = [photos, truth, matched]
    for path in configs:
        for label, extra in lever_rows(path, args.levers):
            row = {"label": label, "seconds": [], "scores": [], "steps": args.steps}
            for seed in args.seeds:
                config = run_config(path, args.steps, args.size, args.width, seed, args.out, extra,
                                    args.precision, args.task)
                row["recipe"] = config.model.recipe
                row["seconds"].append(train_once(config))
                outputs = translate_all(Path(config.train.output_dir) / "model", photos)
                row["scores"].append(score(outputs, truth, lpips))
                if args.clip:
                    row["scores"][-1]["warp"] = clip_warping_error(Path(config.train.output_dir) / "model")
                if seed == args.seeds[0] and not extra:
                    shown.append(outputs)
                print(f"{label} seed {seed}: {row['scores'][-1]} in {row['seconds'][-1]:.0f} s", flush=True)
            rows.append(row)

    precision = "fp32" if args.precision == "no" else args.precision
    print(f"\n{machine()}, torch {torch.__version__}, {datetime.date.today()}; photo2{args.task}; {precision} "
          f"training, {args.steps} steps, {args.width} wide, {args.size} px crops, seeds "
          f"{args.seeds}; {len(photos)} test images" + (f"; LPIPS skipped: {reason}" if reason else ""))
    print(table(rows, metrics))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.picture:
        picture(args.picture, shown, min(args.picture_images, len(photos)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
