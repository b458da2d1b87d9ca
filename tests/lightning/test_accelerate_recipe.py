"""The accelerate recipe (scripts/accelerate_example.py): two CPU processes give the
model one process trains on the whole batches."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("accelerate")

import torch  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
METHODS = ["ew", "uw", "mgda", "pcgrad", "upgrad", "nash-mtl"]


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(SCRIPTS))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    from accelerate_example import train

    results = {m: _flat(train(m)) for m in METHODS}
    assert torch.distributed.get_world_size() == world  # accelerate joined the two
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = torch.multiprocessing.start_processes(
        _worker, args=(2, port, str(tmp_path)), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 180
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two accelerate processes did not finish within 180 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    sys.path.insert(0, str(SCRIPTS))
    from accelerate_example import train

    for method in METHODS:
        whole = _flat(train(method))
        for rank in ranks:
            assert torch.allclose(rank[method], whole, rtol=1e-6, atol=1e-6), (
                method, float((rank[method] - whole).abs().max()))
