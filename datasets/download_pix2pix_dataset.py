"""Download a pix2pix benchmark dataset (aligned A|B images) into DATA_ROOT/NAME.

Same datasets and server as the reference's datasets/download_pix2pix_dataset.sh. The logic lives in
translate.data.download; this is only the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python datasets/...py` from a checkout: make the package beside this folder importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate.data.download import fetch_cli  # noqa: E402

EPILOG = ("Example:\n  python datasets/download_pix2pix_dataset.py facades && "
          "translate train CONFIG data.root=datasets/facades")


def main(argv: list[str] | None = None) -> int:
    return fetch_cli("pix2pix", __doc__.split("\n\n")[0], EPILOG, argv)


if __name__ == "__main__":
    sys.exit(main())
