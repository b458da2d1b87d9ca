"""The Trainer on 1 and 2 processes (gloo, CPU, started as ``torchrun`` would): samples
per second, the extra time of each kind of method under 2 processes relative to equal
weighting, and the bytes the engine reduces across ranks per step.

A shared MLP (64 inputs, two hidden layers of ``--width`` units, P shared parameters)
with K = ``--tasks`` regression heads, a global batch of ``--batch`` samples (half on
each of 2 processes), SGD. Each configuration trains ``--steps`` timed steps after
``--warmup`` steps, one thread per process; the best (minimum) step time is reported
(the most robust statistic on a shared machine). The
communication is counted by wrapping the engine's reductions
(``engine.average_across_ranks``, ``engine.sum_across_ranks``, the metric and task-name
gathers are not per step): bytes of the tensors all-reduced per training step, on one
rank. Prints a Markdown table and writes it to ``docs/benchmarks/distributed.md``::

    nice -n 19 python scripts/bench_distributed.py
    python scripts/bench_distributed.py --methods ew upgrad pcgrad --steps 20
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import polytask as pt
from polytask.balancing import engine

METHODS = [
    "ew",
    "gradnorm",
    "mgda",
    "upgrad:path=gramian",
    "mgda-ub",
    "pcgrad",
    "graddrop:path=jacobian",
]


class Counted:
    """Wraps the engine's reductions, adding the bytes of every tensor reduced."""

    def __init__(self) -> None:
        self.bytes = 0
        self._average = engine.average_across_ranks
        self._sum = engine.sum_across_ranks

    def install(self) -> None:
        def average(tensor):
            self.bytes += tensor.numel() * tensor.element_size()
            return self._average(tensor)

        def total(tensor):
            self.bytes += tensor.numel() * tensor.element_size()
            return self._sum(tensor)

        engine.average_across_ranks = average
        engine.sum_across_ranks = total


class StepTimer(pt.training.Callback):
    """Wall time of each optimizer step (from the end of the previous one) and the
    bytes reduced during it."""

    def __init__(self, counter: Counted) -> None:
        self.counter = counter
        self.times: list[float] = []
        self.bytes: list[int] = []
        self._start = 0.0
        self._bytes = 0

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self._start, self._bytes = time.perf_counter(), self.counter.bytes

    def on_step_end(self, trainer, step: int, record) -> None:
        now = time.perf_counter()
        self.times.append(now - self._start)
        self.bytes.append(self.counter.bytes - self._bytes)
        self._start, self._bytes = now, self.counter.bytes


def run(spec: str, args: argparse.Namespace, world: int) -> tuple[float, int, int]:
    """(best step time, bytes reduced per step, shared parameters P) of one method."""
    torch.manual_seed(0)
    tasks = [pt.Regression(f"t{j}") for j in range(args.tasks)]
    encoder = nn.Sequential(
        nn.Linear(64, args.width), nn.ReLU(), nn.Linear(args.width, args.width), nn.ReLU()
    )
    model = pt.HardSharing(encoder, tasks, encoder_out_features=args.width)
    steps = args.warmup + args.steps
    n = steps * args.batch
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 64, generator=g), torch.randn(n, args.tasks, generator=g)
    data = TensorDataset(x, *y.unbind(1))

    def collate(items):
        xs = torch.stack([it[0] for it in items])
        return xs, {f"t{j}": torch.stack([it[j + 1] for it in items]) for j in range(args.tasks)}

    counter = Counted()
    counter.install()
    timer = StepTimer(counter)
    trainer = pt.Trainer(
        model,
        tasks,
        spec,
        seed=0,
        progress=False,
        device="cpu",
        optimizer=lambda g: torch.optim.SGD(g, lr=1e-3),
        callbacks=[timer],
    )
    loader = DataLoader(data, batch_size=args.batch // world, collate_fn=collate)
    trainer.fit(loader, 1)
    timed = timer.times[args.warmup :]
    p = sum(q.numel() for q in model.shared_parameters())
    return min(timed), int(statistics.median(timer.bytes[args.warmup :])), p


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            WORLD_SIZE=str(world),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
        )
    results = {spec: run(spec, args, world) for spec in args.methods}
    if rank == 0:
        torch.save(results, os.path.join(out, f"world{world}.pt"))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args: argparse.Namespace, world: int, out: str) -> dict:
    if world == 1:
        _worker(0, 1, 0, args, out)
    else:
        torch.multiprocessing.start_processes(
            _worker,
            args=(world, _free_port(), args, out),
            nprocs=world,
            join=True,
            start_method="spawn",
        )
    return torch.load(os.path.join(out, f"world{world}.pt"))


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default="docs/benchmarks/distributed.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        one = measure(args, 1, tmp)
        two = measure(args, 2, tmp)
        elapsed = time.time() - start
    k, p = args.tasks, next(iter(one.values()))[2]
    base1, base2 = one[args.methods[0]][0], two[args.methods[0]][0]
    rows = []
    for spec in args.methods:
        t1, _, _ = one[spec]
        t2, b2, _ = two[spec]
        kind = pt.balancing.distributed_kind(
            pt.balancing.get(
                spec.split(":")[0], **dict(kv.split("=") for kv in spec.split(":")[1].split(","))
            )
            if ":" in spec
            else pt.balancing.get(spec)
        )
        rows.append(
            f"| {spec} | {kind} | {args.batch / t1:,.0f} | {args.batch / t2:,.0f} | "
            f"{t1 / base1:.2f} | {t2 / base2:.2f} | {fmt_bytes(b2)} ({b2 / (4 * p):.2f} P) |"
        )
    lines = [
        f"K = {k} regression tasks, shared MLP 64→{args.width}→{args.width} (P = {p:,} "
        f"shared parameters), global batch {args.batch}, SGD, gloo on the CPU, one thread "
        f"per process; best of {args.steps} steps after {args.warmup}; whole run "
        f"{elapsed:.0f} s, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. "
        "Bytes: what the engine all-reduces per step on one rank (float32 P = 4 P bytes).",
        "",
        "| method | kind | samples/s, 1 process | samples/s, 2 processes | "
        "time / ew, 1 process | time / ew, 2 processes | all-reduced per step (2 processes) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# The Trainer on several processes (`scripts/bench_distributed.py`)\n\n"
        f"`python scripts/bench_distributed.py {' '.join(os.sys.argv[1:])}`".rstrip()
        + "\n\n"
    )
    out.write_text(header + table + "\n")


if __name__ == "__main__":
    main()
