"""The Trainer: fit and evaluate a multi-task model with any balancer."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import params
from ..balancing import Balancer, GradientAccumulator, engine, method_class, whole_batch_losses
from ..balancing import get as get_balancer
from ..balancing.penalty import attach as attach_penalty
from ..errors import CheckpointError, PolytaskError
from ..models import MultiTaskModel
from ..params import check_task_settings, parse_spec
from ..tasks import Task, as_task_dict
from .batches import check_targets, split_batch, to_device
from .callbacks import (
    Callback,
    CSVLogger,
    ModelCheckpoint,
    TensorBoardLogger,
    tensorboard_available,
)
from .checkpoints import load_checkpoint_file, prepare_run_dir, save_checkpoint_file
from .distributed import Distributed, is_ddp
from .precision import Precision, as_precision
from .predict import labeled_samples
from .predict import predict as predict_outputs
from .schedulers import INTERVALS, LRScheduling
from .seeding import rng_state, seed_everything, set_rng_state

Metrics = dict[str, dict[str, float]]


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a ``torch.compile`` or ``DistributedDataParallel`` wrapper (the
    model itself otherwise): its architecture, parameters and state-dict keys are the
    plain model's."""
    while True:
        if is_ddp(model):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _check_outputs(outputs: Any, task_names: Sequence[str]) -> None:
    if not isinstance(outputs, Mapping):
        raise PolytaskError(
            f"the model must return a dict {{task: output}}, got {type(outputs).__name__}"
        )
    missing = [n for n in task_names if n not in outputs]
    if missing:
        raise PolytaskError(
            f"the model returned no output for task(s) {missing}; outputs: {sorted(outputs)}"
        )


class Trainer:
    """Trains a multi-task model: forward, task losses, balancer, optimizer step.

    Args:
        model: a :class:`~polytask.models.MultiTaskModel` (or any module returning
            ``{task: output}``; then give ``shared_params``).
        tasks: the task specs (sequence or name -> Task mapping).
        balancer: a :class:`~polytask.balancing.Balancer`, a registered name, or a spec
            ``"name:key=value,..."`` as on the command line (``"cagrad:c=0.4"``).
        optimizer: an optimizer over the model's parameters, or a factory
            ``params -> optimizer``; default Adam(lr=1e-3). The balancer's own
            learnable parameters (``balancer.extra_parameters()``, e.g. UW's
            log-variances) are always stepped: given to the factory as a parameter
            group, or added to a ready optimizer as a new group (its defaults) when it
            lacks them.
        device: default CUDA when available, else CPU.
        log_dir: where ``steps.csv``, ``epochs.csv``, checkpoints (``last.pt``,
            ``best.pt``) and TensorBoard logs (when installed) go; None: nothing written.
        callbacks: extra :class:`Callback` objects.
        seed: seeds every RNG at the start of ``fit``.
        monitor: the value that picks the best epoch: ``"loss"`` (sum of the non-
            auxiliary tasks' validation losses, lower is better) or ``"task/metric"``
            (its direction from the task).
        grad_clip: clip the total gradient norm to this value.
        train_metrics: also compute metrics on the training batches (slower).
        progress: show a progress bar.
        shared_params: override ``model.shared_parameters()``.
        precision: "32" (default), "bf16" (autocast) or "fp16" (autocast and a
            GradScaler whose scale the balancer removes from the per-task gradients
            before combining them); Lightning's "bf16-mixed", "16-mixed" too; or a
            :class:`~polytask.training.Precision`. See ``docs/precision.md``.
        scheduler: a torch LR scheduler on ``optimizer`` or a factory
            ``optimizer -> scheduler``; checkpointed and resumed exactly.
        scheduler_interval: step the scheduler after every epoch (default) or after
            every optimizer step ("step").
        accumulate_grad_batches: M > 1 accumulates M loader batches (micro-batches)
            into one optimizer step that equals the step on their union, for every
            method (:class:`~polytask.balancing.GradientAccumulator`: the whole
            batch's Jacobian, Gramian and losses, missing labels count-weighted; see
            ``docs/accumulation.md``). ``global_step`` counts optimizer steps; a last,
            shorter group of an epoch is stepped as it is.

    Under ``torchrun`` (several processes; ``torch.distributed`` initialised, or
    torchrun's variables set, and the Trainer initialises it: nccl on CUDA, gloo on the
    CPU) each rank trains on its shard of every batch (``DistributedSampler``; the
    loader's ``batch_size`` is per process) and every method gives the whole batch's
    update; the model stays plain (not DDP), metrics are reduced as statistics, and
    rank 0 alone writes logs and checkpoints (:mod:`polytask.training.distributed`,
    ``docs/distributed.md``).

    A model compiled with ``torch.compile`` is accepted as it is: the Trainer reads
    the architecture (shared parameters, representation) from the module it wraps,
    and checkpoints hold that module's state-dict keys.

    Hook points, in the order of a step (see :class:`Callback`): the precision
    plugin's ``forward_context`` around forward and losses; ``on_before_backward``;
    the balancer's backward with the plugin's ``grad_scale``; the plugin's
    ``unscale_``; ``on_before_optimizer_step``; gradient clipping; the plugin's
    ``optimizer_step``; ``on_optimizer_step``; the balancer's after-step hook;
    ``on_step_end``. Per epoch: ``on_epoch_start``, ``on_epoch_end`` (user callbacks,
    then the scheduler, then :class:`ModelCheckpoint`), and ``fit`` ends early once a
    callback sets ``trainer.should_stop`` (:class:`EarlyStopping`). With
    ``accumulate_grad_batches`` > 1, forward, losses and ``on_before_backward`` run per
    micro-batch (each followed by the accumulator's ``add``), the rest once per
    optimizer step; ``on_step_end`` gets the whole accumulated batch's losses.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "seed": [None, params.Integral],
        "monitor": [str],
        "grad_clip": [None, params.Interval(params.Real, 0, None, closed="neither")],
        "train_metrics": ["boolean"],
        "progress": ["boolean"],
        "scheduler_interval": [params.Options(INTERVALS)],
        "accumulate_grad_batches": [params.Interval(params.Integral, 1, None)],
    }

    def __init__(
        self,
        model: nn.Module,
        tasks: Mapping[str, Task] | Iterable[Task],
        balancer: Balancer | str = "ew",
        optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None = None,
        *,
        device: str | torch.device | None = None,
        log_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        seed: int | None = None,
        monitor: str = "loss",
        grad_clip: float | None = None,
        train_metrics: bool = False,
        progress: bool = True,
        shared_params: Iterable[Tensor] | None = None,
        precision: str | Precision = "32",
        scheduler: Any = None,
        scheduler_interval: str = "epoch",
        accumulate_grad_batches: int = 1,
    ) -> None:
        params.check_settings(Trainer, {
            "seed": seed, "monitor": monitor, "grad_clip": grad_clip,
            "train_metrics": train_metrics, "progress": progress,
            "scheduler_interval": scheduler_interval,
            "accumulate_grad_batches": accumulate_grad_batches,
        })
        self.tasks = as_task_dict(tasks)
        self.task_names = list(self.tasks)
        #: the torchrun plugin (process group, shards, rank 0's files; docs/distributed.md)
        self.distributed = Distributed(device)
        self.device = self.distributed.device(device)
        self.model = model.to(self.device)
        module = unwrap(model)  # the architecture under a torch.compile wrapper
        if isinstance(balancer, str):  # a name or "name:key=value" spec, as on the CLI
            name, settings = parse_spec(balancer)
            check_task_settings(method_class(name), settings, self.task_names,
                                f"method {balancer!r}")
            balancer = get_balancer(name, **settings)
        self.balancer = balancer
        self.balancer = attach_penalty(self.balancer, module)  # architecture penalties, if any
        self.balancer.to(self.device)
        if shared_params is not None:
            self.shared_params = list(shared_params)
        elif isinstance(module, MultiTaskModel):
            self.shared_params = list(module.shared_parameters())
        else:
            raise PolytaskError("give shared_params=... for a model that is not a MultiTaskModel")
        self.balancer.prepare(self.task_names)  # per-task state before the optimizer exists
        self.distributed.check(model, self.balancer, int(accumulate_grad_batches))
        extra = [p for p in self.balancer.extra_parameters() if p.requires_grad]
        if optimizer is None or not isinstance(optimizer, torch.optim.Optimizer):
            factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
            groups: list[dict[str, Any]] = [{"params": list(self.model.parameters())}]
            if extra:
                groups.append({"params": extra})
            optimizer = factory(groups)
        self.optimizer = optimizer
        self._include_extra_parameters(extra)
        self.precision = as_precision(precision, self.device)
        self.precision.check(module, self.balancer)
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self._step_lrs: dict[str, float] = {}
        self.accumulator = self._build_accumulator()
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.callbacks = list(callbacks)
        writes = self.log_dir is not None and self.distributed.is_main  # rank 0 writes
        if writes:
            self.callbacks.insert(0, CSVLogger(self.log_dir))
            if tensorboard_available():
                self.callbacks.append(TensorBoardLogger(self.log_dir / "tensorboard"))
        #: callbacks run after ``callbacks`` (so that a checkpoint holds their state)
        self.closing_callbacks: list[Callback] = []
        self.lr_scheduler = None
        if scheduler is not None:
            scheduling = LRScheduling(scheduler, scheduler_interval)
            self.lr_scheduler = scheduling.bind(self.optimizer)
            self.closing_callbacks.append(scheduling)
        if writes:
            self.closing_callbacks.append(ModelCheckpoint(self.log_dir))
        self.seed = seed
        self.monitor = monitor
        self.monitor_higher = self._monitor_direction(monitor)
        self.grad_clip = grad_clip
        self.train_metrics = train_metrics
        self.progress = progress
        self.epochs_done = 0
        self.global_step = 0
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        #: set by a callback (EarlyStopping) to end ``fit`` after the current epoch
        self.should_stop = False
        #: whether the last epoch improved the monitored value (best.pt written)
        self.improved = False

    # -- configuration ----------------------------------------------------------------
    def _build_accumulator(self) -> GradientAccumulator | None:
        """The micro-batch accumulator (None without accumulation); refuses a method
        that would need every micro-batch's graph, naming the fix."""
        if self.accumulate_grad_batches == 1:
            return None
        acc = GradientAccumulator(
            self.balancer, shared_params=self.shared_params,
            micro_batches=self.accumulate_grad_batches,
        )
        if acc.reads_representation and not acc.weighted_on_representation:
            raise PolytaskError(
                f"{type(self.balancer).__name__} on path='representation' computes its "
                "direction on the shared representation, so accumulate_grad_batches > 1 "
                "would need every micro-batch's encoder graph: use the method with "
                "path='jacobian' (exact, no graph kept), or in a plain loop "
                "GradientAccumulator(..., keep_graphs=True)"
            )
        return acc

    def _include_extra_parameters(self, extra: list[Tensor]) -> None:
        """Add the balancer's learnable parameters the optimizer lacks (a user-built
        optimizer over ``model.parameters()`` would leave them at their start)."""
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        missing = [p for p in extra if id(p) not in held]
        if missing:
            self.optimizer.add_param_group({"params": missing})

    def _monitor_direction(self, monitor: str) -> bool:
        if monitor == "loss":
            return False
        task, _, metric = monitor.partition("/")
        if task not in self.tasks:
            raise PolytaskError(f"monitor {monitor!r}: unknown task {task!r}; {self.task_names}")
        directions = self.tasks[task].higher_is_better
        if metric not in directions:
            raise PolytaskError(
                f"monitor {monitor!r}: task {task!r} has metrics {sorted(directions)}"
            )
        return directions[metric]

    @property
    def module(self) -> nn.Module:
        """The model, unwrapped from ``torch.compile`` when compiled."""
        return unwrap(self.model)

    def all_callbacks(self) -> list[Callback]:
        """Every callback in the order the Trainer calls them: ``callbacks``, then
        ``closing_callbacks`` (the scheduler, then :class:`ModelCheckpoint`)."""
        return [*self.callbacks, *self.closing_callbacks]

    def _hook(self, name: str, *args: Any) -> None:
        for cb in self.all_callbacks():
            getattr(cb, name)(self, *args)

    @property
    def main_tasks(self) -> list[str]:
        """Tasks that count for model selection and Δm (not auxiliary)."""
        return [n for n, t in self.tasks.items() if not t.auxiliary]

    # -- one step ---------------------------------------------------------------------
    def compute_losses(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], masks: Mapping
    ) -> dict[str, Tensor]:
        """Each task's loss on a batch."""
        return {
            name: task.loss(outputs[name], targets[name], masks.get(name))
            for name, task in self.tasks.items()
        }

    def train_step(self, batch: Any) -> tuple[dict[str, Tensor], Any, dict, dict]:
        """Forward, losses, balancer backward and optimizer step on one batch."""
        inputs, targets, masks, outputs, losses = self._batch_losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        # several processes: each rank's losses weighted by its share of the labels, so
        # that the engine's average across ranks is the whole batch's loss
        factors = self.distributed.loss_factors(self.tasks, outputs, targets, masks,
                                                self.device)
        balanced = losses if factors is None else {
            n: losses[n] * factors[i].to(losses[n].dtype) for i, n in enumerate(losses)}
        with (engine.caller_averages_gradients() if is_ddp(self.model)
              else contextlib.nullcontext()):  # DDP's hooks average a loss weighting's
            result = self.balancer.backward(
                balanced,
                shared_params=self.shared_params,
                representation=getattr(self.module, "shared_representation", None),
                grad_scale=self.precision.grad_scale,
            )
        self._optimizer_step()
        self._balancer_step_end(inputs, targets, masks, factors)
        return losses, result, outputs, (targets, masks)

    def _learning_rates(self) -> dict[str, float]:
        """The optimizer's learning rates now (``lr``; ``lr/<group>`` for each
        parameter group when there are several)."""
        groups = self.optimizer.param_groups
        if len(groups) == 1:
            return {"lr": float(groups[0]["lr"])}
        return {f"lr/{i}": float(g["lr"]) for i, g in enumerate(groups)}

    def _optimizer_step(self) -> None:
        """Unscale, ``on_before_optimizer_step``, clipping, the optimizer step and
        ``on_optimizer_step`` (``.grad`` already holds the step's update)."""
        self.precision.unscale_(self.optimizer)
        self._hook("on_before_optimizer_step", self.optimizer)
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self._step_lrs = self._learning_rates()  # the step's own, logged in steps.csv
        stepped = self.precision.optimizer_step(self.optimizer)
        self._hook("on_optimizer_step", self.optimizer, stepped)

    def accumulated_step(self, batches: Sequence[Any]) -> tuple[list[tuple], dict[str, Tensor]]:
        """One optimizer step on the micro-batches ``batches``, equal to the step on
        their union: per micro-batch forward, losses and the accumulator's ``add``
        (which frees the graph), then the balancer once (``accumulator.backward``).
        Returns, per micro-batch, ``(losses, result, outputs, (targets, masks))`` as
        :meth:`train_step` does (losses and outputs detached), and the whole batch's
        losses (count-weighted means of the micro-batches')."""
        acc = self.accumulator
        if acc is None:
            raise PolytaskError("accumulated_step needs accumulate_grad_batches > 1")
        self.optimizer.zero_grad(set_to_none=True)
        scale = self.precision.grad_scale
        micro = []
        for batch in batches:
            inputs, targets, masks, outputs, losses = self._batch_losses(batch)
            counts = {n: t.loss_count(outputs[n], targets[n], masks.get(n))
                      for n, t in self.tasks.items()}
            acc.add(losses, counts=counts,
                    representation=getattr(self.module, "shared_representation", None),
                    grad_scale=scale)
            micro.append((inputs, {n: v.detach() for n, v in losses.items()},
                          {n: v.detach() for n, v in outputs.items()}, targets, masks, counts))
        result = acc.backward(grad_scale=scale)
        self._optimizer_step()
        if getattr(self.balancer, "needs_losses_after_step", False):
            # FAMO: the whole batch's losses after the step, one forward per micro-batch
            with torch.no_grad():
                after = [self._forward(x, t, m)[1] for x, _, _, t, m, _ in micro]
            self.balancer.on_step_end(whole_batch_losses(after, [c for *_, c in micro]))
        else:
            self.balancer.on_step_end(None)
        whole = whole_batch_losses([m[1] for m in micro], [m[5] for m in micro])
        return [(losses, result, outputs, (t, m)) for _, losses, outputs, t, m, _ in micro], whole

    def _train_steps(self, loader: Iterable) -> Iterable[tuple]:
        """Per loader batch: ``train_step``'s tuple and the step's losses (those of the
        whole accumulated batch on its last micro-batch, else None)."""
        if self.accumulate_grad_batches == 1:
            for batch in loader:
                out = self.train_step(batch)
                yield (*out, {n: v.detach() for n, v in out[0].items()})
            return
        group: list[Any] = []
        for batch in loader:
            group.append(batch)
            if len(group) == self.accumulate_grad_batches:
                yield from self._accumulated(group)
                group = []
        if group:
            yield from self._accumulated(group)

    def _accumulated(self, group: Sequence[Any]) -> Iterable[tuple]:
        steps, whole = self.accumulated_step(group)
        for i, step in enumerate(steps):
            yield (*step, whole if i == len(steps) - 1 else None)

    def _batch_losses(self, batch: Any) -> tuple[Any, dict, dict, dict, dict[str, Tensor]]:
        """Split and check ``batch``, move it to the device, forward, losses and the
        ``on_before_backward`` hook: ``(inputs, targets, masks, outputs, losses)``."""
        inputs, targets, masks = split_batch(batch)
        check_targets(self.task_names, targets, masks)
        inputs, targets, masks = (to_device(v, self.device) for v in (inputs, targets, masks))
        outputs, losses = self._forward(inputs, targets, masks)
        self._hook("on_before_backward", self.global_step, losses, (inputs, targets, masks))
        return inputs, targets, masks, outputs, losses

    def _forward(
        self, inputs: Any, targets: Mapping[str, Tensor], masks: Mapping
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Outputs and losses under the precision plugin's context (autocast), both
        given back in float32 when autocast made them half precision."""
        with self.precision.forward_context():
            outputs = self.model(inputs)
            _check_outputs(outputs, self.task_names)
            outputs = self.precision.to_float(outputs)
            losses = self.compute_losses(outputs, targets, masks)
        return outputs, self.precision.to_float(losses)

    def _balancer_step_end(self, inputs: Any, targets: Mapping, masks: Mapping,
                           factors: Tensor | None = None) -> None:
        """The balancer's after-step hook; for methods that need it (FAMO), with the
        same batch's losses at the new parameters (one extra forward, no backward; on
        several processes the whole batch's, weighted by ``factors`` and averaged)."""
        if not getattr(self.balancer, "needs_losses_after_step", False):
            self.balancer.on_step_end(None)
            return
        with torch.no_grad():
            _, after = self._forward(inputs, targets, masks)
        values = torch.stack([after[n].detach().reshape(()) for n in self.task_names])
        if factors is not None:
            values = engine.average_across_ranks(values * factors.to(values.dtype))
        self.balancer.on_step_end(dict(zip(self.task_names, values)))

    # -- loops ------------------------------------------------------------------------
    def fit(
        self,
        train_loader: Iterable,
        epochs: int,
        val_loader: Iterable | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ) -> list[dict[str, Any]]:
        """Train for ``epochs`` epochs (in total, counting resumed ones).

        With ``resume=True`` training continues from ``log_dir/last.pt`` (which must
        exist) and ends exactly where an uninterrupted run would. A ``log_dir`` that
        already holds a run is never overwritten silently: give ``resume=True``,
        ``overwrite=True`` (its checkpoints and logs are removed first) or a new
        directory. Returns the history: one dict per epoch with ``train`` and ``val``
        logs.
        """
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise PolytaskError(f"epochs must be a positive int, got {epochs!r}")
        if self.log_dir is not None:
            self.distributed.barrier()  # rank 0's last writes are done
            if self.distributed.is_main or resume:  # rank 0 clears; every rank resumes
                prepare_run_dir(self.log_dir, resume=resume, overwrite=overwrite)
            self.distributed.barrier()
        elif resume:
            raise PolytaskError("resume=True needs a log_dir")
        if self.seed is not None:
            seed_everything(self.seed)
        self.should_stop = False
        train_loader = self.distributed.shard(train_loader, train=True, seed=self.seed or 0)
        self.balancer.attach(
            model=self.model, optimizer=self.optimizer, loader=train_loader,
            tasks=self.tasks, primary=self.main_tasks, device=self.device,
        )
        attach_loader = getattr(train_loader, "attach_trainer", None)
        if callable(attach_loader):  # loaders that check or follow the run (multidataset)
            attach_loader(self)
        if resume:
            self.load_checkpoint(self.log_dir / "last.pt")
        self.distributed.synchronize(self.module, self.balancer)  # rank 0's state and RNGs
        self._hook("on_fit_start")
        for epoch in range(self.epochs_done, epochs):
            if self.should_stop:  # a resumed run that had stopped early stays stopped
                break
            self._hook("on_epoch_start", epoch)
            if isinstance(self.module, MultiTaskModel):  # schedules (AdaShare, Learning to Branch)
                self.module.on_epoch_start(epoch)
            start = time.perf_counter()
            self.distributed.start_epoch(train_loader, epoch)
            train_logs = self._train_epoch(train_loader, epoch, epochs)
            train_logs["time"] = time.perf_counter() - start
            logs: dict[str, Any] = {"train": train_logs}
            if val_loader is not None:
                logs["val"] = self._flatten(self.evaluate(val_loader))
            self.balancer.on_epoch_end(
                epoch, {n: train_logs[f"loss/{n}"] for n in self.task_names}
            )
            self.epochs_done = epoch + 1
            self.improved = self._update_best(logs, epoch)
            self.history.append({"epoch": epoch, **logs})
            self._hook("on_epoch_end", epoch, logs)  # checkpoints last (ModelCheckpoint)
        self._hook("on_fit_end")
        self.distributed.barrier()  # rank 0's files are written when fit returns
        return self.history

    def _train_epoch(self, loader: Iterable, epoch: int, epochs: int) -> dict[str, float]:
        self.model.train()
        k = len(self.task_names)
        loss_sum = torch.zeros(k, dtype=torch.float64)  # Σ batch loss × labeled samples
        labeled_sum = torch.zeros(k, dtype=torch.float64)
        weight_sum = torch.zeros(k, dtype=torch.float64)
        batches = 0
        metrics = {n: t.metrics() for n, t in self.tasks.items()} if self.train_metrics else None
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not self.progress, leave=False
        )
        for losses, result, outputs, (targets, masks), step_losses in self._train_steps(bar):
            values = torch.stack([losses[n].detach() for n in self.task_names]).double().cpu()
            weights = torch.tensor([result.weights.get(n, 1.0) for n in self.task_names])
            counts = torch.tensor(
                [labeled_samples(t, outputs[n], targets[n], masks.get(n))
                 for n, t in self.tasks.items()], dtype=torch.float64,
            )
            loss_sum += values * counts
            labeled_sum += counts
            weight_sum += weights.double()
            batches += 1
            if metrics is not None:
                for name, task in self.tasks.items():
                    task.update_metrics(metrics[name], outputs[name], targets[name],
                                        masks.get(name))
            if step_losses is None:  # a micro-batch before the end of its step
                continue
            self.global_step += 1
            if self.all_callbacks():
                vals = [float(step_losses[n]) for n in self.task_names]
                record = {f"loss/{n}": v for n, v in zip(self.task_names, vals)}
                record.update(
                    {f"weight/{n}": w for n, w in zip(self.task_names, weights.tolist())}
                )
                record.update(result.extras)
                record.update(self._step_lrs)
                self._hook("on_step_end", self.global_step, record)
            if self.progress and batches % 20 == 0:
                mean = loss_sum / labeled_sum.clamp(min=1.0)
                bar.set_postfix(loss=f"{float(mean.sum()):.4f}")
        if batches == 0:
            raise PolytaskError("the training loader yielded no batch")
        # several processes: every rank's sums (the whole epoch's means on each rank)
        sums = self.distributed.sum(torch.stack([loss_sum, labeled_sum]), self.device)
        loss_sum, labeled_sum = sums[0], sums[1]
        if metrics is not None:
            self.distributed.reduce_metrics(metrics)
        # the mean over labeled samples: batches without a label for a task do not count
        logs = {
            f"loss/{n}": float(loss_sum[i] / labeled_sum[i]) if labeled_sum[i] else math.nan
            for i, n in enumerate(self.task_names)
        }
        logs.update(
            {f"weight/{n}": float(weight_sum[i] / batches) for i, n in enumerate(self.task_names)}
        )
        if metrics is not None:
            for name, ms in metrics.items():
                logs.update({f"{name}/{m}": metric.compute() for m, metric in ms.items()})
        return logs

    @torch.no_grad()
    def evaluate(self, loader: Iterable) -> Metrics:
        """Every task's metrics and mean loss on ``loader``: ``{task: {metric: value}}``."""
        was_training = self.model.training
        self.model.eval()
        metrics = {n: t.metrics() for n, t in self.tasks.items()}
        loss_sum = dict.fromkeys(self.task_names, 0.0)
        count = dict.fromkeys(self.task_names, 0)
        loader = self.distributed.shard(loader, train=False, seed=0)  # rank r: r, r+R, ...
        for batch in loader:
            inputs, targets, masks = split_batch(batch)
            check_targets(self.task_names, targets, masks)
            inputs, targets, masks = (to_device(v, self.device) for v in (inputs, targets, masks))
            with self.precision.forward_context():
                outputs = self.model(inputs)
                _check_outputs(outputs, self.task_names)
            outputs = self.precision.to_float(outputs)
            for name, task in self.tasks.items():
                n_labeled = labeled_samples(task, outputs[name], targets[name], masks.get(name))
                if n_labeled:
                    loss = task.loss(outputs[name], targets[name], masks.get(name))
                    loss_sum[name] += float(loss) * n_labeled
                    count[name] += n_labeled
                task.update_metrics(metrics[name], outputs[name], targets[name], masks.get(name))
        self.model.train(was_training)
        if self.distributed.enabled:  # sums and metric states of every rank
            sums = self.distributed.sum(torch.tensor(
                [[loss_sum[n] for n in self.task_names], [count[n] for n in self.task_names]],
                dtype=torch.float64), self.device)
            loss_sum = dict(zip(self.task_names, sums[0].tolist()))
            count = dict(zip(self.task_names, sums[1].tolist()))
            self.distributed.reduce_metrics(metrics)
        results: Metrics = {}
        for name, ms in metrics.items():
            results[name] = {m: metric.compute() for m, metric in ms.items()}
            results[name]["loss"] = loss_sum[name] / count[name] if count[name] else math.nan
        return results

    @torch.no_grad()
    def predict(self, data: Any) -> dict[str, Tensor]:
        """Each task's predictions in its natural form, ``{task: tensor}`` on the CPU:
        probabilities for binary (N,), multiclass (N, C) and multi-label (N, L) tasks,
        values for regression ((N,) or (N, dim)). ``data`` is one input batch or an
        iterable of batches (inputs alone, or ``(inputs, targets[, masks])`` tuples and
        dicts, whose targets are ignored). See :func:`polytask.training.predict`."""
        return predict_outputs(self.model, self.tasks, data, device=self.device)

    @staticmethod
    def _flatten(results: Metrics) -> dict[str, float]:
        flat = {}
        for task, values in results.items():
            for metric, value in values.items():
                key = f"loss/{task}" if metric == "loss" else f"{task}/{metric}"
                flat[key] = value
        return flat

    def monitored_value(self, logs: Mapping[str, Any], monitor: str | None = None,
                        warn: bool = False) -> float:
        """The value of ``monitor`` (default: the Trainer's) in an epoch's logs: on the
        validation logs when there are any, else the training logs. ``"loss"`` is
        the sum of the non-auxiliary tasks' losses, leaving out tasks without a
        labeled sample (NaN when none has one); ``"task/metric"`` is read as is."""
        monitor = monitor or self.monitor
        split = logs.get("val", logs["train"])
        where = "validation" if "val" in logs else "training"
        if monitor == "loss":
            values = {n: split[f"loss/{n}"] for n in self.main_tasks}
            unlabeled = [n for n, v in values.items() if math.isnan(v)]
            if warn and unlabeled and len(unlabeled) < len(values):
                warnings.warn(
                    f"task(s) {unlabeled} have no labeled sample in the {where} data: the "
                    "monitored loss (which picks best.pt) leaves them out",
                    RuntimeWarning, stacklevel=4,
                )
            return (
                sum(v for v in values.values() if not math.isnan(v))
                if len(unlabeled) < len(values) else math.nan
            )
        if monitor not in split:
            raise PolytaskError(
                f"monitor {monitor!r} is not logged; give a val_loader (or "
                "train_metrics=True)"
            )
        return float(split[monitor])

    def _update_best(self, logs: dict[str, Any], epoch: int) -> bool:
        where = "validation" if "val" in logs else "training"
        score = self.monitored_value(logs, warn=True)
        if math.isnan(score):
            warnings.warn(
                f"epoch {epoch}: the monitored value {self.monitor!r} is NaN on the {where} "
                "data (no labeled sample, or a metric undefined there): best.pt is not "
                "updated",
                RuntimeWarning, stacklevel=3,
            )
            return False
        better = (
            self.best_score is None
            or (score > self.best_score if self.monitor_higher else score < self.best_score)
        )
        if better:
            self.best_score, self.best_epoch = score, epoch
        return better

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimizer, balancer, RNGs, counters,
        the precision plugin's scaler and every callback's state."""
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "balancer": self.balancer.state_dict(),
            "epochs_done": self.epochs_done,
            "global_step": self.global_step,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "rng": rng_state(),
            "should_stop": self.should_stop,
            "precision": self.precision.state_dict(),
            "callbacks": {key: cb.state_dict() for key, cb in self._keyed_callbacks()},
        }

    def _keyed_callbacks(self) -> list[tuple[str, Callback]]:
        """Each callback with its checkpoint key (``state_key``, numbered if repeated)."""
        seen: dict[str, int] = {}
        keyed = []
        for cb in self.all_callbacks():
            key = cb.state_key
            n = seen.get(key, 0)
            seen[key] = n + 1
            keyed.append((key if n == 0 else f"{key}#{n}", cb))
        return keyed

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.balancer.load_state_dict(state["balancer"])
        self.epochs_done = state["epochs_done"]
        self.global_step = state["global_step"]
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.history = list(state["history"])
        set_rng_state(state["rng"])
        self.should_stop = bool(state.get("should_stop", False))  # older checkpoints lack it
        self.precision.load_state_dict(state.get("precision", {}))
        saved = state.get("callbacks", {})
        for key, cb in self._keyed_callbacks():
            if key in saved:
                cb.load_state_dict(saved[key])

    def save_checkpoint(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (a temporary file unique to
        this process, then a rename). The file holds tensors and plain Python data
        only: ``torch.load(path, weights_only=True)`` reads it."""
        save_checkpoint_file(self.state_dict(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save_checkpoint` (loaded with
        ``weights_only=True``; a missing or damaged file raises naming it)."""
        state = load_checkpoint_file(path, self.device)
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as error:
            raise CheckpointError(
                f"{path}: does not fit this Trainer's model, optimizer or balancer: {error}"
            ) from error

    def load_best(self) -> None:
        """Load the model weights of the best epoch (needs ``log_dir``)."""
        if self.log_dir is None:
            raise PolytaskError("no best checkpoint: this Trainer has no log_dir")
        path = self.log_dir / "best.pt"
        if not path.exists():
            if self.epochs_done:
                raise CheckpointError(
                    f"no {path}: the monitored value {self.monitor!r} was never finite in "
                    f"{self.epochs_done} epoch(s) (a task without labeled validation "
                    "samples, or a metric undefined there); load last.pt instead "
                    "(trainer.load_checkpoint) or choose another monitor"
                )
            raise CheckpointError(f"no {path}: call fit() first")
        state = load_checkpoint_file(path, self.device)
        self.module.load_state_dict(state["model"])
