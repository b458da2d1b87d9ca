"""``polytask toy``: balancing methods on the two-task toy problem of CAGrad/Nash-MTL."""

from __future__ import annotations

import argparse

DEFAULT_METHODS = ("ew", "mgda", "pcgrad", "cagrad", "nash-mtl", "imtl-g", "upgrad", "fairgrad")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``toy`` subcommand."""
    p = subparsers.add_parser(
        "toy", help="draw methods' trajectories on the 2-task toy problem to a PNG"
    )
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                   help="registered balancing methods (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2000, help="Adam steps per start")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    p.add_argument("--starts", nargs="+", default=None, metavar="X1,X2",
                   help="starting points (default: the papers' five)")
    p.add_argument("--out", default="toy.png", help="the PNG to write")
    p.set_defaults(func=run)


def _parse_start(text: str) -> tuple[float, float]:
    from ..errors import PolytaskError

    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise PolytaskError(f"a start must be 'x1,x2', got {text!r}") from None
    return a, b


def run(args: argparse.Namespace) -> int:
    """Run the toy, write the PNG and print where each run ends."""
    from ..toy import STARTS, run_toy

    starts = [_parse_start(s) for s in args.starts] if args.starts else list(STARTS)
    result = run_toy(args.methods, starts, steps=args.steps, lr=args.lr)
    out = result.plot(args.out)
    print(result.table())
    print(f"wrote {out}")
    return 0
