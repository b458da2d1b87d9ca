"""Mixed precision against fp32: final-parameter distance, skipped fp16 steps, time.

For each method, trains the same small hard-sharing model (synthetic 3-task data) for
a few epochs in fp32, bf16 and fp16 (autocast, and for fp16 the GradScaler removed
inside the balancer), and prints a markdown table: the distance of the bf16/fp16
parameters from fp32's relative to the distance fp32 travelled, the fp16 steps the
scaler skipped, and seconds per epoch. On a CUDA device (``--device cuda``) this is
the GPU check of docs/precision.md; on the CPU it runs in about a minute.

    python scripts/bench_precision.py --device cpu --methods ew,mgda,nash-mtl,upgrad
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import polytask as pt
from polytask.training import Callback, MultiTaskDataset, Trainer, batch_loader

TASKS = [pt.Regression("r"), pt.Binary("b"), pt.Regression("s")]


class Skipped(Callback):
    """Counts optimizer steps the fp16 scaler skipped."""

    def __init__(self) -> None:
        self.skipped = 0

    def on_optimizer_step(self, trainer, optimizer, stepped) -> None:  # noqa: ANN001
        self.skipped += not stepped


def data(n: int, width: int, seed: int = 0) -> MultiTaskDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, width, generator=g)
    targets = {"r": 2 * x[:, 0], "b": (x[:, 1] > 0).float(), "s": x[:, 2] - x[:, 3]}
    return MultiTaskDataset(x, targets)


def model(width: int, hidden: int) -> nn.Module:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                            nn.ReLU())
    return pt.HardSharing(encoder, TASKS, encoder_out_features=hidden)


def run(method: str, precision: str, args: argparse.Namespace):
    skipped = Skipped()
    trainer = Trainer(model(args.width, args.hidden), TASKS, method,
                      lambda p: torch.optim.SGD(p, lr=0.05), device=args.device, seed=0,
                      progress=False, precision=precision, callbacks=[skipped])
    start_params = torch.cat([p.detach().reshape(-1).float().cpu()
                              for p in trainer.model.parameters()])
    loader = batch_loader(data(args.samples, args.width), args.batch_size)
    t0 = time.perf_counter()
    trainer.fit(loader, epochs=args.epochs)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / args.epochs
    params = torch.cat([p.detach().reshape(-1).float().cpu() for p in trainer.model.parameters()])
    return start_params, params, skipped.skipped, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default="ew,mgda,nash-mtl,pcgrad,upgrad,cagrad,uw,gradnorm")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    print(f"device {args.device}, torch {torch.__version__}, {args.epochs} epochs of "
          f"{args.samples // args.batch_size} steps\n")
    print("| method | bf16 rel. distance | fp16 rel. distance | fp16 skipped steps | "
          "s/epoch fp32 | bf16 | fp16 |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        start, ref, _, t32 = run(method, "32", args)
        travelled = float((ref - start).norm())
        row = [method]
        times = [t32]
        skipped = 0
        for precision in ("bf16", "fp16"):
            _, params, n_skipped, seconds = run(method, precision, args)
            row.append(f"{float((params - ref).norm()) / max(travelled, 1e-12):.4f}")
            times.append(seconds)
            if precision == "fp16":
                skipped = n_skipped
        row.append(str(skipped))
        row += [f"{t:.3f}" for t in times]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
