"""Download a pix2pix benchmark dataset (aligned A|B images) into DATA_ROOT/NAME.

Same datasets and server as the reference's datasets/download_pix2pix_dataset.sh. The logic lives in
translate.data.download; this is only the command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as `python datasets/...py` from a checkout: make the package beside this folder importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate.data import download as dl  # noqa: E402

KIND = "pix2pix"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            f"Archives come from {dl.URLS[KIND].format(name='NAME')}. cityscapes cannot be downloaded (licence): "
            "use datasets/prepare_cityscapes.py. Example:\n"
            f"  python {dl.SCRIPTS[KIND]} facades && translate train CONFIG data.root=datasets/facades"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=dl.DATASETS[KIND], metavar="NAME",
                        help="one of: " + ", ".join(dl.DATASETS[KIND]))
    add_common_arguments(parser)
    return parser


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="datasets", help="DATA_ROOT: folder for the dataset (default: %(default)s)")
    parser.add_argument("--out", default=None, help="dataset folder to create (default: ROOT/NAME)")
    parser.add_argument("--archive", default=None, metavar="PATH",
                        help="use this already downloaded archive instead of downloading (it is kept)")
    parser.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive in ROOT")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check of a recorded checksum")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return dl.run_cli(lambda: dl.fetch_dataset(
        KIND, args.name, args.root, archive=args.archive, out=args.out, url=args.url, force=args.force,
        keep_archive=args.keep_archive, verify=not args.no_verify, progress=not args.no_progress,
    ))


if __name__ == "__main__":
    sys.exit(main())
