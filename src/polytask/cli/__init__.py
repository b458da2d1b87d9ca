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
    parser = argparse.ArgumentParser(
        prog="polytask", description="Deep multi-task learning: benchmarks and tools."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}_cmd").add_parser(
            subparsers
        )
    return parser


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
