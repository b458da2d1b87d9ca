"""The Trainer on two processes (gloo, as torchrun starts them) gives, for every kind of
method, the parameters of one process on the whole batch; missing labels shared unevenly
between the ranks are weighted by their counts; a resumed two-process run ends where an
uninterrupted one does; and what cannot run on several processes fails clearly."""

from __future__ import annotations

import os
import socket
import time
import warnings

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

import polytask as pt
from polytask.errors import PolytaskError

TASKS = [pt.Regression("r"), pt.Binary("b"), pt.Regression("s")]
N = 16  # two batches of 8 (one process) or of 4 on each of two
EPOCHS = 2
#: (spec, kind): losses only, Gramian weights, coordinate edits of the Jacobian
#: (``polytask.balancing.distributed_kind``)
METHODS = [
    ("ew", "losses"),
    ("uw", "losses (learned log-variances)"),
    ("gradnorm", "losses (gradient norms of the last shared layer)"),
    ("rlw", "losses (random weights, global RNG)"),
    ("famo", "losses (after-step losses)"),
    ("gls", "losses (nonlinear in the losses)"),
    ("stch:warmup_epochs=1", "losses (nonlinear, after a warm-up epoch)"),
    ("db-mtl", "losses (reads the task gradients)"),
    ("imtl", "losses + gramian (reads the task gradients)"),
    ("mgda", "gramian"),
    ("upgrad:path=gramian", "gramian (Gramian path)"),
    ("nash-mtl", "gramian"),
    ("mgda-ub", "gramian (representation path)"),
    ("pcgrad", "gramian (random order, global RNG)"),
    ("cagrad", "gramian (Jacobian path)"),
    ("graddrop:path=jacobian", "jacobian (random masks)"),
]
#: methods of the uneven-missing-labels case, one of each kind
MASKED = ["ew", "upgrad", "pcgrad"]


class Samples(Dataset):
    """(x, {task: y}, {task: labeled}) samples; task "b" is labeled on every even
    sample and on samples 1, 5, 9, ... only (so rank 0 holds twice rank 1's labels)."""

    def __init__(self, masked: bool = False) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(N, 5, generator=g)
        self.y = {
            "r": self.x[:, 0] - 0.5 * self.x[:, 1] + 0.1 * torch.randn(N, generator=g),
            "b": (self.x[:, 2] > 0).float(),
            "s": self.x[:, 3] * self.x[:, 4],
        }
        i = torch.arange(N)
        b = (i % 2 == 0) | (i % 4 == 1) if masked else torch.ones(N, dtype=torch.bool)
        self.mask = {
            "r": torch.ones(N, dtype=torch.bool),
            "b": b,
            "s": torch.ones(N, dtype=torch.bool),
        }

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int):
        return (
            self.x[i],
            {n: y[i] for n, y in self.y.items()},
            {n: m[i] for n, m in self.mask.items()},
        )


def model(seed: int = 0) -> pt.HardSharing:
    torch.manual_seed(seed)
    return pt.HardSharing(nn.Sequential(nn.Linear(5, 8), nn.Tanh()), TASKS, encoder_out_features=8)


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([torch.zeros(0), *(p.detach().reshape(-1) for p in module.parameters())])


def fit(spec: str, batch_size: int, masked: bool = False, **options):
    """(parameters of model and balancer, last epoch's logs) after EPOCHS epochs."""
    data = Samples(masked)
    trainer = pt.Trainer(
        model(),
        TASKS,
        spec,
        optimizer=lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.5),
        seed=0,
        progress=False,
        device="cpu",
        **options,
    )
    history = trainer.fit(
        DataLoader(data, batch_size=batch_size), EPOCHS, val_loader=DataLoader(data, batch_size=5)
    )
    params = torch.cat([flat(trainer.module), flat(trainer.balancer)])
    return params, history[-1]


class Interrupt(pt.training.Callback):
    """Stops a run (as a crash would) when epoch ``at`` starts."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if epoch == self.at:
            raise KeyboardInterrupt


def resumed_and_whole(out: str, rank: int):
    """PCGrad (random order) with Adam and a step LR schedule, 3 epochs: interrupted
    at the start of epoch 2 and resumed, and uninterrupted."""

    def trainer(log_dir, callbacks=(), seed=0):
        return pt.Trainer(
            model(seed),
            TASKS,
            "pcgrad",
            seed=0,
            progress=False,
            device="cpu",
            log_dir=log_dir,
            callbacks=callbacks,
            scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
        )

    data = DataLoader(Samples(), batch_size=4, shuffle=True)
    try:
        trainer(os.path.join(out, "run"), [Interrupt(2)]).fit(data, 3)
    except KeyboardInterrupt:
        pass
    again = trainer(os.path.join(out, "run"), seed=5)  # other weights: the checkpoint's count
    again.fit(data, 3, resume=True)
    whole = trainer(os.path.join(out, "whole"))
    whole.fit(data, 3)
    written = sorted(os.listdir(os.path.join(out, "run")))
    return flat(again.module), flat(whole.module), written


def _worker(rank: int, world: int, port: int, out: str) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    # the variables torchrun sets: the Trainer creates the process group from them
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    results: dict = {}
    for spec, _ in METHODS:
        results[spec] = fit(spec, N // 2 // world)
    for spec in MASKED:
        results[f"masked/{spec}"] = fit(spec, N // 2 // world, masked=True)
    results["resume"] = resumed_and_whole(out, rank)
    for name, build in BAD_INPUT.items():
        try:
            build(rank)
            results[name] = "no error"
        except PolytaskError as error:
            results[name] = str(error)
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _other_tasks(rank: int) -> None:
    names = ["r", "b", "s"] if rank == 0 else ["r", "s", "b"]
    b = pt.balancing.get("ew")
    net = model()
    x = torch.randn(4, 5)
    out = net(x)
    losses = {n: out[n].float().mean() ** 2 for n in names}
    b.backward(losses, shared_params=net.shared_parameters())


def _uneven_batches(rank: int) -> None:
    batch = next(iter(DataLoader(Samples(), batch_size=4)))
    trainer = pt.Trainer(model(), TASKS, "ew", progress=False, device="cpu")
    trainer.fit([batch] * (1 + rank), 1)  # a list: each rank's own share, 1 and 2 batches


def _custom_metric(rank: int) -> None:
    class Median(pt.metrics.Metric):
        name = "median"

    try:
        Median().reduce()
    except NotImplementedError as error:
        raise PolytaskError(str(error)) from error


BAD_INPUT = {
    # GradDrop's default path is the representation: not on several processes
    "graddrop": lambda rank: fit("graddrop", 4),
    "tasks": _other_tasks,
    "batches": _uneven_batches,
    "metric": _custom_metric,
    "accumulation": lambda rank: pt.Trainer(
        model(), TASKS, "ew", accumulate_grad_batches=2, progress=False, device="cpu"
    ),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    context = torch.multiprocessing.start_processes(
        _worker, args=(2, _free_port(), str(out)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 150
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two ranks did not finish within 150 s")
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


pytestmark = pytest.mark.skipif(not dist.is_available(), reason="no torch.distributed")


def test_two_processes_give_the_whole_batch_update_for_every_kind(ranks):
    start = flat(model())
    for spec, kind in METHODS:
        whole, logs = fit(spec, N // 2)
        assert (whole[: start.numel()] - start).abs().max() > 1e-3, spec  # it trained
        for rank in ranks:
            params, rank_logs = rank[spec]
            assert torch.allclose(params, whole, rtol=1e-6, atol=1e-6), (
                spec,
                kind,
                float((params - whole).abs().max()),
            )
            # epoch losses and validation metrics are the whole split's on every rank
            for key in ("loss/r", "loss/b", "b/accuracy", "b/auc", "b/f1", "r/mae", "r/rmse"):
                assert rank_logs["val"][key] == pytest.approx(logs["val"][key], rel=1e-5)
            assert rank_logs["train"]["loss/r"] == pytest.approx(logs["train"]["loss/r"], rel=1e-5)


def test_uneven_missing_labels_are_weighted_by_their_counts(ranks):
    for spec in MASKED:
        whole, logs = fit(spec, N // 2, masked=True)
        for rank in ranks:
            params, rank_logs = rank[f"masked/{spec}"]
            assert torch.allclose(params, whole, rtol=1e-6, atol=1e-6), (
                spec,
                float((params - whole).abs().max()),
            )
            assert rank_logs["train"]["loss/b"] == pytest.approx(logs["train"]["loss/b"], rel=1e-5)


def test_a_resumed_two_process_run_ends_where_an_uninterrupted_one_does(ranks):
    for rank in ranks:
        resumed, whole, _ = rank["resume"]
        assert torch.allclose(resumed, whole, rtol=0, atol=1e-7), float(
            (resumed - whole).abs().max()
        )
    assert torch.equal(ranks[0]["resume"][0], ranks[1]["resume"][0])
    assert "last.pt" in ranks[0]["resume"][2] and "steps.csv" in ranks[0]["resume"][2]


def test_what_cannot_run_on_two_processes_fails_naming_the_fix(ranks):
    for rank in ranks:
        message = rank["graddrop"]
        assert "GradDrop(path='representation')" in message and "path=jacobian" in message
        message = rank["tasks"]
        assert "disagree on the task set" in message and "['r', 's', 'b']" in message
        assert "different numbers of batches ({0: 1, 1: 2})" in rank["batches"]
        assert "metric 'median'" in rank["metric"] and "implement reduce()" in rank["metric"]
        assert "accumulate_grad_batches=2 on 2 processes" in rank["accumulation"]


def test_a_ddp_wrapped_model_is_refused_for_gradient_methods_only(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model())
        with pytest.raises(PolytaskError, match=r"UPGrad .*plain module \(ddp_model.module\)"):
            pt.Trainer(ddp, TASKS, "upgrad", progress=False, device="cpu")
        with pytest.raises(PolytaskError, match="PCGrad reads per-task gradients"):
            pt.Trainer(ddp, TASKS, "pcgrad", progress=False, device="cpu")
        trainer = pt.Trainer(ddp, TASKS, "ew", progress=False, device="cpu")  # DDP averages
        trainer.fit(DataLoader(Samples(), batch_size=8), 1)
        assert trainer.module is ddp.module
    finally:
        dist.destroy_process_group()
