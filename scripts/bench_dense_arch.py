"""Step time and memory of each architecture on dense NYUv2-shaped input, relative to
hard sharing.

For every architecture (hard sharing, cross-stitch, MTAN, branched on the SegNet's
stages; hard sharing on the index-unpooling SegNet; MTAN-SegNet) this builds the three
NYUv2 tasks (13-class segmentation, depth, normals) and times a full training step
(forward, the three losses, equal-weighting backward, Adam step) on random input of
the given size, after warm-up steps. Memory: the bytes of the tensors autograd saves
for backward during one step (the activation memory, measured the same way on any
device) plus parameters, gradients and Adam's two moments; on CUDA also the peak of
``torch.cuda.max_memory_allocated``. Every figure is also given as a ratio to hard
sharing measured in the same run.

    python scripts/bench_dense_arch.py                         # 288×384, paper SegNet
    python scripts/bench_dense_arch.py --size 96 128 --filters 16 32 64 64 64 --steps 2

Writes a Markdown table to ``--out`` (default docs/benchmarks/dense_arch.md).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from polytask import models
from polytask.models import Backbone, StagedDense, segnet_stages
from polytask.models.segnet import SEGNET_CONVS, SEGNET_FILTERS
from polytask.tasks import Depth, Segmentation, SurfaceNormal

ARCHS = ("hard", "cross_stitch", "mtan", "branched", "segnet", "mtan_segnet")


def _tasks():
    return {"segmentation": Segmentation("segmentation", num_classes=13),
            "depth": Depth("depth"), "normal": SurfaceNormal("normal")}


def _backbone(size, filters, convs) -> Backbone:
    def stages():
        return segnet_stages(3, filters, convs)

    return Backbone(make_encoder=lambda: StagedDense(stages(), filters[0]),
                    out_features=filters[0], make_stages=stages, input_shape=(3, *size),
                    options={"filters": filters, "convs": convs})


def _batch(n, size, device):
    h, w = size
    x = torch.randn(n, 3, h, w, device=device)
    normal = torch.randn(n, 3, h, w, device=device)
    normal = normal / normal.norm(dim=1, keepdim=True)
    targets = {"segmentation": torch.randint(0, 13, (n, h, w), device=device),
               "depth": torch.rand(n, 1, h, w, device=device) + 0.5, "normal": normal}
    return x, targets


def _saved_bytes(step) -> int:  # noqa: ANN001
    """Bytes of the distinct storages autograd saves for backward during ``step()``."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def measure(arch: str, size, filters, convs, batch: int, steps: int, warmup: int,
            device: torch.device) -> dict:
    """Seconds per step and memory of one architecture."""
    torch.manual_seed(0)
    tasks = _tasks()
    model = models.get(arch, tasks=tasks, backbone=_backbone(size, filters, convs)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, targets = _batch(batch, size, device)

    def step() -> None:
        out = model(x)
        loss = sum(t.loss(out[k], targets[k]) for k, t in tasks.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    saved = _saved_bytes(step)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return {"arch": arch, "seconds": sorted(times)[len(times) // 2], "params": params,
            "state": 4 * params + saved, "saved": saved, "peak": peak}


def main() -> None:
    """Measure every architecture and write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs=2, default=(288, 384))
    p.add_argument("--filters", type=int, nargs="+", default=list(SEGNET_FILTERS))
    p.add_argument("--convs", type=int, nargs="+", default=None)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks/dense_arch.md"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    filters = tuple(args.filters)
    convs = tuple(args.convs) if args.convs else tuple(SEGNET_CONVS[: len(filters)])
    device = torch.device(args.device)
    rows = [measure(a, tuple(args.size), filters, convs, args.batch, args.steps, args.warmup,
                    device) for a in args.archs.split(",")]
    base = next(r for r in rows if r["arch"] == "hard")
    mb = 2 ** 20
    dev = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        f"Dense architectures, three NYUv2 tasks, input {args.size[0]}×{args.size[1]}, batch "
        f"{args.batch}, SegNet filters {filters}, convs {convs}; device {device} ({dev}), "
        f"torch threads {torch.get_num_threads()}; median of {args.steps} steps after "
        f"{args.warmup} warm-up.",
        "",
        "| architecture | params (M) | s/step | × hard | saved activations (MB) | "
        "params+grads+Adam+activations (MB) | × hard | CUDA peak (MB) | × hard |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = f"{r['peak'] / mb:.0f}" if r["peak"] is not None else "-"
        peak_x = f"{r['peak'] / base['peak']:.2f}" if r["peak"] is not None else "-"
        lines.append(
            f"| {r['arch']} | {r['params'] / 4e6:.2f} | {r['seconds']:.3f} | "
            f"{r['seconds'] / base['seconds']:.2f} | {r['saved'] / mb:.0f} | "
            f"{r['state'] / mb:.0f} | {r['state'] / base['state']:.2f} | {peak} | {peak_x} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
