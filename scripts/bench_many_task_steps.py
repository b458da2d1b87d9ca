"""Step time of balancing methods at T = 12 and T = 30 tasks, in one run, and the engine
path ``auto`` picks for each.

The model is the MoleculeACE backbone (an MLP 1024 → 512 → 128 on fingerprint-sized
inputs, batch 128) with T linear regression heads: T = 30 is MoleculeACE's task count,
T = 12 QM9's property count. One step is zero_grad, forward, the balancer's backward and
an Adam step; the time is the best of ``--steps`` steps after ``--warmup``, reported as a
ratio to equal weighting measured in the same run (the ratio is what carries over to
other machines). Writes ``docs/results/many-task-steps.md``::

    python scripts/bench_many_task_steps.py --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from polytask import balancing
from polytask.benchmarks.common import MLP

#: gradient methods also timed on the representation path (their "-ub" variant)
REPRESENTATION = ("mgda", "pcgrad", "cagrad", "upgrad")
METHODS = (
    "ew",
    "uw",
    "dwa",
    "rlw",
    "famo",
    "mgda",
    "pcgrad",
    "cagrad",
    "imtl-g",
    "upgrad",
    "aligned-mtl",
)


class _Ctx:  # what resolved_path reads
    def __init__(self, losses, params) -> None:  # noqa: ANN001
        self.losses, self.shared_params = losses, params


def time_method(
    name: str, tasks: int, steps: int, warmup: int, path: str | None = None
) -> tuple[float, str]:
    """Best step time (s) of ``name`` with ``tasks`` heads, and the path it takes:
    the one ``auto`` picks, or ``path`` when given (``"representation"``: gradients
    w.r.t. the shared 128-d representation, backpropagated through the encoder)."""
    torch.manual_seed(0)
    encoder = MLP(1024, (512, 128))
    heads = nn.ModuleList(nn.Linear(128, 1) for _ in range(tasks))
    names = [f"t{k}" for k in range(tasks)]
    balancer = balancing.get(name, **({"path": path} if path else {}))
    if hasattr(balancer, "prepare"):
        balancer.prepare(names)
    params = list(encoder.parameters()) + list(heads.parameters())
    params += list(balancer.extra_parameters()) if hasattr(balancer, "extra_parameters") else []
    opt = torch.optim.Adam(params, lr=1e-3)
    x = (torch.rand(128, 1024) < 0.05).float()
    y = torch.randn(128, tasks)
    best, path = float("inf"), "one backward (loss weighting)"
    for i in range(warmup + steps):
        start = time.perf_counter()
        opt.zero_grad()
        z = encoder(x)
        losses = {
            n: ((h(z).squeeze(1) - y[:, k]) ** 2).mean()
            for k, (n, h) in enumerate(zip(names, heads))
        }
        if i == 0 and hasattr(balancer, "resolved_path"):
            path = balancer.resolved_path(_Ctx(list(losses.values()), list(encoder.parameters())))
        balancer.backward(losses, shared_params=list(encoder.parameters()), representation=z)
        opt.step()
        if i >= warmup:
            best = min(best, time.perf_counter() - start)
    return best, path


def main() -> None:
    """Measure and write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("docs/results/many-task-steps.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for tasks in (12, 30):
        base, _ = time_method("ew", tasks, args.steps, args.warmup)
        for name in METHODS:
            t, path = time_method(name, tasks, args.steps, args.warmup)
            rows.append((tasks, name, t * 1e3, t / base, path))
            print(f"T={tasks:2d} {name:12s} {t * 1e3:8.1f} ms  ×{t / base:5.2f}  path {path}")
        for name in REPRESENTATION:
            t, path = time_method(name, tasks, args.steps, args.warmup, "representation")
            rows.append((tasks, name, t * 1e3, t / base, f"{path} (asked for)"))
            print(f"T={tasks:2d} {name:12s} {t * 1e3:8.1f} ms  ×{t / base:5.2f}  path {path}")
    lines = [
        "# Step time at T = 12 and T = 30 (MoleculeACE backbone, batch 128)",
        "",
        f"`python scripts/bench_many_task_steps.py --threads {args.threads}` "
        f"(best of {args.steps} steps, CPU, torch {torch.__version__}); ratio to equal "
        "weighting measured in the same run.",
        "",
        "| T | method | ms/step | × ew | path (auto's pick unless asked for) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {k} | {n} | {ms:.1f} | {r:.2f} | {path} |" for k, n, ms, r, path in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
