"""``polytask affinity BENCH``: measure task affinities on a benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import PolytaskError

ESTIMATORS = ("tag", "cosine", "inner", "pairs")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``affinity`` subcommand."""
    p = subparsers.add_parser(
        "affinity",
        help="measure task affinities on a benchmark (TAG lookahead, gradient cosine, "
        "or trained pairs)",
        description="Train one model on every task of BENCH while recording an affinity "
        "estimator (tag: lookahead inter-task affinity of Fifty et al. 2021; cosine / "
        "inner: task-gradient similarity), or, with --estimator pairs, train every single "
        "task and pair (Standley et al. 2020's ground truth, cached and resumable). Writes "
        "affinity.json, affinity.csv ([recipient, source]) and affinity.png to --out; "
        "pairs also writes group_table.json for `polytask group`.",
    )
    p.add_argument("name", help="benchmark name (see `polytask list`)")
    p.add_argument("--estimator", default="tag", choices=ESTIMATORS)
    p.add_argument("--every", type=int, default=10, help="record one step in EVERY (default 10)")
    p.add_argument("--lookahead-lr", type=float, default=None,
                   help="the lookahead's learning rate (default: the optimizer's)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (pairs: mean over them)")
    p.add_argument("--arch", default="hard", help="architecture of the model(s)")
    p.add_argument("--method", default="ew", help="balancing method while training")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default runs/grouping-BENCH)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fresh", action="store_true", help="retrain cached runs (pairs)")
    p.set_defaults(func=run)


def make_study(args: argparse.Namespace, name: str):  # noqa: ANN201
    """The :class:`GroupingStudy` the ``affinity`` and ``group`` commands share."""
    from ..benchmarks import BenchmarkRunner, GroupingStudy
    from ..benchmarks import get as get_benchmark
    from ..benchmarks.grouping import default_out

    if args.threads:
        torch.set_num_threads(args.threads)
    benchmark = get_benchmark(name)
    runner = BenchmarkRunner(
        benchmark, out_dir=args.out or default_out(benchmark.name), data_dir=args.data_dir,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
        progress=not args.no_progress, reuse=not args.fresh,
    )
    return GroupingStudy(runner, arch=args.arch, method=args.method)


def run(args: argparse.Namespace) -> int:
    """Measure and write the table."""
    from ..relations import Affinity
    from ..relations.plotting import plot_affinity

    if args.seeds < 1:
        raise PolytaskError(f"--seeds must be at least 1, got {args.seeds}")
    study = make_study(args, args.name)
    out = study.runner.out_dir
    print(f"{study.runner.benchmark.name}: {len(study.task_names)} tasks {study.task_names}")
    if args.estimator == "pairs":
        table = study.ground_truth("pairs", seeds=range(args.seeds))
        table.save(out / "group_table.json")
        affinity = table.pair_gains()
        affinity.info.update({"benchmark": study.runner.benchmark.name,
                              "seeds": args.seeds})
        print(f"written: {out / 'group_table.json'}")
    else:
        tables = []
        for seed in range(args.seeds):
            affinity, seconds = study.measure_affinity(args.estimator, args.every, seed,
                                                       args.lookahead_lr)
            print(f"  seed {seed}: {affinity.steps} recorded steps, {seconds:.1f}s")
            tables.append(affinity)
        affinity = tables[0]
        if len(tables) > 1:
            mean = sum(t.values for t in tables) / len(tables)
            affinity = Affinity(affinity.tasks, mean, affinity.estimator,
                                sum(t.steps for t in tables), affinity.every, affinity.lr,
                                info={**affinity.info, "seeds": len(tables)})
    affinity.save(out / "affinity.json")
    affinity.save(out / "affinity.csv")
    written = [out / "affinity.json", out / "affinity.csv"]
    try:
        written.append(plot_affinity(affinity, out / "affinity.png"))
    except PolytaskError as error:
        print(f"(no heatmap: {error})")
    print(_format(affinity))
    print("written: " + ", ".join(str(p) for p in written))
    return 0


def _format(affinity) -> str:  # noqa: ANN001
    width = max(8, max(len(t) for t in affinity.tasks) + 1)
    width = max(width, 11)
    lines = ["recipient \\ source".ljust(width + 2) + "".join(t[:width].rjust(width + 1)
                                                           for t in affinity.tasks)]
    for task, row in zip(affinity.tasks, affinity.values):
        lines.append(task[:width].ljust(width + 2)
                     + "".join(f"{v:+.3g}".rjust(width + 1) for v in row))
    return "\n".join(lines)
