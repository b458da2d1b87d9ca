"""Batch conventions: splitting a batch into inputs, targets and masks; devices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ..errors import PolytaskError
from ..tasks import check_batch_keys


def split_batch(batch: Any) -> tuple[Any, Mapping[str, Tensor], Mapping[str, Tensor]]:
    """(inputs, targets, masks) of a batch.

    A batch is ``(inputs, targets)`` or ``(inputs, targets, masks)`` — ``targets`` and
    ``masks`` dicts keyed by task name — or a mapping with keys ``"inputs"``,
    ``"targets"`` and optionally ``"masks"``.
    """
    if isinstance(batch, Mapping):
        if "inputs" not in batch or "targets" not in batch:
            raise PolytaskError(
                f"a dict batch needs keys 'inputs' and 'targets'; got {sorted(batch)}"
            )
        return batch["inputs"], batch["targets"], batch.get("masks") or {}
    if isinstance(batch, Sequence) and len(batch) in (2, 3):
        masks = batch[2] if len(batch) == 3 else {}
        if not isinstance(batch[1], Mapping):
            raise PolytaskError(
                f"targets must be a dict {{task: tensor}}, got {type(batch[1]).__name__}"
            )
        return batch[0], batch[1], masks or {}
    raise PolytaskError(
        "a batch must be (inputs, targets), (inputs, targets, masks) or a dict with "
        f"'inputs' and 'targets'; got {type(batch).__name__}"
    )


def check_targets(
    task_names: Sequence[str],
    targets: Mapping[str, Tensor],
    masks: Mapping[str, Tensor] | None = None,
) -> None:
    """Raise naming the task whose target is missing and the keys present, or a mask
    key that names no task (:func:`polytask.tasks.check_batch_keys`)."""
    check_batch_keys(task_names, targets, masks)


def to_device(value: Any, device: torch.device) -> Any:
    """Move tensors (nested in dicts, lists and tuples) to ``device``."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


class MultiTaskDataset(Dataset):
    """In-memory tensors: inputs and ``{task: targets}``, indexable by index lists.

    Indexing with a list or tensor of indices returns a whole batch at once, which
    :func:`batch_loader` uses to avoid per-sample collation.
    """

    def __init__(self, inputs: Tensor, targets: Mapping[str, Tensor]) -> None:
        n = inputs.shape[0]
        for name, target in targets.items():
            if target.shape[0] != n:
                raise PolytaskError(
                    f"task {name!r}: {target.shape[0]} targets for {n} inputs"
                )
        self.inputs = inputs
        self.targets = dict(targets)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: Any) -> tuple[Tensor, dict[str, Tensor]]:
        return self.inputs[index], {k: v[index] for k, v in self.targets.items()}


def batch_loader(
    dataset: MultiTaskDataset, batch_size: int, shuffle: bool = False, drop_last: bool = False
) -> DataLoader:
    """A DataLoader yielding whole batches by index lists (no per-sample collation).

    Shuffling draws from torch's global RNG, so seeding and checkpoints that save the
    RNG state make the order reproducible.
    """
    base = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(dataset, sampler=sampler, batch_size=None)
