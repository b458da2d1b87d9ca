"""``polytask group TABLE``: choose task groups from an affinity or group table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import PolytaskError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``group`` subcommand."""
    p = subparsers.add_parser(
        "group",
        help="choose groups of tasks from an affinity table or a table of trained groups",
        description="TABLE is an affinity table (.json/.csv from `polytask affinity`; TAG's "
        "selection, or a beam search for many tasks) or a group table (group_table.json "
        "from `polytask affinity --estimator pairs`; Standley's selection, --method hoa for "
        "the higher-order approximation). With --evaluate BENCH the chosen grouping is "
        "trained and compared with all-together, all-separate and random groupings.",
    )
    p.add_argument("table", type=Path, help="affinity .json/.csv or group_table.json")
    p.add_argument("--groups", default=None,
                   help="number of groups K (comma-separated for several, e.g. 2,3,4)")
    p.add_argument("--budget", type=float, default=None,
                   help="inference-cost budget in networks (group tables: half-size "
                   "single-task networks cost 0.5)")
    p.add_argument("--method", default="auto",
                   help="auto, tag, beam (affinity tables); standley, hoa (group tables)")
    p.add_argument("--beam-width", type=int, default=64)
    p.add_argument("--evaluate", metavar="BENCH", default=None,
                   help="train the grouping(s) on this benchmark and compare")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--random", type=int, default=10,
                   help="random groupings per K in the comparison (default 10)")
    p.add_argument("--arch", default="hard")
    p.add_argument("--train-method", dest="train_method", default="ew",
                   help="balancing method of the trained groups")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fresh", action="store_true")
    p.set_defaults(func=run)


def load_table(path: Path):  # noqa: ANN201
    """An :class:`Affinity` or a :class:`GroupTable`, by the file's content."""
    from ..relations import Affinity, GroupTable

    if not path.exists():
        raise PolytaskError(f"no table at {path}")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise PolytaskError(f"{path}: not JSON ({error})") from None
        if isinstance(data, dict) and "entries" in data:
            return GroupTable.from_json(data)
        if isinstance(data, dict):
            return Affinity.from_json(data)
        raise PolytaskError(f"{path}: expected a JSON object")
    return Affinity.load(path)


def _ks(text: str | None) -> list[int | None]:
    if text is None:
        return [None]
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise PolytaskError(f"--groups takes whole numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Print the groups (and, with --evaluate, train and compare them)."""
    from ..relations import Affinity, select

    table = load_table(args.table)
    if args.groups is None and args.budget is None:
        raise PolytaskError("give --groups K or --budget B")
    if args.groups is not None and args.budget is not None and isinstance(table, Affinity):
        raise PolytaskError("for an affinity table give --groups or --budget, not both")
    choices = {}
    extra = {"width": args.beam_width} if args.method == "beam" else {}
    for k in _ks(args.groups):
        budget = args.budget if k is None else None
        grouping = select(table, groups=k, budget=budget, method=args.method, **extra)
        label = f"{grouping.method}-k{k}" if k is not None else f"{grouping.method}-b{budget:g}"
        print(f"{label}: {grouping}")
        print(f"  predicted {'mean affinity' if isinstance(table, Affinity) else 'total'}: "
              f"{grouping.predicted:.6g}; cost {grouping.cost:g}")
        choices[label] = grouping
    if args.evaluate:
        from ..benchmarks import format_rows
        from .affinity_cmd import make_study

        args.method = args.train_method
        study = make_study(args, args.evaluate)
        unknown = [t for t in table.tasks if t not in study.task_names]
        if unknown or len(table.tasks) != len(study.task_names):
            raise PolytaskError(f"the table's tasks {table.tasks} are not benchmark "
                                f"{args.evaluate}'s tasks {study.task_names}")
        rows = study.compare(choices, seeds=range(args.seeds), random_groupings=args.random)
        text = format_rows(rows)
        out = study.runner.out_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / "grouping.md").write_text(text + "\n")
        (out / "grouping.json").write_text(json.dumps(
            {"rows": rows, "groupings": {k: g.to_json() for k, g in choices.items()}},
            indent=1))
        print()
        print(text)
        print(f"written: {out / 'grouping.md'}, {out / 'grouping.json'}")
    return 0
