"""How far a training budget gets the Pareto-MTL LeNet on MultiMNIST, outside polytask.

A bare PyTorch loop (no Trainer, no balancer, no polytask evaluation) trains the LeNet
of ``pareto-multimnist`` with equal weights on the first ``--train`` canvases and prints
the mean test cross-entropy of each task after every epoch, and the hypervolume of that
single point with reference point (2, 2): ``(2 − L_left)(2 − L_right)``. It checks that
a low hypervolume from ``polytask pareto`` at the same budget is the budget (too few
steps), not a bug in training, evaluation or the hypervolume. Writes the table to
``--out`` (Markdown).

    python scripts/check_pareto_budget.py --train 5000 --epochs 3 --batch-size 256
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from polytask.benchmarks import get
from polytask.benchmarks.pareto_pairs import pmtl_lenet_stages


def main() -> None:
    """Train, evaluate each epoch, print and write the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/check_pareto_budget.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = get("pareto-multimnist").load(None, 0)
    x, ys = data.train.inputs[: args.train], data.train.targets
    yl, yr = ys["left"][: args.train], ys["right"][: args.train]
    xt = data.test.inputs[: args.test]
    tl, tr = data.test.targets["left"][: args.test], data.test.targets["right"][: args.test]
    encoder = nn.Sequential(*pmtl_lenet_stages())
    left, right = nn.Linear(50, 10), nn.Linear(50, 10)
    params = [*encoder.parameters(), *left.parameters(), *right.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr)
    rows = [
        f"train {args.train}, test {args.test}, batch {args.batch_size}, lr {args.lr}, "
        f"seed {args.seed}",
        "",
        "| epoch | steps | test CE left | test CE right | HV of the point, ref (2, 2) | s |",
        "|---|---|---|---|---|---|",
    ]
    start, steps = time.perf_counter(), 0
    for epoch in range(args.epochs):
        order = torch.randperm(args.train)
        for i in range(0, args.train, args.batch_size):
            idx = order[i : i + args.batch_size]
            z = encoder(x[idx])
            loss = cross_entropy(left(z), yl[idx]) + cross_entropy(right(z), yr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        with torch.no_grad():
            z = encoder(xt)
            a, b = float(cross_entropy(left(z), tl)), float(cross_entropy(right(z), tr))
        hv = max(0.0, 2 - a) * max(0.0, 2 - b)
        rows.append(
            f"| {epoch + 1} | {steps} | {a:.3f} | {b:.3f} | {hv:.3f} | "
            f"{time.perf_counter() - start:.1f} |"
        )
        print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(rows) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
