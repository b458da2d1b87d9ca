"""``polytask data get NAME``: obtain a benchmark's data set."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``data`` subcommand."""
    p = subparsers.add_parser("data", help="obtain data sets")
    sub = p.add_subparsers(dest="action", required=True)
    get = sub.add_parser("get", help="download a data set into the data directory")
    get.add_argument("names", nargs="+",
                     help="a data set (census-income, mnist, fashion-mnist, yeast, "
                     "moleculeace, qm9) or the name of a benchmark that uses them")
    get.add_argument("--data-dir", type=Path, default=None)
    sub.add_parser("where", help="print the data directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch each named data set (nothing is redone when the files are there)."""
    from ..data import DATASET_NAMES, default_data_dir, fetch
    from ..errors import UnknownNameError

    if args.action == "where":
        print(default_data_dir())
        return 0
    for name in args.names:
        if name not in DATASET_NAMES:
            raise UnknownNameError(
                f"unknown data set {name!r}; available: {', '.join(DATASET_NAMES)}"
            )
    for name in args.names:
        path = fetch(name, args.data_dir)
        print(f"{name}: {path}")
    return 0
