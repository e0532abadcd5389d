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
    for sub in subparsers.choices.values():
        sub.set_defaults(parser=sub)  # for errors in the subcommand's own usage line
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments, with ``key=value`` overrides taken wherever they stand: argparse gives a positional list only
    the words before the first flag (``train CONFIG --resume train.max_steps=1`` would leave the override over),
    and reports a subcommand's leftovers with the top-level usage line."""
    args, rest = build_parser().parse_known_args(argv)
    takes_overrides = hasattr(args, "overrides")
    unknown = [word for word in rest if not (takes_overrides and "=" in word and not word.startswith("-"))]
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if takes_overrides:
        args.overrides += rest
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
