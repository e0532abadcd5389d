"""Download a CycleGAN benchmark dataset (unpaired trainA/trainB images) into DATA_ROOT/NAME.

Same datasets and server as the reference's datasets/download_cyclegan_dataset.sh. The logic lives in
translate.data.download; this is only the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python datasets/...py` from a checkout: make the package beside this folder importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate.data.download import fetch_cli  # noqa: E402

EPILOG = ("maps and facades are also pix2pix sets with the same default folder: use --out datasets/NAME_cyclegan "
          "to keep both. Example:\n  python datasets/download_cyclegan_dataset.py horse2zebra && "
          "translate train CONFIG data.root=datasets/horse2zebra")


def main(argv: list[str] | None = None) -> int:
    return fetch_cli("cyclegan", __doc__.split("\n\n")[0], EPILOG, argv)


if __name__ == "__main__":
    sys.exit(main())
