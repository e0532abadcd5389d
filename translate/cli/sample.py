"""``translate sample MODEL OUT_DIR``: draw images from a noise → image model (DCGAN) into PNG files (argument parsing
only; the work is ``translate.inference.sampler.Sampler``)."""

from __future__ import annotations

import argparse
import math
import secrets
import sys
from pathlib import Path

EPILOG = """\
Writes OUT_DIR/00000.png ... (and OUT_DIR/grid.png with --grid), each file atomically (temp file, then rename).
The same MODEL, --n and --seed give byte-identical files; without --seed a random one is drawn and printed.
Translation models (pix2pix, CycleGAN, super-resolution) are refused: use translate convert for them.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sample", help="draw images from a noise model (DCGAN) into a folder", epilog=EPILOG,
                              description="Draw --n images from MODEL into OUT_DIR as PNG files.",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model directory (config.json + safetensors), e.g. runs/NAME/model")
    p.add_argument("output_dir", metavar="OUT_DIR", help="where the PNG files go (created if missing)")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=None, help="seed of the latent vectors (default: a random one)")
    p.add_argument("--grid", action="store_true", help="also write grid.png, all images in a square grid")
    p.add_argument("--batch-size", type=int, default=64, help="images generated together (default 64)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 on GPUs that support it, else fp32")
    p.set_defaults(func=run)


def _pixels(image):
    """CHW float in [0, 1] → HWC uint8 array."""
    return image.mul(255).round_().byte().permute(1, 2, 0).contiguous().numpy()


def run(args: argparse.Namespace) -> int:
    from torchvision.utils import make_grid

    from translate.imageio import write_image
    from translate.inference.sampler import Sampler

    if args.n < 1:
        print("error: --n must be at least 1", file=sys.stderr)
        return 2
    seed = secrets.randbits(31) if args.seed is None else args.seed
    try:
        sampler = Sampler.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    images = sampler.tensor(args.n, seed, batch_size=args.batch_size)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        write_image(out / f"{i:05d}.png", _pixels(image))
    written = f"{args.n} images"
    if args.grid:
        grid = make_grid(images, nrow=math.ceil(math.sqrt(args.n)), padding=2, pad_value=1.0)
        write_image(out / "grid.png", _pixels(grid[: images.shape[1]]))  # make_grid makes gray images RGB
        written += " and grid.png"
    print(f"{written} written to {out} (seed {seed}; --seed {seed} repeats them)")
    return 0
