"""``polytask list``: benchmarks, balancing methods and architectures."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``list`` subcommand."""
    p = subparsers.add_parser("list", help="list benchmarks, methods and architectures")
    p.add_argument("what", nargs="?", choices=("benchmarks", "methods", "architectures"))
    p.set_defaults(func=run)


def _first_line(obj: object) -> str:
    """The docstring's first paragraph on one line (never cut mid-sentence)."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    paragraph = doc.split("\n\n")[0] if doc else ""
    return " ".join(line.strip() for line in paragraph.splitlines())


def run(args: argparse.Namespace) -> int:
    """Print the lists."""
    from .. import balancing, benchmarks, models

    if args.what in (None, "benchmarks"):
        print("benchmarks:")
        for name in benchmarks.available():
            print(f"  {name:20s} {benchmarks.get(name).description}")
    if args.what in (None, "methods"):
        print("balancing methods:")
        for name in balancing.available():
            print(f"  {name:20s} {_first_line(balancing.method_class(name))}")
    if args.what in (None, "architectures"):
        print("architectures:")
        for name in models.available():
            print(f"  {name:20s} {_first_line(models.builder(name))}")
    return 0
