"""Task relationships on a many-task benchmark, measured in one run of this script.

For one benchmark (a training subset when ``--train-size`` is given) this

1. times one plain training run and the same run recording each affinity estimator
   (gradient cosine, TAG lookahead) every ``--every`` steps (and TAG every twice as
   many), as ratios to the plain run (alternating rounds, fastest of each kept);
2. trains every single task and every pair (Standley et al.'s ground truth for the
   higher-order approximation, HOA) and reports the Spearman rank correlation of each
   cheap estimator's off-diagonal affinities with the pair gains
   ``(L_j − L_{ij,j}) / L_j``;
3. chooses groups for each K in ``--ks`` from TAG, cosine and HOA, trains them for
   ``--seeds`` seeds and compares their total test loss and Δm with all-together,
   all-separate and the mean of ``--random`` random groupings with K groups;
4. times the TAG selection on the published CelebA affinities (9 tasks, 3 groups).

Every trained model is cached in ``--runs`` (rerunning resumes). Tables go to
``docs/results/relations/<benchmark>.md`` (and ``.json``)::

    OMP_NUM_THREADS=1 python scripts/bench_relations.py --bench census-income-many \\
        --train-size 20000 --epochs 2 --seeds 3
    OMP_NUM_THREADS=1 python scripts/bench_relations.py --bench yeast --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from polytask.benchmarks import BenchmarkRunner, GroupingStudy, format_rows
from polytask.benchmarks import get as get_benchmark
from polytask.benchmarks.base import BenchmarkData, Split
from polytask.relations import Affinity, select, select_beam, select_from_table, select_tag
from polytask.relations.selection import MAX_EXACT_TASKS

ROOT = Path(__file__).resolve().parents[1]


def _cut(split: Split, n: int | None) -> Split:
    if not n or n >= len(split.inputs):
        return split
    idx = torch.randperm(len(split.inputs), generator=torch.Generator().manual_seed(0))[:n]
    return Split(split.inputs[idx], {k: v[idx] for k, v in split.targets.items()})


def subsample(benchmark, n: int | None, n_eval: int | None = None):  # noqa: ANN001, ANN201
    """The benchmark with its training split cut to ``n`` rows and its validation and
    test splits to ``n_eval`` rows (fixed permutations)."""
    if not n and not n_eval:
        return benchmark
    load = benchmark.load

    def cut(data_dir, seed):  # noqa: ANN001, ANN202
        data = load(data_dir, seed)
        return BenchmarkData(_cut(data.train, n), _cut(data.val, n_eval),
                             _cut(data.test, n_eval))

    return dataclasses.replace(benchmark, load=cut)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of the off-diagonal entries of two T×T tables."""
    mask = ~np.eye(len(a), dtype=bool)
    x, y = a[mask], b[mask]
    rx = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)
    ry = np.argsort(np.argsort(y, kind="stable"), kind="stable").astype(float)
    return float(np.corrcoef(rx, ry)[0, 1])


def _given(args: argparse.Namespace) -> list[str]:
    keys = ("train_size", "eval_size", "epochs", "seeds", "random", "every", "record_every")
    return [f"--{k.replace('_', '-')} {getattr(args, k)}" for k in keys
            if getattr(args, k) is not None]


def main() -> None:
    """Run the study and write the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", default="census-income-many")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--eval-size", type=int, default=None, help="rows of val and test kept")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--ks", default="2,3,4")
    p.add_argument("--random", type=int, default=10)
    p.add_argument("--random-seeds", type=int, default=1,
                   help="seeds per random grouping (default 1)")
    p.add_argument("--every", type=int, default=10, help="recording interval timed")
    p.add_argument("--record-every", type=int, default=None,
                   help="recording interval of the affinities used for grouping and rank "
                   "correlation (default --every; 1 on short runs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="timing rounds (fastest kept)")
    p.add_argument("--runs", type=Path, default=None, help="cache of trained models")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "relations")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bench = subsample(get_benchmark(args.bench), args.train_size, args.eval_size)
    runs = args.runs or ROOT / "runs" / f"relations-{args.bench}"
    runner = BenchmarkRunner(bench, out_dir=runs, epochs=args.epochs,
                             batch_size=args.batch_size, progress=False, device="cpu",
                             log=lambda line: print(line, flush=True))
    study = GroupingStudy(runner, log=lambda line: print(line, flush=True))
    names = study.task_names
    t = len(names)
    print(f"{bench.name}: {t} tasks {names}", flush=True)
    lines = [f"# Task relationships on {bench.name}", "",
             f"{bench.description}. {t} tasks; training rows: "
             f"{len(runner.data.train.inputs)}, validation {len(runner.data.val.inputs)}, test "
             f"{len(runner.data.test.inputs)}; settings {runner._settings()}; "
             f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{args.threads} thread(s). Written by `scripts/bench_relations.py "
             f"--bench {args.bench} {' '.join(_given(args))}`.", ""]

    # 1. wall time of each estimator relative to one plain run (same seed, one process;
    # the configurations alternate for --repeats rounds and each keeps its fastest run)
    configs = [("plain", None, 0), ("cosine", "cosine", args.every), ("tag", "tag", args.every),
               (f"tag every {2 * args.every}", "tag", 2 * args.every)]
    timing: dict[str, float] = {}
    affinities: dict[str, Affinity] = {}
    recorded: dict[str, int] = {}
    for _ in range(args.repeats):
        for label, estimator, every in configs:
            affinity, seconds = study.measure_affinity(estimator, every=max(every, 1), seed=0)
            timing[label] = min(seconds, timing.get(label, float("inf")))
            if affinity is not None:
                recorded[label] = affinity.steps
                if label in ("cosine", "tag"):
                    affinities[label] = affinity
            print(f"  {label}: {seconds:.1f}s", flush=True)
    if args.record_every and args.record_every != args.every:
        for name in ("cosine", "tag"):
            affinities[name], _ = study.measure_affinity(name, every=args.record_every, seed=0)
    for name, affinity in affinities.items():
        affinity.save(args.out / f"{args.bench}-{name}.csv")
    lines += ["## Cost of each estimator (one training run, seed 0)", "",
              f"Fastest of {args.repeats} alternating runs per configuration.", "",
              "| estimator | recorded | seconds | × plain run |", "|---|---|---|---|",
              f"| plain run | - | {timing['plain']:.1f} | 1.00 |"]
    for label, _, every in configs[1:]:
        name = label if label != "tag" and label != "cosine" else f"{label} every {every}"
        lines.append(f"| {name} | {recorded[label]} steps | {timing[label]:.1f} | "
                     f"{timing[label] / timing['plain']:.2f} |")

    # 2. ground truth: every single task and pair
    table = study.ground_truth("pairs", seeds=[0])
    gt_seconds = sum(e.info["seconds"] for e in table.entries)  # training time of the runs
    table.save(args.out / f"{args.bench}-group_table.json")
    gains = table.pair_gains()
    gains.save(args.out / f"{args.bench}-pair_gains.csv")
    lines += [f"| all {t} singles + {t * (t - 1) // 2} pairs (HOA input) | - | "
              f"{gt_seconds:.1f} (training time of the {len(table)} runs) | "
              f"{gt_seconds / timing['plain']:.1f} |", "",
              "## Rank correlation with the trained pair gains", "",
              "Spearman over the T(T−1) off-diagonal entries `[recipient, source]` against "
              "`(L_j − L_{ij,j}) / L_j` (validation losses, seed 0); affinities recorded "
              f"every {args.record_every or args.every} step(s) of one run "
              f"({affinities['tag'].steps} steps).", "",
              "| estimator | Spearman ρ |", "|---|---|"]
    for name, affinity in affinities.items():
        lines.append(f"| {name} | {spearman(affinity.values, gains.values):+.3f} |")

    # 3. groupings, trained and compared
    groupings = {}
    for k in [int(k) for k in args.ks.split(",")]:
        if k >= t:
            continue
        groupings[f"tag-{k}"] = select(affinities["tag"], groups=k)
        cos = Affinity(names, affinities["cosine"].symmetric(), "cosine")
        groupings[f"cosine-{k}"] = select(cos, groups=k)
        if t <= MAX_EXACT_TASKS:
            groupings[f"hoa-{k}"] = select_from_table(table, groups=k, hoa=True)
        else:  # HOA's predicted loss is the mean pair loss: the beam on the pair gains
            groupings[f"hoa-{k}"] = select_beam(gains, k, singleton=0.0)
        for name in (f"tag-{k}", f"cosine-{k}", f"hoa-{k}"):
            print(f"  {name}: {groupings[name]}", flush=True)
    rows = study.compare(groupings, seeds=range(args.seeds), random_groupings=args.random,
                         random_seeds=range(args.random_seeds))
    lines += ["", f"## Groupings: total test loss and Δm ({args.seeds} seeds; random: "
              f"{args.random} partitions × {args.random_seeds} seed)", "",
              "Each group is one hard-sharing model on its tasks; a task's metrics come from "
              "the group that serves it. Δm over the reported metrics against the "
              "single-task models of the same seed (all-separate).", "", format_rows(rows)]

    # 4. selection speed on the published CelebA affinities
    fixture = ROOT / "tests" / "relations" / "data" / "tag_notebook_affinities.json"
    celeba = Affinity.from_dict(json.loads(fixture.read_text())["celeba"])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        select_tag(celeba, 3)
        times.append(time.perf_counter() - start)
    lines += ["", f"TAG selection on the published CelebA affinities (9 tasks, ≤ 3 groups): "
              f"{min(times):.3f} s (best of 3; the authors' notebook enumeration took 805 s "
              "on this machine)."]
    args.out.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    (args.out / f"{args.bench}.md").write_text(text)
    (args.out / f"{args.bench}.json").write_text(json.dumps({
        "timing": timing, "rows": rows,
        "groupings": {k: g.to_json() for k, g in groupings.items()},
        "spearman": {n: spearman(a.values, gains.values) for n, a in affinities.items()},
    }, indent=1))
    print(text)


if __name__ == "__main__":
    main()
