"""Time per training step of ``polytask.lightning.MultiTaskModule`` against polytask's
Trainer (one process), and with Lightning's DDP strategy on 2 CPU processes (gloo).

A shared MLP (``--width`` units, two hidden layers, 64 inputs) with K regression heads,
batches of ``--batch`` samples (on 2 processes: half a batch each, the same global
batch), Adam. Each configuration trains ``--steps`` steps after ``--warmup`` steps; the
best (minimum) step time is reported (the most robust statistic on a shared machine),
and the samples per second of the global batch at that time. Prints a Markdown table::

    python scripts/bench_lightning.py                        # ew, upgrad, pcgrad
    python scripts/bench_lightning.py --methods ew mgda --processes 1

Needs the ``lightning`` extra.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import polytask as pt


class Synthetic(Dataset):
    def __init__(self, n: int, k: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 64, generator=g)
        self.y = torch.randn(n, k, generator=g)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i], {f"t{j}": self.y[i, j] for j in range(self.y.shape[1])}


class StepTimer:
    """A Lightning callback keeping the wall time of each training batch."""

    def __init__(self) -> None:
        import lightning.pytorch as L

        class _Callback(L.Callback):
            def on_train_batch_start(cb, *args, **kwargs):  # noqa: N805
                self._start = time.perf_counter()

            def on_train_batch_end(cb, *args, **kwargs):  # noqa: N805
                self.times.append(time.perf_counter() - self._start)

        self.times: list[float] = []
        self.callback = _Callback()


def build(args: argparse.Namespace) -> tuple[pt.HardSharing, list[pt.Task]]:
    torch.manual_seed(0)
    tasks = [pt.Regression(f"t{j}") for j in range(args.tasks)]
    encoder = nn.Sequential(nn.Linear(64, args.width), nn.ReLU(),
                            nn.Linear(args.width, args.width), nn.ReLU())
    return pt.HardSharing(encoder, tasks, encoder_out_features=args.width), tasks


def lightning_step_time(method: str, args: argparse.Namespace, processes: int) -> float:
    import lightning.pytorch as L

    from polytask.lightning import MultiTaskModule

    model, tasks = build(args)
    data = Synthetic(args.batch * (args.steps + args.warmup), args.tasks)
    if processes > 1:
        sampler = DistributedSampler(data, num_replicas=processes,
                                     rank=int(os.environ["RANK"]), shuffle=False)
        loader = DataLoader(data, batch_size=args.batch // processes, sampler=sampler)
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    else:
        loader = DataLoader(data, batch_size=args.batch)
        strategy = "auto"
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", devices=processes, strategy=strategy, max_epochs=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False,
                        callbacks=[timer.callback])
    trainer.fit(MultiTaskModule(model, tasks, method), loader)
    return min(timer.times[args.warmup:])


def trainer_step_time(method: str, args: argparse.Namespace) -> float:
    model, tasks = build(args)
    data = Synthetic(args.batch * (args.steps + args.warmup), args.tasks)
    trainer = pt.Trainer(model, tasks, method, progress=False, device="cpu")
    times = []
    for i, batch in enumerate(DataLoader(data, batch_size=args.batch)):
        start = time.perf_counter()
        trainer.train_step(batch)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return min(times)


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0")
    times = {m: lightning_step_time(m, args, world) for m in args.methods}
    if rank == 0:
        torch.save(times, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["ew", "upgrad", "pcgrad"])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows = {m: {} for m in args.methods}
    for m in args.methods:
        rows[m]["trainer"] = trainer_step_time(m, args)
        rows[m]["lightning, 1 process"] = lightning_step_time(m, args, 1)
    if 2 in args.processes:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = os.path.join(tempfile.mkdtemp(), "times.pt")
        torch.multiprocessing.start_processes(_worker, args=(2, port, args, out), nprocs=2,
                                              join=True, start_method="spawn")
        for m, t in torch.load(out).items():
            rows[m]["lightning, 2 processes"] = t
    columns = list(next(iter(rows.values())))
    print(f"K = {args.tasks}, MLP 64→{args.width}→{args.width}, global batch {args.batch}, "
          "one thread per process; best step time in ms (samples/s)\n")
    print("| method | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for m, cells in rows.items():
        print(f"| {m} | " + " | ".join(
            f"{1e3 * t:.2f} ({args.batch / t:,.0f})" for t in cells.values()) + " |")


if __name__ == "__main__":
    main()
