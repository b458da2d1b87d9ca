"""Tables of the runs already finished in a ``polytask bench --out`` directory, without
training or loading data.

Many ``polytask bench`` processes can share one ``--out`` (one per method and seed, to
spread a long benchmark over processes); each writes ``results.*`` for its own runs
only. This script reads every finished run (``runs/ARCH-METHOD/seedS/result.json``) and
the single-task baselines (``baselines/seedS.json``) with the same settings, measures
Δm against the same seed's baselines as the runner does, and writes the runner's
``results.{json,csv,txt,md}`` plus ``summary.md``: one row per method with the mean of
the reported metric over tasks, Δm ± std over seeds, the seeds it has and seconds per
run. A method with fewer finished seeds than the others says so in its row::

    python scripts/collect_bench.py moleculeace --out runs/moleculeace-methods \\
        --to docs/results/moleculeace-methods
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from polytask import balancing
from polytask.atomic import write_text
from polytask.benchmarks import get
from polytask.benchmarks.runner import BenchmarkResults, RunResult, parse_method, write_results
from polytask.metrics import delta_m


def collect(name: str, out: Path, seeds: set[int] | None = None) -> BenchmarkResults:
    """Every finished run in ``out`` whose settings match the baselines of its seed
    (only the seeds in ``seeds`` when given)."""
    bench = get(name)
    tasks = bench.tasks()
    directions = {
        t: {m: tasks[t].higher_is_better[m] for m in ms} for t, ms in bench.report.items()
    }
    results = BenchmarkResults(bench.name, dict(bench.report), directions)
    results.convention = bench.options.get("delta_m") or "metric"  # as the runner's default
    settings: dict[int, dict] = {}
    for path in sorted((out / "baselines").glob("seed*.json")):
        seed = int(path.stem.removeprefix("seed"))
        if seeds is not None and seed not in seeds:
            continue
        saved = json.loads(path.read_text())
        results.baselines[seed] = saved["metrics"]
        results.val_baselines[seed] = saved["val_metrics"]
        settings[seed] = saved["settings"]
    if not settings:
        raise SystemExit(f"{out}: no finished baselines (baselines/seed*.json)")
    for path in sorted((out / "runs").glob("*/seed*/result.json")):
        if path.parent.parent.name.startswith("single-"):
            continue
        saved = json.loads(path.read_text())
        run = RunResult(**saved["run"])
        if seeds is not None and run.seed not in seeds:
            continue
        if run.seed not in settings or saved["settings"] != settings[run.seed]:
            print(f"skipped {path}: no baselines with the same settings for seed {run.seed}")
            continue
        run.delta_m = delta_m(
            run.metrics, results.baselines[run.seed], directions, results.convention
        )
        run.val_delta_m = delta_m(
            run.val_metrics, results.val_baselines[run.seed], directions, results.convention
        )
        results.runs.append(run)
    return results


def engine_path(spec: str) -> str:
    """The engine path a method spec asks for: ``"one backward"`` for loss weightings,
    else its ``path=`` setting (``"auto"`` when it gives none)."""
    if spec == "single-task":
        return "-"
    name, kwargs = parse_method(spec)
    if not hasattr(balancing.method_class(name), "resolved_path"):
        return "one backward (loss weighting)"
    return str(kwargs.get("path", "auto"))


def summary_markdown(results: BenchmarkResults, order: list[str] | None = None) -> str:
    """One row per (arch, method): mean metric over tasks, Δm ± std, seeds, s/run."""
    metric_keys = [(t, m) for t, ms in results.report.items() for m in ms]
    metric = metric_keys[0][1] if len({m for _, m in metric_keys}) == 1 else "metric"
    rows = []
    for row in results.summary():
        runs = [r for r in results.runs if (r.arch, r.method) == (row["arch"], row["method"])]
        if row["method"] == "single-task":
            per_seed = [
                statistics.fmean(b[t][m] for t, m in metric_keys)
                for b in results.baselines.values()
            ]
            seeds = sorted(results.baselines)
        else:
            per_seed = [statistics.fmean(r.metrics[t][m] for t, m in metric_keys) for r in runs]
            seeds = sorted(r.seed for r in runs)
        mean = statistics.fmean(per_seed)
        std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
        dm = row["delta_m"]
        sec = row.get("seconds")
        method = row["method"]
        path = engine_path(method)
        rows.append(
            (
                method,
                row["arch"],
                f"{mean:.4f} ± {std:.4f}",
                f"{'+' if dm and dm[0] > 0 else ''}{dm[0]:.2f} ± {dm[1]:.2f}" if dm else "-",
                ",".join(map(str, seeds)),
                f"{sec[0]:.0f}" if sec else "-",
                path,
            )
        )
    if order:
        rows.sort(key=lambda r: order.index(r[0]) if r[0] in order else len(order))
    lines = [
        f"| method | arch | mean {metric} over {len(metric_keys)} tasks | Δm % (test) | "
        "seeds | s/run | engine path |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    """Collect, write the tables, print the summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="benchmark name")
    p.add_argument("--out", type=Path, required=True, help="the polytask bench --out directory")
    p.add_argument("--to", type=Path, help="where to write the tables (default: --out)")
    p.add_argument("--seeds", default="", help="comma-separated seeds to use (default: all)")
    p.add_argument("--order", default="", help="comma-separated method order of summary.md")
    args = p.parse_args()
    seeds = {int(v) for v in args.seeds.split(",") if v} or None
    results = collect(args.name, args.out, seeds)
    to = args.to or args.out
    write_results(results, to)
    order = [m for m in args.order.split(",") if m] or None
    text = summary_markdown(results, order)
    write_text(to / "summary.md", text + "\n")
    print(text)
    print(f"written: {to}/results.{{json,csv,txt,md}}, {to}/summary.md")


if __name__ == "__main__":
    main()
