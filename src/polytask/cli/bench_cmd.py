"""``polytask bench NAME``: train methods and architectures on a benchmark, report Δm."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import InvalidParameterError, PolytaskError
from ..metrics.delta_m import DELTA_M_CONVENTIONS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="run methods on a benchmark and print per-task metrics and Δm",
        description="Train single-task baselines and one model per (architecture, method) "
        "for each seed; print per-task test metrics and Δm (mean ± std over seeds); write "
        "results.json, results.csv and results.txt to --out.",
    )
    p.add_argument("name", nargs="?", help="benchmark name (see `polytask list`)")
    p.add_argument(
        "--config", type=Path, default=None,
        help="YAML file with any of: name, methods (list), arch (list), seeds, epochs, "
        "batch_size, lr, out, data_dir; command-line options given explicitly win",
    )
    p.add_argument(
        "--methods", default=None,
        help="comma-separated balancing methods; hyper-parameters as "
        "name:key=value (e.g. cagrad:c=0.4). Separate methods with ';' when a spec "
        "holds commas. (default: ew)",
    )
    p.add_argument("--arch", default=None,
                   help="comma-separated architectures, settings as name:key=value "
                   "(default: hard)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds, FIRST..FIRST+N-1 (default: 1)")
    p.add_argument(
        "--first-seed", type=int, default=0,
        help="seeds are FIRST..FIRST+N-1 (to spread seeds over processes sharing --out)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the benchmark's)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size (default: the benchmark's)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default: the benchmark's)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: runs/NAME)")
    p.add_argument("--data-dir", "--data", dest="data_dir", type=Path, default=None,
                   help="where the data sets are (for nyuv2/cityscapes: the preprocessed "
                   "directory holding train/ and val/)")
    p.add_argument(
        "--delta-m", choices=DELTA_M_CONVENTIONS, default=None,
        help="Δm convention: 'metric' weighs every metric equally (Nash-MTL, FAMO), 'task' "
        "averages within each task first (LibMTL); default: the benchmark's",
    )
    p.add_argument("--weights", type=Path, default=None,
                   help="a local backbone weights file (the *-resnet50 presets' ResNet-50)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--fresh", action="store_true",
        help="retrain everything (by default runs already finished in --out with the same "
        "settings are reused, so an interrupted benchmark resumes)",
    )
    p.set_defaults(func=run)


def _split_methods(text: str) -> list[str]:
    if ";" in text:
        return [m.strip() for m in text.split(";") if m.strip()]
    return [m.strip() for m in text.split(",") if m.strip()]


_CONFIG_KEYS = ("name", "methods", "arch", "seeds", "epochs", "batch_size", "lr", "out", "data_dir")


def apply_config(args: argparse.Namespace) -> None:
    """Fill options not given on the command line from ``--config`` and defaults."""
    config: dict = {}
    if args.config is not None:
        import yaml

        config = yaml.safe_load(args.config.read_text()) or {}
        unknown = set(config) - set(_CONFIG_KEYS)
        if unknown:
            raise PolytaskError(
                f"{args.config}: unknown keys {sorted(unknown)}; allowed: {list(_CONFIG_KEYS)}"
            )
        for key in ("methods", "arch"):
            if isinstance(config.get(key), list):
                config[key] = ";".join(str(v) for v in config[key])
        for key in ("out", "data_dir"):
            if config.get(key) is not None:
                config[key] = Path(config[key])
    defaults = {"methods": "ew", "arch": "hard", "seeds": 1}
    for key in _CONFIG_KEYS:
        if getattr(args, key) is None:
            setattr(args, key, config.get(key, defaults.get(key)))
    if args.name is None:
        raise PolytaskError("give a benchmark name (or `name:` in --config)")
    check_options(args)


_POSITIVE_INTS = ("seeds", "epochs", "batch_size", "threads")


def check_options(args: argparse.Namespace) -> None:
    """Reject values that would make a run do nothing or something else than asked."""
    for key in _POSITIVE_INTS:
        value = getattr(args, key, None)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise InvalidParameterError(
                f"--{key.replace('_', '-')} must be a positive integer, got {value!r}"
            )
    if args.first_seed is not None and args.first_seed < 0:
        raise InvalidParameterError(f"--first-seed must be >= 0, got {args.first_seed}")
    if args.lr is not None and (not isinstance(args.lr, (int, float)) or not args.lr > 0
                                or args.lr == float("inf")):
        raise InvalidParameterError(f"--lr must be a positive number, got {args.lr!r}")
    for key in ("methods", "arch"):
        value = getattr(args, key)
        if not isinstance(value, str) or not _split_methods(value):
            raise InvalidParameterError(
                f"--{key} names nothing ({value!r}); give at least one, e.g. "
                + ("--methods ew" if key == "methods" else "--arch hard")
            )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    from ..benchmarks import format_table, runner_class
    from ..benchmarks import get as get_benchmark

    apply_config(args)

    if args.threads:
        torch.set_num_threads(args.threads)
    benchmark = get_benchmark(args.name)
    out = args.out or Path("runs") / benchmark.name
    runner = runner_class(benchmark)(
        benchmark,
        out_dir=out,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        progress=not args.no_progress,
        reuse=not args.fresh,
        delta_m_convention=args.delta_m,
    )
    if args.weights is not None:
        benchmark.options["weights"] = str(args.weights)
    methods = _split_methods(args.methods)
    archs = _split_methods(args.arch)
    print(f"{benchmark.name}: {benchmark.description}")
    print(f"methods {methods}, architectures {archs}, seeds {args.seeds}, out {out}")
    results = runner.run(methods, archs, range(args.first_seed, args.first_seed + args.seeds))
    print()
    print(format_table(results))
    print(f"\nΔm ({runner.convention} convention): mean relative change over "
          f"{_metric_list(benchmark)} against single-task baselines (same backbone, same "
          "seed); positive is better.")
    print(f"written: {out / 'results.json'}, {out / 'results.csv'}, {out / 'results.txt'}")
    return 0


def _metric_list(benchmark) -> str:  # noqa: ANN001
    return ", ".join(f"{t}/{m}" for t, ms in benchmark.report.items() for m in ms)
