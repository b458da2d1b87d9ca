"""polytask's balancers under Hugging Face ``accelerate`` (the recipe of docs/lightning.md).

The plain-loop protocol (docs/plain_loop.md) with ``accelerate`` giving the processes,
the devices, the data sharding and autocast. The model is *not* passed to
``accelerator.prepare`` (no DistributedDataParallel): the Jacobian engine reduces
what each rule needs across ranks itself, and the loop averages the gradients the
balancer wrote once, with ``accelerator.reduce`` — where the balancer already made
them identical on every rank (gradient aggregation) this changes nothing, where they
are the rank's share of a weighted sum (loss weighting) it gives the whole batch's.
Every rank then takes the update of one process on the whole batch.

Run it (two CPU processes, or ``--num_processes`` GPUs)::

    accelerate launch --cpu --num_processes 2 scripts/accelerate_example.py --method upgrad
    python scripts/accelerate_example.py --method pcgrad       # one process

Needs ``pip install polytask[accelerate]``. Mixed precision: ``--mixed-precision bf16``
(autocast only). fp16 with a GradScaler is not covered: the balancer's gradients
would not be scaled.
"""

from __future__ import annotations

import argparse

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import polytask as pt
from polytask.balancing import get as get_balancer


def make_data(n: int = 64, seed: int = 0) -> TensorDataset:
    """A small two-task problem: a regression target and a binary one."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return TensorDataset(x, x[:, 0] - x[:, 1], (x[:, 2] > 0).float())


def average_gradients(accelerator: Accelerator, params: list[torch.Tensor]) -> None:
    """Average ``.grad`` over the processes (a parameter no loss reached counts as 0)."""
    if accelerator.num_processes == 1:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params])
    flat = accelerator.reduce(flat, reduction="mean")
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def train(method: str = "upgrad", epochs: int = 2, batch_size: int = 16,
          mixed_precision: str = "no", seed: int = 0) -> nn.Module:
    """Train the example model; returns it (the same on every process)."""
    # split_batches: each process gets an equal slice of every batch of the loader
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    torch.manual_seed(seed)  # the same parameters and random draws on every process
    tasks = [pt.Regression("r"), pt.Binary("b")]
    model = pt.HardSharing(nn.Sequential(nn.Linear(5, 16), nn.ReLU()), tasks,
                           encoder_out_features=16).to(accelerator.device)
    balancer = get_balancer(method).to(accelerator.device)
    balancer.prepare([t.name for t in tasks])
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.extra_parameters()], lr=0.1)
    balancer.attach(model=model, optimizer=optimizer, tasks={t.name: t for t in tasks})
    loader = DataLoader(make_data(), batch_size=batch_size, shuffle=False)
    optimizer, loader = accelerator.prepare(optimizer, loader)  # not the model
    params = [p for p in [*model.parameters(), *balancer.parameters()] if p.requires_grad]
    for epoch in range(epochs):
        for x, r, b in loader:
            targets = {"r": r, "b": b}
            with accelerator.autocast():
                outputs = model(x)
                losses = pt.tasks.compute_losses({t.name: t for t in tasks}, outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            balancer.backward(losses, shared_params=model.shared_parameters(),
                              representation=model.shared_representation)
            average_gradients(accelerator, params)
            optimizer.step()
            if balancer.needs_losses_after_step:  # FAMO: the same batch after the step
                with torch.no_grad():
                    after = pt.tasks.compute_losses({t.name: t for t in tasks}, model(x), targets)
                balancer.on_step_end({n: accelerator.reduce(v.detach(), reduction="mean")
                                      for n, v in after.items()})
            else:
                balancer.on_step_end(None)
        balancer.on_epoch_end(epoch)
    last = ", ".join(f"{n}={float(v.detach()):.4f}" for n, v in losses.items())
    accelerator.print(f"{method} on {accelerator.num_processes} process(es): last losses {last}")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="upgrad")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16"])
    args = parser.parse_args()
    train(args.method, args.epochs, mixed_precision=args.mixed_precision)


if __name__ == "__main__":
    main()
