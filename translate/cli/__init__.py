"""The ``translate`` command: argument parsing only; every subcommand calls into the package.

Each subcommand lives in its own module here with ``add_parser(subparsers)``, which sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from translate import __version__

SUBCOMMANDS = ["train", "convert", "sample", "import_reference", "export", "eval", "report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="translate", description="Image-to-image translation with GANs.")
    parser.add_argument("--version", action="version", version=f"translate {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"translate.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"translate.cli.{name}":
                raise
            continue  # a subcommand not built yet
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
