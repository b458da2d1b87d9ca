"""The Trainer under ``torchrun``: process group, data shards, rank 0's files, and the
statistics reduced across ranks.

The Trainer drives a :class:`Distributed` plugin at fixed points, as it drives its
:class:`~polytask.training.Precision` plugin; in one process every call is a no-op.

- **Process group.** When ``torch.distributed`` is already initialised the Trainer
  uses it. Otherwise, when the variables ``torchrun`` sets say there are several
  processes (``WORLD_SIZE`` > 1, with ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), it
  calls ``init_process_group`` with ``init_method="env://"`` and the backend
  ``"nccl"`` on CUDA, ``"gloo"`` on the CPU; on CUDA each process takes the device
  ``cuda:LOCAL_RANK``.
- **The model stays plain** (never wrapped in ``DistributedDataParallel``): the
  Jacobian engine averages what the balancer reads (loss values, Jacobian, Gramian)
  and what it writes (its weighted backward's gradients), for every kind of method
  (:func:`polytask.balancing.distributed_kind`). A model the user wrapped in DDP is
  accepted for loss weightings only (DDP's hooks then average their one ordinary
  backward, and the engine leaves it alone); for a Jacobian or Gramian method it is an
  error naming the method and the fix.
- **Same start, same draws.** At the start of ``fit`` rank 0's parameters, buffers,
  the balancer's parameters and the RNG states are broadcast, so random rules (RLW/RGW weights,
  PCGrad's order, GradDrop's masks) draw the same numbers on every rank.
- **Data.** A training ``DataLoader`` over a map-style dataset is rebuilt with a
  :class:`~torch.utils.data.DistributedSampler` (shuffling when the loader did, with
  the Trainer's seed; ``set_epoch`` every epoch; padded by repeating samples so that
  every rank has the same number of batches), keeping its ``batch_size`` (per
  process: the global batch is R × ``batch_size``), collate function, workers and
  ``drop_last``. Validation loaders get rank r's samples r, r + R, ... with no
  padding (no sample counted twice). Other loaders are taken as they are: each rank
  must yield its own share, and the ranks' batch counts are checked equal.
- **Losses of unequal shares.** Each rank's task loss is the mean over its labeled
  entries; the whole batch's is the count-weighted mean, so before the balancer runs
  each loss is multiplied by ``R n_r / Σ n`` (:func:`engine.rank_loss_factors`).
- **Statistics.** Epoch losses, validation losses and every streaming metric are
  reduced as sums (metric states, not metric values), so every rank, and rank 0's
  logs, hold the whole split's values; early stopping and ``best.pt`` agree.
- **Files.** Logs (CSV, TensorBoard) and checkpoints are written by rank 0 only; a
  resume reads ``last.pt`` on every rank (a file system all ranks share).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, Sampler

from ..balancing import engine
from ..balancing.base import GradientAggregator, distributed_kind
from ..errors import PolytaskError
from .seeding import rng_state, set_rng_state


def is_ddp(model: nn.Module) -> bool:
    """Whether ``model`` is wrapped in ``DistributedDataParallel``."""
    return isinstance(model, nn.parallel.DistributedDataParallel)


def init_from_env(device: torch.device | str | None = None) -> bool:
    """Initialise ``torch.distributed`` from ``torchrun``'s variables when they say
    there are several processes and no group exists yet; return whether a group of
    more than one process is in use. Backend: nccl for a CUDA device, else gloo."""
    dist = torch.distributed
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return False
    cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
    return dist.get_world_size() > 1


class RankShard(Sampler[int]):
    """Rank r's indices r, r + R, r + 2R, ... of a dataset of ``n`` samples, in order,
    with no padding (for evaluation: no sample counted twice)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class Distributed:
    """What the Trainer does differently on several processes (module docstring).

    Args:
        device: the Trainer's device (picks the backend when the group is created).
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.enabled = init_from_env(device)
        dist = torch.distributed
        self.world = dist.get_world_size() if self.enabled else 1
        self.rank = dist.get_rank() if self.enabled else 0
        self._shards: dict[int, tuple[Any, Any]] = {}

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (rank 0, or the only process)."""
        return self.rank == 0

    def device(self, requested: str | torch.device | None) -> torch.device:
        """The device: as requested; by default CUDA (``cuda:LOCAL_RANK`` under
        torchrun) when available, else the CPU."""
        if requested is not None:
            return torch.device(requested)
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if self.enabled:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cuda")

    # -- set-up checks ---------------------------------------------------------------
    def check(self, model: nn.Module, balancer: Any, accumulate: int = 1) -> None:
        """Refuse what cannot give the whole batch's update, naming the fix."""
        inner = getattr(balancer, "inner", balancer)
        label = type(inner).__name__
        kind = distributed_kind(balancer)
        if is_ddp(model) and kind != "losses":
            raise PolytaskError(
                f"{label} reads per-task gradients ({kind} kind): do not wrap the model in "
                "DistributedDataParallel, whose hooks would average some of its backward "
                "passes and not others. Pass the plain module (ddp_model.module): under "
                "torchrun the Jacobian engine averages what the method reads and writes "
                "across ranks itself"
            )
        if not self.enabled:
            return
        if accumulate > 1:
            raise PolytaskError(
                f"accumulate_grad_batches={accumulate} on {self.world} processes is not "
                "supported yet (the accumulator's micro-batch reductions are not combined "
                "across ranks): raise the per-process batch_size, or run one process"
            )
        if (
            isinstance(inner, GradientAggregator)
            and not inner.gramian_based
            and inner.resolved_path() == "representation"
        ):
            raise PolytaskError(
                f"{label}(path='representation') cannot run on {self.world} processes: its "
                "rule edits the shared representation's gradients coordinate by "
                "coordinate, and each rank's representation holds other samples. Use "
                f"{label}(path='jacobian') (spec '{_spec_name(inner)}:path=jacobian'): "
                "the shared parameters' Jacobian, averaged across ranks"
            )

    # -- data ------------------------------------------------------------------------
    def shard(self, loader: Iterable, *, train: bool, seed: int) -> Iterable:
        """This rank's share of ``loader`` (the loader itself in one process)."""
        if not self.enabled:
            return loader
        cached = self._shards.get(id(loader))
        if cached is not None and cached[0] is loader:
            return cached[1]
        sharded = self._rebuild(loader, train=train, seed=seed)
        self._shards[id(loader)] = (loader, sharded)
        return sharded

    def _rebuild(self, loader: Iterable, *, train: bool, seed: int) -> Iterable:
        if not isinstance(loader, DataLoader):
            return loader
        if isinstance(loader.sampler, (DistributedSampler, RankShard)):
            return loader
        dataset = loader.dataset
        if isinstance(dataset, IterableDataset) or loader.batch_size is None:
            warnings.warn(
                "this DataLoader (an IterableDataset, or a custom batch_sampler) cannot be "
                "sharded by the Trainer: each rank must yield its own share of the data, "
                "with the same number of batches",
                RuntimeWarning,
                stacklevel=4,
            )
            return loader
        if train:
            shuffle = isinstance(loader.sampler, torch.utils.data.RandomSampler)
            sampler: Sampler = DistributedSampler(
                dataset,
                num_replicas=self.world,
                rank=self.rank,
                shuffle=shuffle,
                seed=seed,
                drop_last=False,
            )
        else:
            sampler = RankShard(len(dataset), self.rank, self.world)
        workers = loader.num_workers
        return DataLoader(
            dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            generator=loader.generator,
            prefetch_factor=loader.prefetch_factor if workers > 0 else None,
            persistent_workers=loader.persistent_workers if workers > 0 else False,
        )

    def start_epoch(self, loader: Iterable, epoch: int) -> None:
        """``set_epoch`` on the loader's sampler (a new shuffle each epoch), and the
        check that every rank has the same number of batches."""
        if not self.enabled:
            return
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        try:
            n = len(loader)  # type: ignore[arg-type]
        except TypeError:
            n = -1
        counts = engine.gather_objects(n)
        if len(set(counts)) > 1:
            raise PolytaskError(
                f"the ranks' training loaders yield different numbers of batches "
                f"({dict(enumerate(counts))}): every optimizer step is a collective, so "
                "each rank needs the same number (give the Trainer a DataLoader over a "
                "map-style dataset and it shards it, padding the last shares)"
            )

    # -- state -----------------------------------------------------------------------
    def synchronize(self, model: nn.Module, balancer: nn.Module) -> None:
        """Rank 0's parameters and buffers (model and balancer) and RNG states on every
        rank."""
        if not self.enabled:
            return
        with torch.no_grad():
            for module in (model, balancer):
                for tensor in [*module.parameters(), *module.buffers()]:
                    torch.distributed.broadcast(tensor.data, src=0)
        holder = [rng_state()]
        torch.distributed.broadcast_object_list(holder, src=0)
        if not self.is_main:
            set_rng_state(holder[0])

    def loss_factors(
        self,
        tasks: Mapping[str, Any],
        outputs: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        masks: Mapping,
        device: torch.device,
    ) -> Tensor | None:
        """The factors ``R n_r / Σ n`` of each task's loss (None in one process)."""
        if not self.enabled:
            return None
        counts = [t.loss_count(outputs[n], targets[n], masks.get(n)) for n, t in tasks.items()]
        return engine.rank_loss_factors(counts, device)

    def sum(self, tensor: Tensor, device: torch.device) -> Tensor:
        """``tensor`` summed over the ranks (a statistic), on its own device."""
        if not self.enabled:
            return tensor
        return engine.sum_across_ranks(tensor.to(device)).to(tensor.device)

    def reduce_metrics(self, metrics: Mapping[str, Mapping[str, Any]]) -> None:
        """Every task metric's state summed (or gathered) over the ranks."""
        if not self.enabled:
            return
        for ms in metrics.values():
            for metric in ms.values():
                metric.reduce()

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
        if self.enabled:
            torch.distributed.barrier()


def _spec_name(balancer: Any) -> str:
    from ..balancing import registry

    for name in registry.available():
        if registry.method_class(name) is type(balancer):
            return name
    return type(balancer).__name__.lower()
