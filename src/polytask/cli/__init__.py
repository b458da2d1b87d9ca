"""The ``polytask`` command line: thin subcommands that parse and call the library.

Each subcommand lives in its own module with ``add_parser(subparsers)`` (which sets
``func`` on its parser) and is listed in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import PolytaskError

COMMANDS = ("bench", "list", "data", "plot", "toy", "affinity", "group", "pareto")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="polytask", description="Deep multi-task learning: benchmarks and tools."
    )
    parser.add_argument("--version", action="version", version=f"polytask {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}_cmd").add_parser(
            subparsers
        )
    for sub in subparsers.choices.values():  # every option's help shows its default
        sub.formatter_class = DefaultsHelpFormatter
    return parser


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help when it has a real default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text and "default" not in text
            and default is not None and default is not False
            and default != argparse.SUPPRESS and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polytask`` script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PolytaskError as error:
        print(f"polytask: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
