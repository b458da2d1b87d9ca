"""Lightning's DDP strategy on two CPU processes (gloo) gives, for every kind of
method, the update of one process on the whole batch, parameter by parameter."""

from __future__ import annotations

import os
import socket
import time

import pytest

pytest.importorskip("lightning")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

#: (spec, kind): losses only, Gramian weights, coordinate edits of the Jacobian
METHODS = [
    ("ew", "losses"),
    ("uw", "losses"),
    ("dwa:update=epoch", "losses"),
    ("famo", "losses (after-step losses)"),
    ("rlw:seed=2", "losses (random weights)"),
    ("mgda", "gramian"),
    ("upgrad:path=gramian", "gramian"),
    ("nash-mtl", "gramian"),
    ("imtl-g", "gramian"),
    ("gradnorm", "losses (reads the last shared layer's gradients)"),
    ("imtl", "losses + gramian (reads gradients)"),
    ("db-mtl", "losses (reads gradients)"),
    ("gls", "losses (nonlinear in the losses)"),
    ("stch:warmup_epochs=0", "losses (nonlinear in the losses)"),
    ("excess-mtl", "losses (reads gradients)"),
    ("pcgrad:seed=3", "jacobian"),
    ("cagrad", "jacobian"),
    ("graddrop:path=jacobian,seed=1", "jacobian"),
    ("gradvac:seed=1", "jacobian (EMA state)"),
    ("upgrad+spare", "gramian, with a parameter no loss reaches"),
]
EPOCHS = 2


def fit(spec: str, devices: int, batch_size: int):
    """Parameters (model and balancer) after EPOCHS epochs, and the logged metrics.
    ``spec`` ending in ``+spare``: the model also holds a parameter no loss reaches."""
    import lightning.pytorch as L
    from _setup import TASKS, flat, loader, model

    from polytask.lightning import MultiTaskModule

    L.seed_everything(0, verbose=False)
    net = model()
    if spec.endswith("+spare"):
        spec = spec.removesuffix("+spare")
        net.spare = torch.nn.Parameter(torch.ones(3))
    # plain SGD with momentum: a parameter whose gradient were 0 instead of None
    # would move; Adam would blow float32 rounding of near-zero gradients up to lr
    module = MultiTaskModule(
        net, TASKS, spec,
        optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.5,
                                                 weight_decay=0.1))
    strategy = "auto"
    if devices > 1:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    # Lightning's own sampler shuffles training data under DDP; in order, rank r's
    # batch i holds samples r, r + R, ... of the one-process batch i
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, max_epochs=EPOCHS,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False,
    )
    trainer.fit(module, loader(batch_size, ranks=devices), loader(batch_size, ranks=devices))
    if hasattr(net, "spare"):  # left to the optimizer as unused (no weight decay)
        assert net.spare.grad is None and bool((net.spare == 1).all())
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return flat(module), metrics


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import sys
    import warnings

    sys.path.insert(0, os.path.dirname(__file__))
    warnings.filterwarnings("ignore")
    # the variables torchrun sets: Lightning joins these processes instead of launching
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0")
    results: dict = {}
    for spec, _ in METHODS:
        results[spec] = fit(spec, world, 8 // world)
    try:  # GradDrop on the representation cannot run on several ranks: a clear error
        fit("graddrop", world, 8 // world)
        results["graddrop"] = "no error"
    except Exception as error:  # noqa: BLE001 - the message is what is checked
        results["graddrop"] = f"{type(error).__name__}: {error}"
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    if dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
def test_ddp_two_processes_equal_one_process_on_the_whole_batch(tmp_path):
    context = torch.multiprocessing.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 240
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two Lightning ranks did not finish within 240 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    from _setup import flat, model

    start = flat(model())
    for spec, kind in METHODS:
        whole, metrics = fit(spec, 1, 8)
        assert (whole[: start.numel()] - start).abs().max() > 1e-3, spec  # it trained
        for rank in ranks:
            params, rank_metrics = rank[spec]
            assert torch.allclose(params, whole, rtol=1e-6, atol=1e-6), (
                spec, kind, float((params - whole).abs().max()))
            # validation losses are reduced over the ranks: the whole set's
            for key in ("val/loss/r", "val/loss/b", "val/loss"):
                assert rank_metrics[key] == pytest.approx(metrics[key], rel=1e-5), (spec, key)
    for rank in ranks:
        message = rank["graddrop"]
        assert "PolytaskError" in message and "path='jacobian'" in message, message
