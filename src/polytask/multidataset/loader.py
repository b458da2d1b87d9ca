"""Several datasets, one model: loaders whose batches the Trainer already understands.

Each task (or group of tasks) has its own dataset. :class:`MultiDatasetLoader` draws
training batches from them under a sampling schedule and yields ordinary polytask
batches ``(inputs, targets, masks)``: ``targets`` holds every task, and a task's
``masks`` entry is False on the samples of datasets that do not label it, so its loss
(:meth:`polytask.tasks.Task.loss`) is taken only where it has labels — nothing in the
Trainer or the balancers changes. :class:`PerDatasetLoader` passes once over every
dataset (validation, test): each task is evaluated on its own dataset only.

Batch composition (``mode``):

- ``"single"``: each batch comes from one dataset, chosen by the schedule;
- ``"mixed"``: each batch holds ``batch_size`` samples spread over the datasets,
  the number from each drawn from the schedule's probabilities;
- ``"grouped"``: each batch holds ``batch_size`` samples of *every* dataset, so that
  every task's loss — and gradient — is taken at the same parameters in one step (what
  gradient-aggregation methods need; cost: D forward passes' worth of samples per
  step). The schedule is not used.

Inputs (``inputs``): ``"tensor"`` concatenates the datasets' inputs along the batch
dimension (they must have the same per-sample shape); ``"by_dataset"`` yields
``{dataset: inputs}`` in the loader's dataset order, for a model with per-dataset
stems (:class:`~polytask.multidataset.MultiDatasetModel`); ``"auto"`` (default) picks
``"tensor"`` when every dataset's samples have the same shape and dtype. Targets and
masks are concatenated in the same dataset order.

An epoch (``epoch``) is a number of steps: an integer, or ``"largest"`` /
``"smallest"`` (the batches of one pass over the largest / smallest dataset,
⌈N/batch_size⌉), or ``"total"`` (Σ_d ⌈N_d/batch_size⌉, as many batches as one pass
over every dataset; the default, except ``"largest"`` in grouped mode). Within a
dataset, samples are drawn without replacement, reshuffling when it is exhausted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..errors import PolytaskError, ShapeMismatchError
from ..tasks import Task, as_task_dict
from ..training.batches import MultiTaskDataset, to_device
from ..training.callbacks import Callback
from . import schedules as _schedules

if TYPE_CHECKING:
    from ..training import Trainer
    from .distill import Distillation

MODES = ("single", "mixed", "grouped")
INPUT_MODES = ("auto", "tensor", "by_dataset")

Source = MultiTaskDataset | tuple[Tensor, Mapping[str, Tensor]]


@dataclass
class _Dataset:
    """One dataset: its name, the tasks it labels, inputs and targets."""

    name: str
    tasks: tuple[str, ...]
    inputs: Tensor
    targets: dict[str, Tensor]

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def _as_dataset(key: Any, source: Any) -> _Dataset:
    if isinstance(key, str):
        name, tasks = key, (key,)
    elif isinstance(key, tuple) and key and all(isinstance(k, str) for k in key):
        name, tasks = "+".join(key), tuple(key)
    else:
        raise PolytaskError(
            f"sources keys must be a task name or a tuple of task names, got {key!r}"
        )
    if isinstance(source, MultiTaskDataset):
        inputs, targets = source.inputs, source.targets
    elif isinstance(source, Sequence) and len(source) == 2 and isinstance(source[1], Mapping):
        inputs, targets = source
    elif hasattr(source, "inputs") and hasattr(source, "targets"):  # a benchmark Split
        inputs, targets = source.inputs, source.targets
    else:
        raise PolytaskError(
            f"dataset {name!r}: expected a MultiTaskDataset or an (inputs, {{task: targets}}) "
            f"pair, got {type(source).__name__}"
        )
    if not isinstance(inputs, Tensor) or inputs.dim() == 0:
        raise PolytaskError(f"dataset {name!r}: inputs must be a tensor with a batch dimension")
    n = int(inputs.shape[0])
    if n == 0:
        raise PolytaskError(f"dataset {name!r} is empty")
    for task in tasks:
        if task not in targets:
            raise PolytaskError(
                f"dataset {name!r} is mapped to task {task!r} but has no targets for it; "
                f"its target keys: {sorted(targets)}"
            )
        if targets[task].shape[0] != n:
            raise ShapeMismatchError(
                f"dataset {name!r}: task {task!r} has {targets[task].shape[0]} targets for "
                f"{n} inputs"
            )
    return _Dataset(name, tasks, inputs, {t: targets[t] for t in tasks})


def _labelled_rows(task: Task, target: Tensor) -> Tensor:
    """Which samples carry a label of ``task`` (its missing-label sentinels)."""
    missing = task._missing(target)  # noqa: SLF001  (the sentinel rule of the task's kind)
    present = ~missing.reshape(missing.shape[0], -1)
    return present.any(dim=1)


class _Datasets:
    """What both loaders share: the datasets, target templates, assembly, checks."""

    def __init__(
        self,
        sources: Mapping[Any, Source],
        batch_size: int,
        tasks: Mapping[str, Task] | Sequence[Task] | None,
        inputs: str,
    ) -> None:
        if not isinstance(sources, Mapping) or not sources:
            raise PolytaskError(
                "sources must be a non-empty mapping {task or (task, ...): dataset}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise PolytaskError(f"batch_size must be a positive integer, got {batch_size!r}")
        if inputs not in INPUT_MODES:
            raise PolytaskError(f"inputs must be one of {INPUT_MODES}, got {inputs!r}")
        self.datasets = [_as_dataset(k, v) for k, v in sources.items()]
        self.batch_size = batch_size
        owner: dict[str, str] = {}
        for ds in self.datasets:
            for task in ds.tasks:
                if task in owner:
                    raise PolytaskError(
                        f"task {task!r} is mapped to two datasets, {owner[task]!r} and "
                        f"{ds.name!r}; give each task one dataset"
                    )
                owner[task] = ds.name
        names = [ds.name for ds in self.datasets]
        if len(set(names)) != len(names):
            raise PolytaskError(f"two datasets have the same name: {names}")
        self.dataset_of: dict[str, str] = owner
        self.task_names: list[str] = list(owner)
        self.inputs_mode = self._resolve_inputs(inputs)
        self.templates: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        for ds in self.datasets:
            for task in ds.tasks:
                target = ds.targets[task]
                self.templates[task] = (tuple(target.shape[1:]), target.dtype)
        self.tasks: dict[str, Task] | None = None
        if tasks is not None:
            self.check_tasks(tasks)

    # -- description ----------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The dataset names, in the loader's order."""
        return [ds.name for ds in self.datasets]

    @property
    def sizes(self) -> list[int]:
        """The number of samples of each dataset."""
        return [len(ds) for ds in self.datasets]

    @property
    def tasks_of(self) -> dict[str, tuple[str, ...]]:
        """``{dataset: the tasks it labels}``."""
        return {ds.name: ds.tasks for ds in self.datasets}

    def _resolve_inputs(self, mode: str) -> str:
        shapes = {ds.name: (tuple(ds.inputs.shape[1:]), ds.inputs.dtype) for ds in self.datasets}
        same = len(set(shapes.values())) == 1
        if mode == "auto":
            return "tensor" if same else "by_dataset"
        if mode == "tensor" and not same:
            desc = ", ".join(f"{n!r} {s} {d}" for n, (s, d) in shapes.items())
            raise ShapeMismatchError(
                f"inputs='tensor' needs every dataset's samples to have one shape and dtype; "
                f"got {desc}. Use inputs='by_dataset' with a model that has per-dataset "
                "stems (polytask.multidataset.MultiDatasetModel)"
            )
        return mode

    # -- checks -----------------------------------------------------------------------
    def check_tasks(self, tasks: Mapping[str, Task] | Sequence[Task]) -> None:
        """Every task has a dataset, every dataset's tasks are declared, and every
        dataset has samples labelled for its tasks; raises naming the task or dataset."""
        specs = as_task_dict(tasks)
        no_data = [t for t in specs if t not in self.dataset_of]
        if no_data:
            raise PolytaskError(
                f"task(s) {no_data} have no dataset: the loader maps tasks "
                f"{self.dataset_of}; add a dataset for them"
            )
        for ds in self.datasets:
            undeclared = [t for t in ds.tasks if t not in specs]
            if undeclared:
                raise PolytaskError(
                    f"dataset {ds.name!r} labels task(s) {undeclared} that are not among the "
                    f"tasks trained {list(specs)}; remove them from the loader's sources"
                )
            any_label = torch.zeros(len(ds), dtype=torch.bool)
            for task in ds.tasks:
                rows = _labelled_rows(specs[task], ds.targets[task])
                if not bool(rows.any()):
                    raise PolytaskError(
                        f"dataset {ds.name!r}: none of its {len(ds)} samples has a label of "
                        f"task {task!r} (every target is the missing-label value)"
                    )
                any_label |= rows
            if not bool(any_label.any()):  # pragma: no cover - implied by the loop above
                raise PolytaskError(f"dataset {ds.name!r}: no sample carries any label")
        self.tasks = {t: specs[t] for t in self.task_names}

    def check_model(self, model: nn.Module, device: torch.device | str | None = None) -> None:
        """Run two samples of each dataset through ``model`` (eval mode, no gradient) and
        raise naming the dataset whose inputs it cannot take or whose outputs do not fit
        its tasks."""
        device = torch.device(device) if device is not None else _module_device(model)
        was_training = model.training
        model.eval()
        try:
            for d, ds in enumerate(self.datasets):
                idx = torch.arange(min(2, len(ds)))
                inputs, targets, masks = to_device(self._assemble([(d, idx)], 0), device)
                shape = tuple(ds.inputs.shape[1:])
                try:
                    with torch.no_grad():
                        outputs = model(inputs)
                except Exception as error:  # noqa: BLE001  (re-raised, naming the dataset)
                    raise PolytaskError(
                        f"the model cannot take the inputs of dataset {ds.name!r} (samples "
                        f"of shape {shape}, {ds.inputs.dtype}): {type(error).__name__}: "
                        f"{error}"
                    ) from error
                if not isinstance(outputs, Mapping):
                    raise PolytaskError(
                        f"dataset {ds.name!r}: the model must return a dict {{task: output}}, "
                        f"got {type(outputs).__name__}"
                    )
                for task in ds.tasks:
                    if task not in outputs:
                        raise PolytaskError(
                            f"dataset {ds.name!r}: the model returned no output for its task "
                            f"{task!r}; outputs: {sorted(outputs)}"
                        )
                    if self.tasks is not None:
                        try:
                            self.tasks[task].prepare(outputs[task], targets[task], masks[task])
                        except PolytaskError as error:
                            raise type(error)(f"dataset {ds.name!r}: {error}") from error
        finally:
            model.train(was_training)

    def attach_trainer(self, trainer: Trainer) -> None:
        """Called by :meth:`polytask.training.Trainer.fit`: checks the tasks and the
        model against the datasets."""
        self.check_tasks(trainer.tasks)
        self.check_model(trainer.model, trainer.device)

    # -- assembly ---------------------------------------------------------------------
    def _target_chunk(self, ds: _Dataset, task: str, idx: Tensor, step: int) -> Tensor:
        return ds.targets[task][idx]

    def _template(self, task: str) -> tuple[tuple[int, ...], torch.dtype]:
        return self.templates[task]

    def _assemble(self, parts: list[tuple[int, Tensor]], step: int) -> tuple[Any, dict, dict]:
        """One batch from ``[(dataset index, sample indices), ...]``."""
        parts = [(d, idx) for d, idx in parts if len(idx)]
        if self.inputs_mode == "tensor":
            chunks = [self.datasets[d].inputs[idx] for d, idx in parts]
            inputs: Any = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        else:
            inputs = {self.datasets[d].name: self.datasets[d].inputs[idx] for d, idx in parts}
        targets: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        offsets, total = [], 0
        for _, idx in parts:
            offsets.append(total)
            total += len(idx)
        where = {self.datasets[d].name: (j, d, idx) for j, (d, idx) in enumerate(parts)}
        for task in self.task_names:
            j, d, idx = where.get(self.dataset_of[task], (None, None, None))
            if j is not None and len(parts) == 1:  # the whole batch is its dataset's
                targets[task] = self._target_chunk(self.datasets[d], task, idx, step)
                masks[task] = torch.ones(total, dtype=torch.bool)
                continue
            shape, dtype = self._template(task)
            target = torch.zeros((total, *shape), dtype=dtype)
            mask = torch.zeros(total, dtype=torch.bool)
            if j is not None:  # fill the rows of the one dataset that labels this task
                rows = slice(offsets[j], offsets[j] + len(idx))
                target[rows] = self._target_chunk(self.datasets[d], task, idx, step)
                mask[rows] = True
            targets[task] = target
            masks[task] = mask
        return inputs, targets, masks


def _module_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class _Stream:
    """Sample indices of one dataset without replacement, reshuffled when exhausted."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n = n
        self.generator = generator
        self.order = torch.randperm(n, generator=generator)
        self.pos = 0

    def take(self, k: int) -> Tensor:
        out = []
        while k > 0:
            if self.pos >= self.n:
                self.order = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            chunk = self.order[self.pos : self.pos + k]
            self.pos += len(chunk)
            k -= len(chunk)
            out.append(chunk)
        return out[0] if len(out) == 1 else torch.cat(out)


class MultiDatasetLoader(_Datasets):
    """Training batches from several datasets, one model (see the module docstring).

    Args:
        sources: ``{task: dataset}`` or ``{(task, task, ...): dataset}`` for a dataset
            labelling several tasks; a dataset is a
            :class:`~polytask.training.MultiTaskDataset` or an ``(inputs, {task:
            targets})`` pair. The dataset's name is the task name (the names joined
            by ``+`` for a group).
        batch_size: samples per batch (per dataset in grouped mode).
        schedule: a registered schedule name or spec (``"temperature:T=2"``) or a
            :class:`~polytask.multidataset.schedules.Schedule`; default proportional
            (none in grouped mode).
        mode: ``"single"``, ``"mixed"`` or ``"grouped"``.
        epoch: steps per epoch: an integer, ``"total"``, ``"largest"`` or ``"smallest"``.
        tasks: the task specs, to check the datasets' labels now (the Trainer checks
            them again at ``fit``).
        inputs: ``"auto"``, ``"tensor"`` or ``"by_dataset"``.
        distillation: optional :class:`~polytask.multidataset.Distillation`: the
            targets of its tasks become the teacher-annealed mixture.

    Randomness: each epoch's draws come from a generator seeded from torch's global
    RNG at the start of the epoch, so a seeded Trainer (and its resumed checkpoints)
    reproduce the order. In a plain loop, call :meth:`set_epoch` (as with PyTorch's
    ``DistributedSampler``) or let each pass count as the next epoch; after each
    validation, give a feedback schedule the losses with ``loader.schedule.update``.
    Under the Trainer, :meth:`attach_trainer` checks tasks, model and balancer and
    installs a callback that does both.

    Extra cost per step: one categorical draw over D datasets (mixed mode: B draws),
    the index gather of the batch and, for mixed and grouped batches, the
    concatenation of the D parts; see ``scripts/bench_sampling_overhead.py``.
    """

    def __init__(
        self,
        sources: Mapping[Any, Source],
        batch_size: int,
        *,
        schedule: str | _schedules.Schedule | None = None,
        mode: str = "single",
        epoch: int | str | None = None,
        tasks: Mapping[str, Task] | Sequence[Task] | None = None,
        inputs: str = "auto",
        distillation: Distillation | None = None,
    ) -> None:
        if mode not in MODES:
            raise PolytaskError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.distillation = distillation
        super().__init__(sources, batch_size, tasks, inputs)
        if mode == "grouped" and schedule is not None:
            raise PolytaskError(
                "mode='grouped' takes every dataset at every step: it uses no schedule "
                f"(got {schedule!r}); use mode='single' or 'mixed' to sample datasets"
            )
        spec = schedule if schedule is not None else "proportional"
        self.schedule = _schedules.get(spec).bind(self.names, self.sizes, self.tasks_of)
        self.steps_per_epoch = self._steps(epoch if epoch is not None else (
            "largest" if mode == "grouped" else "total"
        ))
        self.epoch = 0
        if distillation is not None:
            distillation.bind(self)

    def _steps(self, epoch: int | str) -> int:
        b = self.batch_size
        if isinstance(epoch, bool) or not isinstance(epoch, (int, str)):
            raise PolytaskError(f"epoch must be an integer or a name, got {epoch!r}")
        if isinstance(epoch, int):
            if epoch < 1:
                raise PolytaskError(f"epoch must be at least 1 step, got {epoch}")
            return epoch
        if epoch == "largest":
            return math.ceil(max(self.sizes) / b)
        if epoch == "smallest":
            return math.ceil(min(self.sizes) / b)
        if epoch == "total":
            return sum(math.ceil(n / b) for n in self.sizes)
        raise PolytaskError(
            f"epoch must be a number of steps or 'total', 'largest', 'smallest'; got {epoch!r}"
        )

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch the next pass is (annealed schedules, distillation)."""
        self.epoch = int(epoch)

    def probabilities(self, epoch: int | None = None) -> dict[str, float]:
        """``{dataset: probability}`` of the schedule at ``epoch`` (default: the next)."""
        p = self.schedule.probabilities(self.epoch if epoch is None else epoch)
        return dict(zip(self.names, p.tolist()))

    def __iter__(self) -> Iterator[tuple[Any, dict, dict]]:
        epoch = self.epoch
        self.epoch += 1
        seed = int(torch.randint(0, 2**62, (1,)).item())
        gen = torch.Generator().manual_seed(seed)
        streams = [_Stream(len(ds), gen) for ds in self.datasets]
        d_count = len(self.datasets)
        probs = self.schedule.probabilities(epoch) if self.mode == "mixed" else None
        for i in range(self.steps_per_epoch):
            step = epoch * self.steps_per_epoch + i
            if self.mode == "single":
                d = self.schedule.choose(step, epoch, gen)
                parts = [(d, streams[d].take(self.batch_size))]
            elif self.mode == "grouped":
                parts = [(d, streams[d].take(self.batch_size)) for d in range(d_count)]
            else:
                counts = self._counts(probs, step, gen)
                parts = [(d, streams[d].take(int(c))) for d, c in enumerate(counts) if c > 0]
            yield self._assemble(parts, step)

    def _counts(self, probs: Tensor, step: int, gen: torch.Generator) -> list[int]:
        b, d = self.batch_size, len(self.datasets)
        if isinstance(self.schedule, _schedules.RoundRobin):  # equal parts, remainder rotates
            counts = [b // d] * d
            for j in range(b % d):
                counts[(step + j) % d] += 1
            return counts
        draws = torch.multinomial(probs, b, replacement=True, generator=gen)
        return torch.bincount(draws, minlength=d).tolist()

    # -- distillation ---------------------------------------------------------------
    def _target_chunk(self, ds: _Dataset, task: str, idx: Tensor, step: int) -> Tensor:
        gold = ds.targets[task][idx]
        if self.distillation is not None and task in self.distillation.task_names:
            return self.distillation.targets(task, gold, idx, step)
        return gold

    def _template(self, task: str) -> tuple[tuple[int, ...], torch.dtype]:
        if self.distillation is not None and task in self.distillation.task_names:
            return self.distillation.template(task)
        return self.templates[task]

    # -- the Trainer ------------------------------------------------------------------
    def attach_trainer(self, trainer: Trainer) -> None:
        """Called by ``Trainer.fit``: check tasks, model and balancer against the
        datasets, and install the callback that sets the epoch and feeds a dynamic
        schedule each epoch's validation losses."""
        super().attach_trainer(trainer)
        self._check_balancer(trainer.balancer)
        if not any(isinstance(cb, LoaderCallback) and cb.loader is self
                   for cb in trainer.callbacks):
            trainer.callbacks.append(LoaderCallback(self))

    def _check_balancer(self, balancer: Any) -> None:
        from ..balancing import GradientAggregator
        from ..balancing.weighting import EqualWeighting, FixedWeighting

        inner = getattr(balancer, "inner", balancer)  # under an architecture penalty
        if self.mode != "single" or len(self.datasets) == 1:
            return
        if isinstance(inner, GradientAggregator):
            raise PolytaskError(
                f"{type(inner).__name__} combines the tasks' gradients at the same "
                "parameters, but with mode='single' each batch holds one dataset, so the "
                "other tasks' gradients are zero at every step. Use mode='grouped' (one "
                "batch of every dataset per step, at the cost of D forward passes' worth "
                "of samples) or mode='mixed'"
            )
        if not isinstance(inner, (EqualWeighting, FixedWeighting)):
            warnings.warn(
                f"{type(inner).__name__} with mode='single': a task absent from a batch "
                "has a loss of 0 at that step, which loss-history and learned weightings "
                "read as a loss; mode='mixed' or 'grouped' gives every task a loss each "
                "step",
                stacklevel=3,
            )


class LoaderCallback(Callback):
    """Keeps a :class:`MultiDatasetLoader` in step with the Trainer: sets its epoch
    before each epoch and gives a feedback schedule each epoch's validation losses
    (the training losses when there is no validation loader)."""

    def __init__(self, loader: MultiDatasetLoader) -> None:
        self.loader = loader

    @staticmethod
    def _losses(logs: Mapping[str, Any]) -> dict[str, float]:
        split = logs.get("val") or logs.get("train") or {}
        return {k[5:]: v for k, v in split.items() if k.startswith("loss/")}

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.loader.schedule.needs_feedback and trainer.history:  # resumed: replay
            for entry in trainer.history:
                self.loader.schedule.update(self._losses(entry))

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self.loader.schedule.needs_feedback:
            self.loader.schedule.update(self._losses(logs))


class PerDatasetLoader(_Datasets):
    """One pass over every dataset, in order, one dataset per batch, for evaluation:
    each task's metrics and loss come from its own dataset only.

    Args: ``sources``, ``batch_size``, ``tasks`` and ``inputs`` as for
    :class:`MultiDatasetLoader` (use the same ``inputs`` as the training loader).
    """

    def __init__(
        self,
        sources: Mapping[Any, Source],
        batch_size: int,
        *,
        tasks: Mapping[str, Task] | Sequence[Task] | None = None,
        inputs: str = "auto",
    ) -> None:
        super().__init__(sources, batch_size, tasks, inputs)

    def __len__(self) -> int:
        return sum(math.ceil(n / self.batch_size) for n in self.sizes)

    def __iter__(self) -> Iterator[tuple[Any, dict, dict]]:
        for d, ds in enumerate(self.datasets):
            for start in range(0, len(ds), self.batch_size):
                idx = torch.arange(start, min(start + self.batch_size, len(ds)))
                yield self._assemble([(d, idx)], 0)
