"""``polytask bench NAME``: train methods and architectures on a benchmark, report Δm."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="run methods on a benchmark and print per-task metrics and Δm",
        description="Train single-task baselines and one model per (architecture, method) "
        "for each seed; print per-task test metrics and Δm (mean ± std over seeds); write "
        "results.json, results.csv and results.txt to --out.",
    )
    p.add_argument("name", help="benchmark name (see `polytask list`)")
    p.add_argument(
        "--methods", default="ew",
        help="comma-separated balancing methods; hyper-parameters as "
        "name:key=value (e.g. cagrad:c=0.4). Separate methods with ';' when a spec "
        "holds commas.",
    )
    p.add_argument("--arch", default="hard", help="comma-separated architectures")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the benchmark's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--data-dir", type=Path, default=None, help="where the data sets are")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def _split_methods(text: str) -> list[str]:
    if ";" in text:
        return [m.strip() for m in text.split(";") if m.strip()]
    return [m.strip() for m in text.split(",") if m.strip()]


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    from ..benchmarks import BenchmarkRunner, format_table
    from ..benchmarks import get as get_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    benchmark = get_benchmark(args.name)
    out = args.out or Path("runs") / benchmark.name
    runner = BenchmarkRunner(
        benchmark,
        out_dir=out,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        progress=not args.no_progress,
    )
    methods = _split_methods(args.methods)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    print(f"{benchmark.name}: {benchmark.description}")
    print(f"methods {methods}, architectures {archs}, seeds {args.seeds}, out {out}")
    results = runner.run(methods, archs, range(args.seeds))
    print()
    print(format_table(results))
    print(f"\nΔm: mean relative change over {_metric_list(benchmark)} against single-task "
          "baselines (same backbone, same seed); positive is better.")
    print(f"written: {out / 'results.json'}, {out / 'results.csv'}, {out / 'results.txt'}")
    return 0


def _metric_list(benchmark) -> str:  # noqa: ANN001
    return ", ".join(f"{t}/{m}" for t, ms in benchmark.report.items() for m in ms)
