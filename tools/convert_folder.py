"""Translate a folder of images: the same as ``translate convert MODEL INPUT_DIR OUTPUT_DIR [options]``.

    python tools/convert_folder.py runs/horse2zebra/model photos/ zebras/ --format jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from translate.cli.convert import EPILOG, add_arguments, run  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="convert_folder.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
