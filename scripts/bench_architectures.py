"""Parameters and forward time of every architecture relative to hard sharing.

Usage: python scripts/bench_architectures.py [--out docs/benchmarks/architectures.md]
       [--repeats 20] [--tasks 2 10]

For K tasks (binary heads) on two backbones — an MLP (64 -> 128 -> 128 -> 64) and a
small CNN (1×32×32; conv 16, conv 32, dense 64) — each registered architecture is built
through the registry with its defaults and timed on a forward pass in training mode
(the search phase for AdaShare and LearningToBranch), batch 256 (MLP) or 64 (CNN),
one CPU thread, median of ``--repeats`` runs after warm-up. Prints the table and writes
it as Markdown.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from polytask import models
from polytask.models import Backbone
from polytask.tasks import Binary


def mlp_backbone() -> tuple[Backbone, torch.Tensor]:
    widths = (128, 128, 64)

    def stages() -> list[nn.Module]:
        out, d = [], 64
        for w in widths:
            out.append(nn.Sequential(nn.Linear(d, w), nn.ReLU()))
            d = w
        return out

    backbone = Backbone(make_encoder=lambda: nn.Sequential(*stages()), out_features=64,
                        make_stages=stages, stage_channels=widths, input_shape=(64,))
    return backbone, torch.randn(256, 64)


def cnn_backbone() -> tuple[Backbone, torch.Tensor]:
    def stages() -> list[nn.Module]:
        return [
            nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.MaxPool2d(2)),
            nn.Sequential(nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU()),
        ]

    backbone = Backbone(make_encoder=lambda: nn.Sequential(*stages()), out_features=64,
                        make_stages=stages, stage_channels=(16, 32, 64),
                        input_shape=(1, 32, 32))
    return backbone, torch.randn(64, 1, 32, 32)


def forward_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    model.train()
    times = []
    with torch.no_grad():
        for i in range(repeats + 3):
            start = time.perf_counter()
            model(x)
            if i >= 3:
                times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(k: int, backbone: Backbone, x: torch.Tensor, repeats: int) -> list[dict]:
    rows = []
    base_params = base_ms = None
    names = ["hard"] + [a for a in models.available() if a not in ("hard", "shared_bottom")]
    for name in names:
        if name == "esmm":
            if k != 2:
                continue
            tasks = [Binary("ctr"), Binary("ctcvr")]
        else:
            tasks = [Binary(f"t{i}") for i in range(k)]
        torch.manual_seed(0)
        model = models.get(name, tasks=tasks, backbone=backbone)
        params = sum(p.numel() for p in model.parameters())
        ms = forward_ms(model, x, repeats)
        if name == "hard":
            base_params, base_ms = params, ms
        rows.append({"arch": name, "params": params, "ms": ms,
                     "rel_params": params / base_params, "rel_ms": ms / base_ms})
    return rows


def table(results: dict) -> str:
    lines = []
    for (backbone, k), rows in results.items():
        lines += [f"### {backbone}, K = {k}", "",
                  "| architecture | parameters | × hard | forward (ms) | × hard |",
                  "|---|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['arch']} | {r['params']:,} | {r['rel_params']:.2f} | "
                         f"{r['ms']:.2f} | {r['rel_ms']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/benchmarks/architectures.md")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 10])
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for label, build in (("MLP", mlp_backbone), ("CNN", cnn_backbone)):
        backbone, x = build()
        for k in args.tasks:
            results[(label, k)] = measure(k, backbone, x, args.repeats)
    body = table(results)
    print(body)
    header = (
        "# Architecture cost relative to hard sharing\n\n"
        "Written by `scripts/bench_architectures.py`. Every architecture with its registry "
        "defaults (MMoE 8 experts; DSelect-k 8 experts, k = 2; CGC 1 shared + 1 per task; "
        "PLE 2 levels; cross-stitch and sluice units after every stage; branched: last "
        "stage per task; AdaShare and LearningToBranch in their search phase), binary "
        "heads, forward pass in training mode without autograd, one CPU thread, median of "
        f"{args.repeats} runs. MLP: 64 → 128 → 128 → 64, batch 256. CNN: 1×32×32, conv 16, "
        "conv 32, dense 64, batch 64. ESMM has exactly two tasks (ctr, ctcvr).\n\n"
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}.\n\n"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + body)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
