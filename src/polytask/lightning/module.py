"""A ``LightningModule`` that trains a multi-task model with any polytask balancer.

The module is the plain-loop protocol (docs/plain_loop.md) inside ``training_step``,
with manual optimization (``automatic_optimization = False``): the balancer is built
with the task names and prepared before the optimizer, its ``extra_parameters()`` go to
the optimizer (``configure_optimizers``), ``backward`` runs each step, then
``on_step_end`` (with the same batch's losses after the step for FAMO) and
``on_epoch_end``. The balancer is a submodule, so its parameters, buffers and state go
into Lightning's checkpoints.

How a step's gradients reach the parameters (``MultiTaskModule.balance``):

1. the balancer computes its gradients as in a plain loop. Inside ``training_step``
   Lightning's DDP reducer is armed only by ``manual_backward``, so none of the
   balancer's own passes (per-task ``autograd.grad`` calls, the weighted backward) goes
   through DDP; under ``torch.distributed`` the Jacobian engine reduces what the rule
   needs (losses, Jacobian or Gramian) across ranks, so every rank computes the same
   weights or direction;
2. the gradients it wrote are taken out of ``.grad`` and handed to
   ``self.manual_backward`` as one backward of ``Σ_p ⟨p, g_p⟩`` (whose gradient w.r.t.
   ``p`` is ``g_p``): exactly one backward through the DDP module per step, reaching
   every parameter, so DDP averages each rank's share into the whole batch's gradient
   (a direction already identical on every rank stays as it is) and the precision
   plugin scales it (and unscales and checks it for inf/NaN at ``optimizer.step()``).

Extra cost per step over the plain loop: one backward through an elementwise product
with the parameters (O(P), no pass through the network) and DDP's usual all-reduce of
the P gradients. Coordinate-editing methods (PCGrad, GradDrop, CAGrad on the Jacobian
path, ...) also pay the engine's reduction of the K×P Jacobian (K times the traffic);
Gramian-based ones with ``path="gramian"`` the K×K Gramian.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy, Strategy
from torch import Tensor, nn

from ..balancing import Balancer, GradientAggregator, engine, method_class
from ..balancing import get as get_balancer
from ..balancing.penalty import attach as attach_penalty
from ..errors import PolytaskError
from ..models import MultiTaskModel
from ..params import check_task_settings, parse_spec
from ..tasks import Task, as_task_dict
from ..training.batches import check_targets, split_batch
from ..training.predict import labeled_samples

#: the Lightning strategies the module runs under (DDP covers "ddp", "ddp_spawn",
#: "ddp_fork", "ddp_notebook" and their find-unused-parameters variants)
SUPPORTED_STRATEGIES: tuple[type[Strategy], ...] = (SingleDeviceStrategy, DDPStrategy)
_UNSUPPORTED_SUBCLASSES = ("DeepSpeedStrategy",)  # a DDPStrategy that shards the state
OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]


def _inner(balancer: Balancer) -> Balancer:
    """The balancing method itself (inside an architecture-penalty wrapper)."""
    return getattr(balancer, "inner", balancer)


def reads_gradients(balancer: Balancer) -> bool:
    """Whether the method computes per-task gradients (an aggregator, or a loss
    weighting that needs the shared parameters, e.g. GradNorm or IMTL)."""
    method = _inner(balancer)
    return isinstance(method, GradientAggregator) or bool(method.needs_shared_params)


def check_strategy(strategy: Strategy, balancer: Balancer) -> None:
    """Raise a :class:`~polytask.errors.PolytaskError` naming the method and the fix when
    ``balancer`` cannot run under the Lightning ``strategy``.

    Supported: one device and DDP (every variant). Strategies that shard parameters or
    gradients (FSDP, DeepSpeed, ...) hide the whole shared gradients the balancers read.
    Under DDP with several processes, a method that is not Gramian-based cannot run on
    the shared representation's gradients (its rule needs every rank's representation
    gradients, which have different rows on each rank): it must take the Jacobian path.
    """
    method = _inner(balancer)
    label = type(method).__name__
    kind = type(strategy).__name__
    supported = isinstance(strategy, SUPPORTED_STRATEGIES) and not any(
        cls.__name__ in _UNSUPPORTED_SUBCLASSES for cls in type(strategy).__mro__
    )
    if not supported:
        raise PolytaskError(
            f"{label} cannot run under Lightning's {kind}: polytask's MultiTaskModule "
            "reads and writes the whole gradient of every parameter, which this "
            "strategy shards or replaces; use a single device or strategy='ddp' "
            "(also 'ddp_spawn', 'ddp_fork', 'ddp_notebook')"
        )
    if not isinstance(strategy, DDPStrategy) or getattr(strategy, "world_size", 1) <= 1:
        return
    if (
        isinstance(method, GradientAggregator)
        and method.resolved_path() == "representation"
        and not method.gramian_based
    ):
        raise PolytaskError(
            f"{label}(path='representation') cannot run under Lightning's {kind} with "
            f"{strategy.world_size} processes: its rule needs every rank's gradients of "
            "the shared representation, which differ in size and meaning across ranks; "
            f"use {label}(path='jacobian') (the shared parameters' Jacobian, reduced "
            "across ranks), or one process"
        )


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


class MultiTaskModule(pl.LightningModule):
    """A ``LightningModule`` over a multi-task model, its tasks and a balancer.

    Training uses manual optimization: each ``training_step`` computes the task losses,
    calls the balancer (:meth:`balance`, whose gradients go through
    ``self.manual_backward``), clips, steps the optimizer and calls the balancer's
    after-step hook; each training epoch ends with ``balancer.on_epoch_end``. Logged
    (``self.log``): ``train/loss/<task>`` and ``train/weight/<task>`` on the steps
    Lightning writes to its loggers (every ``log_every_n_steps``) and each epoch's last
    one (the rank's own losses; the weights are the same on every rank), the method's
    diagnostics as ``train/<key>``, ``epoch/loss/<task>`` (the epoch's mean over every
    rank's labeled samples), and in validation ``val/loss/<task>``, ``val/loss`` (sum
    over the non-auxiliary tasks, a monitor for ``ModelCheckpoint``) and
    ``val/<task>/<metric>`` from the tasks' streaming metrics.

    Args:
        model: a :class:`~polytask.models.MultiTaskModel` (or a module returning
            ``{task: output}``; then give ``shared_params``). The plain module: Lightning
            wraps it for DDP itself.
        tasks: the task specs (sequence or name -> Task mapping).
        balancer: a :class:`~polytask.balancing.Balancer`, a registered name or a spec
            ``"name:key=value,..."`` (``"cagrad:c=0.4"``). A model with an architecture
            penalty gets it added, as in the Trainer.
        optimizer: a factory ``param_groups -> optimizer`` (groups: the model's
            parameters, then the balancer's ``extra_parameters()`` when it has any);
            default ``Adam(lr=1e-3)``, as the Trainer's.
        lr_scheduler: a factory ``optimizer -> scheduler``, stepped once per epoch.
        grad_clip: clip the total gradient norm to this value (through
            ``self.clip_gradients``, so a precision plugin unscales first). Lightning's
            own ``gradient_clip_val`` is not available with manual optimization.
        shared_params: override ``model.shared_parameters()``.

    Under Lightning's DDP strategy every rank gets the update one process would make
    on the whole batch (each rank's loss being the mean over an equal share), for loss
    weightings, Gramian-based methods and coordinate-editing ones alike. Seed every
    rank alike (``lightning.seed_everything``) so random rules draw the same.
    Validation metrics under DDP: losses are exact over all ranks; each metric is
    computed on the rank's shard and averaged over ranks (exact for equal shards of
    mean-type metrics such as MAE or accuracy, an approximation for AUC or F1).
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: Mapping[str, Task] | Iterable[Task],
        balancer: Balancer | str = "ew",
        optimizer: OptimizerFactory | None = None,
        *,
        lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        grad_clip: float | None = None,
        shared_params: Iterable[Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise PolytaskError(
                "MultiTaskModule got a DistributedDataParallel model: give the plain model "
                "(Lightning's DDP strategy wraps the whole module itself)"
            )
        if isinstance(optimizer, torch.optim.Optimizer):
            raise PolytaskError(
                "MultiTaskModule takes an optimizer factory (param_groups -> optimizer), "
                "not a built optimizer: Lightning builds it in configure_optimizers, e.g. "
                "optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1)"
            )
        if grad_clip is not None and not grad_clip > 0:
            raise PolytaskError(f"grad_clip must be a positive number, got {grad_clip!r}")
        self.model = model
        self.tasks = as_task_dict(tasks)
        self.task_names = list(self.tasks)
        if isinstance(balancer, str):  # a name or "name:key=value" spec, as on the CLI
            name, settings = parse_spec(balancer)
            check_task_settings(method_class(name), settings, self.task_names,
                                f"method {balancer!r}")
            balancer = get_balancer(name, **settings)
        if not isinstance(balancer, Balancer):
            raise PolytaskError(
                f"balancer must be a polytask Balancer or a method name, got "
                f"{type(balancer).__name__}"
            )
        # a submodule: its parameters, buffers and extra state go into checkpoints
        self.balancer = attach_penalty(balancer, model)
        self.balancer.prepare(self.task_names)  # per-task state before the optimizer
        if shared_params is not None:
            self._shared_override: list[Tensor] | None = list(shared_params)
        elif isinstance(model, MultiTaskModel):
            self._shared_override = None
        else:
            raise PolytaskError("give shared_params=... for a model that is not a MultiTaskModel")
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.grad_clip = grad_clip
        k = len(self.task_names)
        self._epoch_sums = torch.zeros(2, k, dtype=torch.float64)  # Σ loss·labeled, Σ labeled
        self._val_state: dict[str, Any] | None = None

    # -- what the balancer needs ----------------------------------------------------
    def shared_parameters(self) -> list[Tensor]:
        """The parameters every task uses (given to the balancer)."""
        if self._shared_override is not None:
            return self._shared_override
        return list(self.model.shared_parameters())

    @property
    def main_tasks(self) -> list[str]:
        """Tasks that count for ``val/loss`` (not auxiliary)."""
        return [n for n, t in self.tasks.items() if not t.auxiliary]

    def forward(self, inputs: Any) -> dict[str, Tensor]:
        """The model's ``{task: output}``."""
        return self.model(inputs)

    def compute_losses(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], masks: Mapping
    ) -> dict[str, Tensor]:
        """Each task's loss on a batch."""
        return {
            name: task.loss(outputs[name], targets[name], masks.get(name))
            for name, task in self.tasks.items()
        }

    def _forward_batch(self, batch: Any) -> tuple[Any, Mapping, Mapping, dict[str, Tensor]]:
        inputs, targets, masks = split_batch(batch)
        check_targets(self.task_names, targets, masks)
        outputs = self(inputs)
        _check_outputs(outputs, self.task_names)
        return inputs, targets, masks, outputs

    # -- Lightning hooks: set-up ------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The optimizer over the model's parameters and the balancer's own ones."""
        extra = [p for p in self.balancer.extra_parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": list(self.model.parameters())}]
        if extra:
            groups.append({"params": extra})
        factory = self.optimizer_factory or (lambda g: torch.optim.Adam(g, lr=1e-3))
        optimizer = factory(groups)
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [p for p in extra if id(p) not in held]
        if missing:  # a factory that dropped the groups would leave UW's weights still
            optimizer.add_param_group({"params": missing})
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}

    def on_fit_start(self) -> None:
        """Check that the balancer can run under the chosen strategy and precision."""
        check_strategy(self.trainer.strategy, self.balancer)
        precision = str(getattr(self.trainer, "precision", ""))
        scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None
        if (scaled or precision.startswith("16")) and reads_gradients(self.balancer):
            warnings.warn(
                f"{type(_inner(self.balancer)).__name__} computes per-task gradients "
                f"without loss scaling under precision={precision!r} (only the combined "
                "gradient goes through the GradScaler): small fp16 gradients may "
                "underflow; prefer precision='bf16-mixed' for gradient-based methods",
                RuntimeWarning, stacklevel=2,
            )

    def on_train_start(self) -> None:
        """``balancer.attach`` with the training context (Auto-Lambda, UW, ...)."""
        optimizer = self._optimizer().optimizer
        self.balancer.attach(
            model=self.model, optimizer=optimizer, loader=self.trainer.train_dataloader,
            tasks=self.tasks, primary=self.main_tasks, device=self.device,
        )

    def _optimizer(self) -> Any:
        optimizers = self.optimizers()
        if isinstance(optimizers, list):
            raise PolytaskError(
                f"MultiTaskModule steps one optimizer, configure_optimizers gave "
                f"{len(optimizers)}; override training_step to step several"
            )
        return optimizers

    # -- training ---------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        """Reset the epoch's loss sums; run the model's epoch schedule (AdaShare, ...)."""
        self._epoch_sums = torch.zeros(2, len(self.task_names), dtype=torch.float64)
        if isinstance(self.model, MultiTaskModel):
            self.model.on_epoch_start(self.current_epoch)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Losses, :meth:`balance`, clipping, the optimizer step and the balancer's
        after-step hook; returns the detached sum of the losses."""
        inputs, targets, masks, outputs = self._forward_batch(batch)
        losses = self.compute_losses(outputs, targets, masks)
        optimizer = self._optimizer()
        optimizer.zero_grad(set_to_none=True)
        result = self.balance(losses)
        if self.grad_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip,
                                gradient_clip_algorithm="norm")
        optimizer.step()
        self._balancer_step_end(inputs, targets, masks)
        counts = [labeled_samples(t, outputs[n], targets[n], masks.get(n))
                  for n, t in self.tasks.items()]
        values = torch.stack([losses[n].detach().double().cpu() for n in self.task_names])
        self._epoch_sums[0] += values * torch.tensor(counts, dtype=torch.float64)
        self._epoch_sums[1] += torch.tensor(counts, dtype=torch.float64)
        if self._logs_this_step():
            logs = {f"train/loss/{n}": float(v) for n, v in zip(self.task_names, values)}
            logs.update({f"train/weight/{n}": float(result.weights.get(n, 1.0))
                         for n in self.task_names})
            logs.update({f"train/{key}": float(v) for key, v in result.extras.items()})
            self.log_dict(logs, on_step=True, on_epoch=False, batch_size=max(counts))
        return values.sum()

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes this step's values to its loggers (every
        ``log_every_n_steps``), or it is an epoch's last batch (so that
        ``callback_metrics`` end with it). A ``self.log`` call costs about a millisecond
        per key, as much as a small model's whole step, so the others are skipped."""
        trainer = self.trainer
        connector = getattr(trainer, "_logger_connector", None)
        due = getattr(connector, "should_update_logs", True)
        return bool(due) or bool(getattr(trainer, "is_last_batch", True))

    def balance(self, losses: Mapping[str, Tensor]) -> Any:
        """The balancer's backward, its gradients emitted through ``manual_backward``.

        The balancer runs as in a plain loop (none of its passes goes through DDP's
        reducer, the engine reducing what the rule needs across ranks); the gradients
        it wrote are then taken out of ``.grad`` and given back by one
        ``self.manual_backward`` of ``Σ_p ⟨p, g_p⟩``, so that DDP averages them over the
        ranks and the precision plugin scales them. Gradients present before the call
        are kept (added to, as ``Tensor.backward`` does). Returns the
        :class:`~polytask.balancing.BalanceResult`.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        before = [p.grad for p in params]
        for p in params:
            p.grad = None
        try:
            # DDP averages what manual_backward emits: the engine reduces only what the
            # rule reads (losses, Jacobian, Gramian), not the written gradients again
            with engine.caller_averages_gradients():
                result = self.balancer.backward(
                    losses,
                    shared_params=self.shared_parameters(),
                    representation=getattr(self.model, "shared_representation", None),
                )
            grads = [p.grad for p in params]
        finally:
            for p, old in zip(params, before):
                p.grad = old
        self._emit(params, grads)
        return result

    def _emit(self, params: list[Tensor], grads: list[Tensor | None]) -> None:
        """One ``manual_backward`` whose gradient w.r.t. each parameter is ``grads``."""
        distributed = isinstance(self.trainer.strategy, DDPStrategy) and engine.world_size() > 1
        written = torch.tensor([g is not None for g in grads], dtype=torch.float64)
        if distributed:  # DDP needs every parameter reached, on every rank
            written = engine.average_across_ranks(written.to(self.device)).cpu()
        reached = (written > 0).tolist()
        terms = []
        with torch.autocast(self.device.type, enabled=False):
            for p, g in zip(params, grads):
                if g is not None:
                    terms.append(torch.dot(p.reshape(-1), g.detach().reshape(-1).to(p.dtype)))
                elif distributed:
                    terms.append(p.reshape(-1)[:1].sum() * 0.0)
        if not terms:
            return
        untouched = [p for p, anywhere, g in zip(params, reached, grads)
                     if not anywhere and p.grad is None]
        self.manual_backward(torch.stack(terms).sum())
        for p in untouched:  # no rank wrote it: leave it to the optimizer as unused
            p.grad = None

    def _balancer_step_end(self, inputs: Any, targets: Mapping, masks: Mapping) -> None:
        """The balancer's after-step hook; for FAMO with the same batch's losses at the
        new parameters (one extra forward, no backward), averaged across ranks."""
        if not getattr(self.balancer, "needs_losses_after_step", False):
            self.balancer.on_step_end(None)
            return
        with torch.no_grad():
            after = self.compute_losses(self(inputs), targets, masks)
        values = torch.stack([after[n].detach().reshape(()) for n in self.task_names])
        values = engine.average_across_ranks(values)
        self.balancer.on_step_end(dict(zip(self.task_names, values)))

    def on_train_epoch_end(self) -> None:
        """``balancer.on_epoch_end`` with the epoch's mean losses (over every rank), the
        scheduler's step, and the epoch's losses logged."""
        sums = self._epoch_sums.to(self.device)
        if engine.world_size() > 1:
            sums = engine.average_across_ranks(sums)
        sums = sums.cpu()
        means = {
            n: float(sums[0, i] / sums[1, i]) if sums[1, i] else math.nan
            for i, n in enumerate(self.task_names)
        }
        self.balancer.on_epoch_end(self.current_epoch, means)
        self.log_dict({f"epoch/loss/{n}": v for n, v in means.items()}, on_epoch=True)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    # -- validation -------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        """Fresh streaming metrics and loss sums."""
        k = len(self.task_names)
        self._val_state = {
            "metrics": {n: t.metrics() for n, t in self.tasks.items()},
            "sums": torch.zeros(2, k, dtype=torch.float64),
        }

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Feed the batch to every task's metrics and loss sums."""
        if self._val_state is None:
            self.on_validation_epoch_start()
        state = self._val_state
        _, targets, masks, outputs = self._forward_batch(batch)
        for i, (name, task) in enumerate(self.tasks.items()):
            n = labeled_samples(task, outputs[name], targets[name], masks.get(name))
            if n:
                loss = task.loss(outputs[name], targets[name], masks.get(name))
                state["sums"][0, i] += float(loss) * n
                state["sums"][1, i] += n
            task.update_metrics(state["metrics"][name], outputs[name], targets[name],
                                masks.get(name))

    def on_validation_epoch_end(self) -> None:
        """Log ``val/loss/<task>``, ``val/loss`` and ``val/<task>/<metric>``."""
        state = self._val_state
        if state is None:
            return
        sums = state["sums"].to(self.device)
        ranks = engine.world_size()
        if ranks > 1:
            sums = engine.average_across_ranks(sums)
        sums = sums.cpu()
        logs: dict[str, float] = {}
        for i, name in enumerate(self.task_names):
            logs[f"val/loss/{name}"] = float(sums[0, i] / sums[1, i]) if sums[1, i] else math.nan
        main = [logs[f"val/loss/{n}"] for n in self.main_tasks]
        finite = [v for v in main if not math.isnan(v)]
        logs["val/loss"] = sum(finite) if finite else math.nan
        metric_logs = {
            f"val/{name}/{metric}": float(m.compute())
            for name, ms in state["metrics"].items() for metric, m in ms.items()
        }
        self.log_dict(logs, on_epoch=True)
        if metric_logs:  # computed on each rank's shard: averaged over the ranks
            self.log_dict(metric_logs, on_epoch=True, sync_dist=ranks > 1)
        self._val_state = None

    # -- prediction -------------------------------------------------------------------
    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Each task's prediction in its natural form (``task.prediction``)."""
        if isinstance(batch, Mapping) or (
            isinstance(batch, (tuple, list)) and len(batch) in (2, 3)
            and isinstance(batch[1], Mapping)
        ):
            inputs = split_batch(batch)[0]  # (inputs, targets[, masks]): targets ignored
        elif isinstance(batch, (tuple, list)) and len(batch) == 1:
            inputs = batch[0]  # (inputs,), as a TensorDataset of inputs gives
        else:
            inputs = batch
        outputs = self(inputs)
        _check_outputs(outputs, self.task_names)
        return {n: t.prediction(outputs[n]).detach() for n, t in self.tasks.items()}
