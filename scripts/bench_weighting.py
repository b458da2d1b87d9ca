"""Cost per training step of every loss weighting, relative to equal weighting.

For each benchmark (default: census-income and multimnist) the benchmark's own model
(hard sharing on its backbone, its tasks, its batch size) is trained on real batches
with every loss-weighting method. One step = forward, task losses, ``balancer.backward``
and ``optimizer.step``. Methods are timed round-robin in the same run (each round runs
every method for a block of steps) so that machine noise hits them alike; the table
gives the median time per step and its ratio to ``ew``. Writes
docs/benchmarks/weighting.md.

    python scripts/bench_weighting.py --steps 20 --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from polytask import balancing, benchmarks, models

METHODS = ["ew", "scalarization", "uw", "gradnorm", "dwa", "rlw", "gls", "imtl-l", "imtl",
           "famo", "db-mtl", "stch", "excess-mtl", "auto-lambda"]


def batches(data, size: int, n: int, seed: int = 0):
    """``n`` fixed random training batches (inputs, targets)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        idx = torch.randint(0, data.train.inputs.shape[0], (size,), generator=g)
        out.append((data.train.inputs[idx], {k: v[idx] for k, v in data.train.targets.items()}))
    return out


def setup(bench, data, tasks, method: str, val_batch, device):
    """A fresh model, balancer and optimizer for ``method``."""
    torch.manual_seed(0)
    model = models.get("hard", tasks=tasks, backbone=bench.backbone(data)).to(device)
    balancer = balancing.get(method).to(device)
    if hasattr(balancer, "prepare"):
        balancer.prepare(list(tasks))
    params = list(model.parameters()) + [p for p in balancer.extra_parameters()]
    optimizer = torch.optim.Adam(params, lr=bench.lr)
    if hasattr(balancer, "attach"):
        x_val, y_val = val_batch

        def val_loss(forward):
            out = forward(x_val)
            return {n: t.loss(out[n], y_val[n]) for n, t in tasks.items()}

        balancer.attach(model=model, val_loss=val_loss, optimizer=optimizer)
    return model, balancer, optimizer


def step(model, tasks, balancer, optimizer, batch) -> None:
    """One training step."""
    x, y = batch
    out = model(x)
    losses = {n: t.loss(out[n], y[n]) for n, t in tasks.items()}
    optimizer.zero_grad(set_to_none=True)
    balancer.backward(losses, shared_params=list(model.shared_parameters()),
                      representation=model.shared_representation)
    optimizer.step()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, methods: list[str], steps: int, rounds: int, device) -> list[dict]:
    """Median seconds per step of each method on benchmark ``name``."""
    bench = benchmarks.get(name)
    data = bench.load(None, 0)
    tasks = bench.tasks()
    pool = batches(data, bench.batch_size, steps + 1)
    pool = [(x.to(device), {k: v.to(device) for k, v in y.items()}) for x, y in pool]
    val_batch = pool[-1]
    runs = {m: setup(bench, data, tasks, m, val_batch, device) for m in methods}
    for m in methods:  # warm-up
        model, balancer, optimizer = runs[m]
        for b in pool[:3]:
            step(model, tasks, balancer, optimizer, b)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for m in methods:
            model, balancer, optimizer = runs[m]
            sync(device)
            start = time.perf_counter()
            for b in pool[:steps]:
                step(model, tasks, balancer, optimizer, b)
            sync(device)
            times[m].append((time.perf_counter() - start) / steps)
    base = statistics.median(times["ew"])
    n_shared = sum(p.numel() for p in runs["ew"][0].shared_parameters())
    rows = []
    for m in methods:
        med = statistics.median(times[m])
        rows.append({"benchmark": name, "method": m, "ms": 1000 * med, "ratio": med / base,
                     "batch": bench.batch_size, "shared": n_shared})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table: method × benchmark, ms/step and ratio to ew."""
    names = list(dict.fromkeys(r["benchmark"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["benchmark"], r["method"]): r for r in rows}
    head = "| method | " + " | ".join(f"{n} ms/step | {n} × ew" for n in names) + " |"
    sep = "|---|" + "---:|---:|" * len(names)
    lines = [head, sep]
    for m in methods:
        parts = []
        for n in names:
            r = cell[(n, m)]
            parts += [f"{r['ms']:.2f}", f"{r['ratio']:.2f}"]
        lines.append(f"| {m} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default="census-income,multimnist")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="timed blocks per method")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/weighting.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "ew" not in methods:
        methods.insert(0, "ew")
    rows = []
    for name in args.benchmarks.split(","):
        rows += measure(name.strip(), methods, args.steps, args.rounds, device)
    text = table(rows)
    print(text)
    info = {r["benchmark"]: (r["batch"], r["shared"]) for r in rows}
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {args.threads} thread(s)")
    meta = "; ".join(f"{n}: batch {b}, {s:,} shared parameters" for n, (b, s) in info.items())
    doc = (
        "# Cost per step of the loss weightings\n\n"
        "Median time of one training step (forward, losses, `balancer.backward`, "
        "`optimizer.step`) of each method on each benchmark's hard-sharing model, and its "
        "ratio to equal weighting measured in the same run (methods timed round-robin, "
        f"{args.rounds} blocks of {args.steps} steps). Device: {where}. {meta}.\n\n"
        "Produced by `python scripts/bench_weighting.py "
        f"--steps {args.steps} --rounds {args.rounds} --threads {args.threads}"
        f"{'' if args.device == 'cpu' else ' --device ' + args.device}`.\n\n"
        + text + "\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
