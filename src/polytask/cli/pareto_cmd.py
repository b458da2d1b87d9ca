"""``polytask pareto BENCH``: train Pareto fronts, print the test hypervolume."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import PolytaskError

_CONFIG_KEYS = ("name", "method", "rays", "test_rays", "test_ray_margin", "seeds", "epochs",
                "batch_size", "lr", "out", "data_dir", "ref", "train_subset", "test_subset",
                "conflict")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``pareto`` subcommand."""
    p = subparsers.add_parser(
        "pareto",
        help="train Pareto fronts (one model per ray, or preference-conditioned) and print "
        "the test hypervolume",
        description="Train each method's front for each seed, evaluate it on the test split, "
        "print the hypervolume (fixed reference point), training time and parameter count; "
        "write every front (CSV, JSON), summary.{json,csv,md} and front.png to --out.",
    )
    p.add_argument("name", nargs="?", help="benchmark name with two or more tasks")
    p.add_argument("--config", type=Path, default=None,
                   help=f"YAML with any of {list(_CONFIG_KEYS)}; explicit options win")
    p.add_argument("--method", default=None,
                   help="comma-separated: cosmos, phn (= phn-ls), phn-epo, pamal, pmtl, epo, ls, "
                   "mgda or any scalarization (tchebycheff, stch-paper, pbi, ...); options as "
                   "name:key=value (e.g. cosmos:lamda=2); ';' between methods when a spec "
                   "has commas")
    p.add_argument("--rays", type=int, default=None,
                   help="rays of a finite front, one model each (default 5)")
    p.add_argument("--test-rays", type=int, default=None,
                   help="preferences a conditioned model is evaluated at (default 25)")
    p.add_argument("--test-ray-margin", type=float, default=None,
                   help="two tasks: evaluation rays at angles over [m, π/2 − m] radians "
                   "(default 0.1, the COSMOS code's; 0: the whole quarter circle)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--ref", default=None,
                   help="hypervolume reference point, comma-separated (default: the benchmark's, "
                   "else the worst loss of the run + 10%%)")
    p.add_argument("--train-subset", type=int, default=None, help="first N training samples")
    p.add_argument("--test-subset", type=int, default=None, help="first N val/test samples")
    p.add_argument("--conflict", action="store_true", default=None,
                   help="also train an equal-weight and single-task models; report HV gains")
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("--fresh", action="store_true",
                   help="retrain everything (by default fronts already in --out with the same "
                   "settings are reused)")
    p.set_defaults(func=run)


def _apply_config(args: argparse.Namespace) -> None:
    config: dict = {}
    if args.config is not None:
        import yaml

        config = yaml.safe_load(args.config.read_text()) or {}
        unknown = set(config) - set(_CONFIG_KEYS)
        if unknown:
            raise PolytaskError(
                f"{args.config}: unknown keys {sorted(unknown)}; allowed: {list(_CONFIG_KEYS)}"
            )
        if isinstance(config.get("method"), list):
            config["method"] = ";".join(str(v) for v in config["method"])
        if isinstance(config.get("ref"), list):
            config["ref"] = ",".join(str(v) for v in config["ref"])
        for key in ("out", "data_dir"):
            if config.get(key) is not None:
                config[key] = Path(config[key])
    defaults = {"method": "cosmos", "rays": 5, "test_rays": 25, "seeds": 1, "conflict": False}
    for key in _CONFIG_KEYS:
        if getattr(args, key) is None:
            setattr(args, key, config.get(key, defaults.get(key)))
    if args.name is None:
        raise PolytaskError("give a benchmark name (or `name:` in --config)")


def _parse_ref(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise PolytaskError(f"--ref must be comma-separated numbers, got {text!r}") from None


def _parse_margin(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PolytaskError(f"--test-ray-margin must be a number of radians, got {value!r}") \
            from None


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, print the summary table."""
    import torch

    from ..benchmarks import get as get_benchmark
    from ..benchmarks.pareto_runner import COSMOS_RAY_MARGIN, ParetoRunner, format_summary
    from ..pareto import ReferencePointError

    _apply_config(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    benchmark = get_benchmark(args.name)
    tasks = benchmark.tasks()
    if len(tasks) < 2:
        raise PolytaskError(f"benchmark {benchmark.name!r} has {len(tasks)} task: no front")
    ref = _parse_ref(args.ref)
    if ref is not None and len(ref) != len(tasks):
        raise ReferencePointError(
            f"--ref {ref} has {len(ref)} values for the {len(tasks)} tasks {list(tasks)}"
        )
    from ..pareto.preferences import PreferenceError

    if args.rays < 1 or args.test_rays < 1:
        raise PreferenceError(f"--rays and --test-rays must be >= 1, got {args.rays}, "
                              f"{args.test_rays}")
    methods = [m.strip() for m in args.method.replace(";", ",").split(",") if m.strip()] if (
        ";" not in args.method) else [m.strip() for m in args.method.split(";") if m.strip()]
    out = args.out or Path("runs") / f"pareto-{benchmark.name}"
    runner = ParetoRunner(
        benchmark, out_dir=out, data_dir=args.data_dir, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, device=args.device, rays=args.rays,
        n_test_rays=args.test_rays, ref=ref, train_subset=args.train_subset,
        test_ray_margin=(COSMOS_RAY_MARGIN if args.test_ray_margin is None
                         else _parse_margin(args.test_ray_margin)),
        test_subset=args.test_subset, progress=args.progress, reuse=not args.fresh,
    )
    print(f"{benchmark.name}: {benchmark.description}")
    print(f"methods {methods}, seeds {args.seeds}, out {out}")
    summary = runner.run(methods, range(args.first_seed, args.first_seed + args.seeds),
                         conflict=bool(args.conflict))
    print()
    print(format_summary(summary))
    print(f"\nwritten: {out / 'summary.md'}, {out / 'summary.json'}, {out / 'fronts'}/, "
          f"{out / 'front.png'}")
    return 0
