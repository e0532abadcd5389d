"""``translate report RUN_DIR``: write the run's static HTML report (losses, metrics, samples, test gallery)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write RUN_DIR/report/index.html",
        description="Write a static, offline HTML report of a run: loss curves, metric history, evaluation results, "
                    "sample grids over time and a sortable gallery of test images. Open it in any browser.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory")
    p.add_argument("--gallery", type=int, default=8, metavar="N",
                   help="test images in the gallery (default 8; 0: none)")
    p.add_argument("--device", help="device for the gallery's translations (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from translate.evaluation import write_report

    try:
        path = write_report(args.run_dir, gallery_size=args.gallery, device=args.device)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0
