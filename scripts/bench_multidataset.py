"""Multi-dataset benchmark: every sampling schedule, a few balancers, BAM distillation.

Trains, for each seed, the single-task models (each on its own dataset) and one
multi-task model per run spec ``METHOD[@SCHEDULE][@distill]`` (see
``polytask.benchmarks.multidataset``), then prints and writes to ``--out``:
``results.md`` (per-task test accuracy and Δm, mean ± std over seeds), ``results.csv``,
``results.json`` and ``steps_to_target.md`` (steps until every task's validation loss
is within 10% of its single-task model's).

Example (the CPU-sized run of the README; the full-size run takes the defaults of the
benchmark instead of --max-train/--max-eval)::

    OMP_NUM_THREADS=1 python scripts/bench_multidataset.py --seeds 3 --epochs 6 \\
        --steps-per-epoch 50 --batch-size 64 --max-train mnist=5000,fashion=500 \\
        --max-eval 1000 --out docs/results/mnist+fashion
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from polytask.benchmarks import MultiDatasetRunner, format_markdown, format_table, get

RUNS = (
    "ew@uniform",
    "ew@proportional",
    "ew@temperature:T=2",
    "ew@annealed",
    "ew@round_robin",
    "ew@dynamic",
    "ew@grouped",
    "pcgrad@grouped",
    "upgrad@grouped",
    "ew@proportional@distill",
)


def _sizes(text: str | None) -> int | dict[str, int] | None:
    if not text:
        return None
    if "=" not in text:
        return int(text)
    return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}


def main() -> None:
    """Parse the options, run the benchmark, print and write the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default="mnist+fashion")
    p.add_argument("--runs", default=";".join(RUNS), help="';'-separated run specs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--seed-list", default=None,
        help="comma-separated seeds to run instead of 0..SEEDS-1 (e.g. 1,2: split the "
             "seeds across processes that share --out; finished runs are reused)",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--mode", default="single", choices=("single", "mixed"))
    p.add_argument("--max-train", default=None, help="N or dataset=N,... (first N samples)")
    p.add_argument("--max-eval", default=None, help="N or dataset=N,... for val and test")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("docs/results/mnist+fashion"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    max_samples = {}
    if args.max_train:
        max_samples["train"] = _sizes(args.max_train)
    if args.max_eval:
        max_samples["val"] = max_samples["test"] = _sizes(args.max_eval)
    runner = MultiDatasetRunner(
        get(args.benchmark), out_dir=args.out, epochs=args.epochs,
        batch_size=args.batch_size, device=args.device, progress=False, mode=args.mode,
        steps_per_epoch=args.steps_per_epoch, max_samples=max_samples or None,
    )
    runs = [r.strip() for r in args.runs.split(";") if r.strip()]
    sizes = {k: len(v.inputs) for k, v in runner.data.train.items()}
    print(f"{args.benchmark}: train sizes {sizes}; settings {runner._settings()}")
    start = time.perf_counter()
    seeds = ([int(s) for s in args.seed_list.split(",")] if args.seed_list
             else list(range(args.seeds)))
    results = runner.run(runs, ["hard"], seeds)
    print()
    print(format_table(results))
    print()
    print((args.out / "steps_to_target.md").read_text())
    header = (
        f"{args.benchmark}, train sizes {sizes}, settings {runner._settings()}, "
        f"seeds {seeds}, {time.perf_counter() - start:.0f} s in all "
        f"({torch.get_num_threads()} CPU thread(s)).\n\n"
    )
    (args.out / "results.md").write_text(header + format_markdown(results) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
