"""Step time of gradient accumulation (M micro-batches) against one large batch.

For K tasks on a shared MLP (``--in``→``--hidden``→``--hidden``, tanh) with K linear
regression heads, each method takes one optimizer step on a batch of ``--batch``
samples two ways, in a plain loop:

- ``large``: one forward and ``balancer.backward`` on the whole batch;
- ``accumulated``: ``--micro`` micro-batches of ``batch / micro`` samples through
  :class:`polytask.balancing.GradientAccumulator` (one engine Jacobian per
  micro-batch, then the balancer once on the whole batch).

Both give the same update (``tests/balancing/test_accumulation.py``); this measures
what the exactness costs. Time: the best (minimum) wall time of ``--steps`` steps after
``--warmup`` (the most robust statistic on a shared machine). Also reports the
accumulated K×P Jacobian's size. Writes a Markdown table to
``docs/benchmarks/accumulation.md``::

    nice -n 19 python scripts/bench_accumulation.py --threads 1
    python scripts/bench_accumulation.py --methods ew,upgrad --micro 8
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from torch import nn

import polytask as pt
from polytask.balancing import GradientAccumulator

DEFAULT_METHODS = "ew,uw,gls,gradnorm,famo,mgda,mgda-ub,pcgrad,upgrad,nash-mtl,cagrad"
OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "accumulation.md"


def build(args: argparse.Namespace, method: str):
    """Model, tasks, balancer, optimizer and a fixed batch."""
    torch.manual_seed(0)
    tasks = {f"t{k}": pt.Regression(f"t{k}") for k in range(args.tasks)}
    encoder = nn.Sequential(
        nn.Linear(args.inputs, args.hidden),
        nn.Tanh(),
        nn.Linear(args.hidden, args.hidden),
        nn.Tanh(),
    )
    model = pt.HardSharing(encoder, tasks, encoder_out_features=args.hidden)
    balancer = pt.balancing.get(method)
    balancer.prepare(list(tasks))
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.extra_parameters()], lr=1e-3)
    balancer.attach(model=model, optimizer=optimizer, tasks=tasks)
    x = torch.randn(args.batch, args.inputs)
    y = {n: torch.randn(args.batch) for n in tasks}
    return model, tasks, balancer, optimizer, x, y


def step_large(model, tasks, balancer, optimizer, x, y) -> None:
    optimizer.zero_grad()
    losses = pt.tasks.compute_losses(tasks, model(x), y)
    balancer.backward(
        losses, shared_params=model.shared_parameters(), representation=model.shared_representation
    )
    optimizer.step()
    if balancer.needs_losses_after_step:
        with torch.no_grad():
            balancer.on_step_end(pt.tasks.compute_losses(tasks, model(x), y))


def step_accumulated(acc, micro, model, tasks, balancer, optimizer, x, y) -> None:
    optimizer.zero_grad()
    xs, parts = x.chunk(micro), {n: v.chunk(micro) for n, v in y.items()}
    for i, xb in enumerate(xs):
        targets = {n: parts[n][i] for n in tasks}
        losses = pt.tasks.compute_losses(tasks, model(xb), targets)
        acc.add(losses, representation=model.shared_representation)
    acc.backward()
    optimizer.step()
    if balancer.needs_losses_after_step:
        with torch.no_grad():
            after = [
                pt.tasks.compute_losses(tasks, model(xb), {n: parts[n][i] for n in tasks})
                for i, xb in enumerate(xs)
            ]
        balancer.on_step_end(pt.balancing.whole_batch_losses(after))


def best_time(fn, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(args: argparse.Namespace, method: str, strategy: str | None = None) -> dict[str, float]:
    model, tasks, balancer, optimizer, x, y = build(args, method)
    large = best_time(
        lambda: step_large(model, tasks, balancer, optimizer, x, y), args.warmup, args.steps
    )
    model, tasks, balancer, optimizer, x, y = build(args, method)
    acc = GradientAccumulator(
        balancer, shared_params=model.shared_parameters(), micro_batches=args.micro
    )
    accumulated = best_time(
        lambda: step_accumulated(acc, args.micro, model, tasks, balancer, optimizer, x, y),
        args.warmup,
        args.steps,
    )
    params = sum(p.numel() for p in model.parameters())
    return {
        "large": large,
        "accumulated": accumulated,
        "jacobian_mib": args.tasks * params * 4 / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument(
        "--batched",
        default="ew,upgrad",
        help="methods also run with the accumulator's batched strategy",
    )
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    runs = [(m, None) for m in args.methods.split(",")]
    runs += [(m, "batched") for m in args.batched.split(",") if m]
    for method, strategy in runs:
        r = measure(args, method, strategy)
        method = method if strategy is None else f"{method} (batched)"
        rows.append((method, r))
        print(
            f"{method:10s} large {r['large'] * 1e3:8.2f} ms  accumulated "
            f"{r['accumulated'] * 1e3:8.2f} ms  ratio {r['accumulated'] / r['large']:5.2f}",
            flush=True,
        )
    lines = [
        "# Gradient accumulation: step time against one large batch",
        "",
        f"One optimizer step on a batch of {args.batch} as one batch (`large`) or as "
        f"{args.micro} micro-batches of {args.batch // args.micro} through "
        "`GradientAccumulator` (`accumulated`; the same update, exact). Shared MLP "
        f"{args.inputs}→{args.hidden}→{args.hidden}, K = {args.tasks} regression heads, "
        f"float32, {args.threads} thread(s), best of {args.steps} steps after "
        f"{args.warmup}; {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}. The accumulated K×P Jacobian: "
        f"{rows[0][1]['jacobian_mib']:.1f} MiB. Written by `scripts/bench_accumulation.py`.",
        "",
        "| method | large (ms) | accumulated (ms) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for method, r in rows:
        lines.append(
            f"| {method} | {r['large'] * 1e3:.2f} | {r['accumulated'] * 1e3:.2f} | "
            f"{r['accumulated'] / r['large']:.2f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
