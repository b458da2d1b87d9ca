"""Loss weightings that read per-task gradients (GradNorm, DB-MTL, IMTL, Excess-MTL)
read them through the engine, which averages them across ranks: with the model's
gradients synchronised as DDP would, two processes with half a batch each take the
steps (weights and update) of one process on the whole batch."""

from __future__ import annotations

import copy
import os
import time

import pytest
import torch
import torch.distributed as dist
from test_engine import Tiny, data

import polytask.balancing as B

CASES = [("gradnorm", {}), ("db-mtl", {}), ("imtl", {}), ("excess-mtl", {})]


def steps(model: Tiny, x: torch.Tensor, y: torch.Tensor, name: str, options: dict):
    """Weights of 3 steps of plain SGD, and the final gradients; ``.grad`` averaged
    across ranks after each backward (what DDP's gradient sync does)."""
    model = copy.deepcopy(model)
    torch.manual_seed(11)
    balancer = B.get(name, **options).double()
    balancer.prepare([f"t{i}" for i in range(3)])
    weights = []
    for _ in range(3):
        model.zero_grad(set_to_none=True)
        result = balancer.backward(model.losses(x, y), shared_params=model.trunk.parameters())
        weights.append(torch.tensor([result.weights[n] for n in sorted(result.weights)]))
        with torch.no_grad():
            for p in [*model.parameters(), *balancer.extra_parameters()]:
                if p.grad is not None:
                    B.engine.average_across_ranks(p.grad)
            for p in model.parameters():
                p -= 0.1 * p.grad
            for p in balancer.extra_parameters():
                if p.grad is not None:
                    p -= 0.01 * p.grad
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    return torch.stack(weights), grads


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y = data()
        share = x.shape[0] // world
        part = slice(rank * share, (rank + 1) * share)
        results = {i: steps(Tiny(), x[part], y[part], n, o) for i, (n, o) in enumerate(CASES)}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
def test_two_ranks_read_the_whole_batch_gradients(tmp_path):
    context = torch.multiprocessing.start_processes(
        _worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two ranks did not finish within 120 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    x, y = data()
    for i, (name, options) in enumerate(CASES):
        weights, grads = steps(Tiny(), x, y, name, options)
        for rank in ranks:
            assert torch.allclose(rank[i][0], weights, rtol=1e-6, atol=1e-10), name
            assert torch.allclose(rank[i][1], grads, rtol=1e-6, atol=1e-10), name
