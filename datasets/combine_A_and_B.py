"""Combine A/ and B/ image folders into side-by-side A|B pairs for pix2pix (data.dataset_mode=aligned).

Same options as the reference's datasets/combine_A_and_B.py. For each split folder (train, val, test...) of
--fold_A, an image fold_A/SPLIT/x.png is paired with fold_B/SPLIT/x.* (same relative path, any extension) and
written to fold_AB/SPLIT/x.png, A on the left. Partners must have the same size; images without a partner are
skipped and listed by name.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Run as `python datasets/...py` from a checkout: make the package beside this folder importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate.data import download as dl  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="Example: python datasets/combine_A_and_B.py --fold_A shoes/A --fold_B shoes/B "
        "--fold_AB datasets/shoes  (shoes/A/train/1.png + shoes/B/train/1.jpg -> datasets/shoes/train/1.png)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fold_A", required=True, help="input folder of A images, one subfolder per split")
    parser.add_argument("--fold_B", required=True, help="input folder of B images, same subfolders and names")
    parser.add_argument("--fold_AB", required=True, help="output folder (data.root for training)")
    parser.add_argument("--num_imgs", type=int, default=None, help="at most this many pairs per split")
    parser.add_argument("--use_AB", action="store_true",
                        help="pair NAME_A.* in fold_A with NAME_B.* in fold_B, writing NAME.* (reference option)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="processes writing images (default: %(default)s)")
    parser.add_argument("--no_multiprocessing", action="store_true", help="same as --workers 1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        report = dl.combine_a_and_b(
            args.fold_A, args.fold_B, args.fold_AB, num_imgs=args.num_imgs, use_ab=args.use_AB,
            workers=1 if args.no_multiprocessing else args.workers, progress=not args.no_progress,
        )
        print(report.summary())

    return dl.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
