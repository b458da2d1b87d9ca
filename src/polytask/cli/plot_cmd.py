"""``polytask plot RUN_DIR``: draw a run's task losses, weights and metrics to a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``plot`` subcommand."""
    p = subparsers.add_parser(
        "plot",
        help="plot each task's loss and weight over time (and val metrics) to a PNG",
        description="Read RUN_DIR/steps.csv and RUN_DIR/epochs.csv (written by the Trainer "
        "with log_dir=RUN_DIR) and draw per-task losses and weights per step and "
        "validation metrics per epoch.",
    )
    p.add_argument("run_dir", type=Path, help="a run directory (the Trainer's log_dir)")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default RUN_DIR/training.png)")
    p.add_argument("--smooth", type=int, default=None,
                   help="moving-average window over steps (default: 1%% of the steps)")
    p.add_argument("--linear", action="store_true", help="linear (not log) loss axis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw the plot and print its path."""
    from ..training.plotting import plot_run

    path = plot_run(args.run_dir, args.out, smooth=args.smooth, log_loss=not args.linear)
    print(path)
    return 0
