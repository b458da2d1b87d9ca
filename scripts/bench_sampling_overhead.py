"""Sampling overhead of MultiDatasetLoader against a single-dataset loader.

The baseline is the usual polytask loader (``batch_loader`` over one
``MultiTaskDataset``) holding the same samples, with the tasks a sample lacks marked
missing (-1) — the one-dataset-with-missing-labels set-up the multi-dataset loader
replaces. For D = 2 and 30 datasets of N samples each (784 features, one 10-class task
per dataset), the script times, per batch of B samples:

- the loader alone (drawing the dataset, gathering the batch, building targets and
  masks), and
- the loader plus a training step of a small hard-sharing MLP (784-256-256, one linear
  head per task, equal weighting, Adam) through the Trainer's ``train_step``,

and prints the ratios to the baseline measured in the same run (median of ``--repeats``
alternating passes). Grouped mode takes B samples of every dataset per step (D·B), so
its rows are per step, not per sample. Writes docs/benchmarks/sampling_overhead.md.

    OMP_NUM_THREADS=1 python scripts/bench_sampling_overhead.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import polytask as pt
from polytask.multidataset import MultiDatasetLoader
from polytask.training import MultiTaskDataset, Trainer, batch_loader


def make(d: int, n: int, features: int):
    g = torch.Generator().manual_seed(0)
    sources, xs, ys = {}, [], {f"t{i}": [] for i in range(d)}
    for i in range(d):
        x = torch.randn(n, features, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        sources[f"t{i}"] = MultiTaskDataset(x, {f"t{i}": y})
        xs.append(x)
        for j in range(d):
            ys[f"t{j}"].append(y if i == j else torch.full((n,), -1))
    joint = MultiTaskDataset(torch.cat(xs), {k: torch.cat(v) for k, v in ys.items()})
    tasks = [pt.Multiclass(f"t{i}", num_classes=10) for i in range(d)]
    return sources, joint, tasks


def time_pass(loader, steps: int, step_fn=None) -> float:
    it = iter(loader)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(it)
        if step_fn is not None:
            step_fn(batch)
    return (time.perf_counter() - start) / steps


def main() -> None:
    """Run the measurements, print the table and write it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000, help="samples per dataset")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks/sampling_overhead.md"))
    args = p.parse_args()
    torch.manual_seed(0)
    rows = []
    for d in (2, 30):
        sources, joint, tasks = make(d, args.samples, 784)
        model = pt.HardSharing(
            nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU()),
            tasks, encoder_out_features=256,
        )
        trainer = Trainer(model, tasks, "ew", progress=False, device="cpu")
        loaders = {
            "single-dataset loader (baseline)": batch_loader(joint, args.batch_size, True),
            "single, proportional": MultiDatasetLoader(sources, args.batch_size),
            "single, temperature T=2": MultiDatasetLoader(
                sources, args.batch_size, schedule="temperature:T=2"),
            "single, round robin": MultiDatasetLoader(
                sources, args.batch_size, schedule="round_robin"),
            "mixed, proportional": MultiDatasetLoader(sources, args.batch_size, mode="mixed"),
            "grouped (D·B samples/step)": MultiDatasetLoader(
                sources, args.batch_size, mode="grouped"),
        }
        steps = min(args.steps, *(len(loader) for loader in loaders.values()))
        times = {name: ([], []) for name in loaders}
        for _ in range(args.repeats):  # alternate the loaders within each repeat
            for name, loader in loaders.items():
                times[name][0].append(time_pass(loader, steps))
                times[name][1].append(time_pass(loader, steps, trainer.train_step))
        base_load = statistics.median(times["single-dataset loader (baseline)"][0])
        base_step = statistics.median(times["single-dataset loader (baseline)"][1])
        for name, (load, step) in times.items():
            load_m, step_m = statistics.median(load), statistics.median(step)
            rows.append((d, name, 1e3 * load_m, load_m / base_load, 1e3 * step_m,
                         step_m / base_step))
    header = ("| D | loader | loader ms/batch | × baseline | loader + step ms | × baseline |\n"
              "|---|---|---|---|---|---|")
    lines = [header] + [
        f"| {d} | {name} | {lm:.3f} | {lr:.2f} | {sm:.2f} | {sr:.2f} |"
        for d, name, lm, lr, sm, sr in rows
    ]
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# Sampling overhead of MultiDatasetLoader\n\n`scripts/bench_sampling_overhead.py`: "
        f"{args.samples} samples per dataset, batch {args.batch_size}, {steps} steps per "
        f"pass, median of {args.repeats} alternating passes, "
        f"{torch.get_num_threads()} CPU thread(s). Ratios are to the single-dataset "
        f"loader holding the same samples (missing labels marked -1), same run.\n\n"
        f"{table}\n"
    )


if __name__ == "__main__":
    main()
