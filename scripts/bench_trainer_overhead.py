"""Trainer overhead against a bare PyTorch loop doing the same work (equal weighting).

Both train the census-income benchmark's model (hard sharing, MLP 128-64) with Adam on
the same batches; epochs alternate between the two so that machine noise hits both
alike. Prints a table and writes it to docs/benchmarks/trainer_overhead.md.

    python scripts/bench_trainer_overhead.py --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from polytask import benchmarks, models
from polytask.training import MultiTaskDataset, Trainer, batch_loader


def bare_epoch(model, tasks, optimizer, loader) -> float:
    """One epoch of the loop a user would write by hand."""
    start = time.perf_counter()
    model.train()
    for x, targets in loader:
        out = model(x)
        loss = sum(task.loss(out[name], targets[name]) for name, task in tasks.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="census-income")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/trainer_overhead.md"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = benchmarks.get(args.benchmark)
    data = bench.load(None, 0)
    tasks = bench.tasks()
    loader = batch_loader(
        MultiTaskDataset(data.train.inputs, data.train.targets), args.batch_size, shuffle=True
    )

    def build():
        torch.manual_seed(0)
        model = models.get("hard", tasks=tasks, backbone=bench.backbone(data))
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    bare_model, bare_opt = build()
    trainer_model, trainer_opt = build()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = Trainer(
            trainer_model, tasks, "ew", trainer_opt, log_dir=log_dir, progress=False, device="cpu"
        )
        bare_times, trainer_times = [], []
        bare_epoch(bare_model, tasks, bare_opt, loader)  # warm-up
        for epoch in range(args.epochs):
            bare_times.append(bare_epoch(bare_model, tasks, bare_opt, loader))
            start = time.perf_counter()
            trainer.fit(loader, epochs=epoch + 1)
            trainer_times.append(time.perf_counter() - start)
    bare = statistics.median(bare_times)
    with_trainer = statistics.median(trainer_times)
    overhead = 100 * (with_trainer / bare - 1)
    rows = [
        ("bare loop", bare, 1.0),
        ("Trainer (ew, CSV logs, checkpoints)", with_trainer, with_trainer / bare),
    ]
    lines = [
        f"Trainer overhead on {args.benchmark} ({len(loader)} steps/epoch, batch "
        f"{args.batch_size}, median of {args.epochs} alternating epochs, "
        f"{torch.get_num_threads()} threads)",
        "",
        "| loop | s/epoch | ratio |",
        "|---|---|---|",
    ] + [f"| {name} | {t:.2f} | {r:.3f} |" for name, t, r in rows]
    lines += ["", f"Overhead: {overhead:+.1f}% per epoch (goal: under 5%)."]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
