"""Under torch.distributed the engine averages what it computes across ranks, so two
processes with half a batch each give the update of one process with the whole batch."""

from __future__ import annotations

import copy
import os
import time

import pytest
import torch
import torch.distributed as dist
from test_engine import Tiny, data

import polytask.balancing as B
from polytask.errors import PolytaskError

CASES = [
    ("mgda", {"path": "jacobian"}),
    ("moco", {"path": "jacobian"}),
    ("pcgrad", {"path": "jacobian", "seed": 3}),
    ("imtl-g", {"path": "gramian"}),  # the whole Jacobian fits: J Jᵀ
    ("upgrad", {"path": "gramian", "jacobian_memory_limit": 0}),  # products, one task
    ("cagrad", {"path": "gramian", "strategy": "batched", "chunk_size": 2}),
    ("mgda", {"path": "gramian", "max_block_numel": 1}),  # parameter blocks
    ("mgda-ub", {}),  # representation path
    ("rgw", {}),  # precomputed weights
]


def gradients(model: Tiny, x: torch.Tensor, y: torch.Tensor, name: str, options: dict):
    """Every parameter's gradient after two balanced steps of plain SGD."""
    model = copy.deepcopy(model)
    torch.manual_seed(11)
    balancer = B.get(name, **options)
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        losses = model.losses(x, y)
        balancer.backward(losses, shared_params=model.trunk.parameters(),
                          representation=model.rep)
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        x, y = data()
        share = x.shape[0] // world
        part = slice(rank * share, (rank + 1) * share)
        results = {}
        for i, (name, options) in enumerate(CASES):
            results[i] = gradients(Tiny(), x[part], y[part], name, options)
        model = Tiny()
        losses = model.losses(x[part], y[part])
        try:
            B.get("graddrop").backward(losses, shared_params=model.trunk.parameters(),
                                       representation=model.rep)
        except PolytaskError as error:
            results["graddrop"] = str(error)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
def test_two_ranks_give_the_whole_batch_update(tmp_path):
    # "spawn", not "fork": forking a process whose thread pools are running can hang
    context = torch.multiprocessing.start_processes(
        _worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=False,
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
        whole = gradients(Tiny(), x, y, name, options)
        for rank in ranks:
            assert torch.allclose(rank[i], whole, rtol=1e-6, atol=1e-10), (name, options)
    assert "not supported under torch.distributed" in ranks[0]["graddrop"]
