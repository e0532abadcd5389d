"""Prepare Cityscapes for pix2pix and CycleGAN from your own download.

Cityscapes' licence needs a registered account, so nothing downloads it for you: log in at
https://www.cityscapes-dataset.com/downloads/ and get gtFine_trainvaltest.zip (labels) and
leftImg8bit_trainvaltest.zip (photos). Pass the zips themselves (read in place, nothing is unpacked) or the
folders they unzip to. Like the reference's datasets/prepare_cityscapes_dataset.py, this writes, resized to
256x256 and with Cityscapes' val split as test:

  OUTPUT_DIR/train/N.jpg, test/N.jpg      photo|label side by side (pix2pix, data.dataset_mode=aligned)
  OUTPUT_DIR/trainA/N_A.jpg, testA/...    photos  (CycleGAN, data.dataset_mode=unaligned)
  OUTPUT_DIR/trainB/N_B.jpg, testB/...    colour label maps
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as `python datasets/...py` from a checkout: make the package beside this folder importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate.data import download as dl  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="Example: python datasets/prepare_cityscapes.py --gtFine_dir gtFine_trainvaltest.zip "
        "--leftImg8bit_dir leftImg8bit_trainvaltest.zip --output_dir datasets/cityscapes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gtFine_dir", required=True, help="gtFine_trainvaltest.zip or its unzipped folder")
    parser.add_argument("--leftImg8bit_dir", required=True, help="leftImg8bit_trainvaltest.zip or its unzipped folder")
    parser.add_argument("--output_dir", default="datasets/cityscapes", help="where to write (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="side of the square images (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing, non-empty --output_dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return dl.run_cli(lambda: dl.prepare_cityscapes(
        args.gtFine_dir, args.leftImg8bit_dir, args.output_dir, size=args.size, force=args.force,
        progress=not args.no_progress,
    ))


if __name__ == "__main__":
    sys.exit(main())
