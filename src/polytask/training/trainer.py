"""The Trainer: fit and evaluate a multi-task model with any balancer."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..balancing import Balancer
from ..balancing import get as get_balancer
from ..balancing.penalty import attach as attach_penalty
from ..errors import PolytaskError
from ..models import MultiTaskModel
from ..tasks import Task, as_task_dict
from .batches import check_targets, split_batch, to_device
from .callbacks import Callback, CSVLogger, TensorBoardLogger, tensorboard_available
from .seeding import rng_state, seed_everything, set_rng_state

Metrics = dict[str, dict[str, float]]


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
        balancer: a :class:`~polytask.balancing.Balancer` or a registered name.
        optimizer: an optimizer over the model's parameters, or a factory
            ``params -> optimizer``; default Adam(lr=1e-3). The balancer's own
            learnable parameters (``balancer.extra_parameters()``) are added as a
            parameter group when the Trainer builds the optimizer.
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
    """

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
    ) -> None:
        self.tasks = as_task_dict(tasks)
        self.task_names = list(self.tasks)
        self.device = torch.device(
            device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.model = model.to(self.device)
        self.balancer = get_balancer(balancer) if isinstance(balancer, str) else balancer
        self.balancer = attach_penalty(self.balancer, model)  # architecture penalties, if any
        self.balancer.to(self.device)
        if shared_params is not None:
            self.shared_params = list(shared_params)
        elif isinstance(model, MultiTaskModel):
            self.shared_params = list(model.shared_parameters())
        else:
            raise PolytaskError("give shared_params=... for a model that is not a MultiTaskModel")
        self.balancer.prepare(self.task_names)  # per-task state before the optimizer exists
        extra = [p for p in self.balancer.extra_parameters() if p.requires_grad]
        if optimizer is None or not isinstance(optimizer, torch.optim.Optimizer):
            factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
            groups: list[dict[str, Any]] = [{"params": list(self.model.parameters())}]
            if extra:
                groups.append({"params": extra})
            optimizer = factory(groups)
        self.optimizer = optimizer
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.callbacks = list(callbacks)
        if self.log_dir is not None:
            self.callbacks.insert(0, CSVLogger(self.log_dir))
            if tensorboard_available():
                self.callbacks.append(TensorBoardLogger(self.log_dir / "tensorboard"))
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

    # -- configuration ----------------------------------------------------------------
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
        inputs, targets, masks = split_batch(batch)
        check_targets(self.task_names, targets)
        inputs, targets, masks = (to_device(v, self.device) for v in (inputs, targets, masks))
        outputs = self.model(inputs)
        _check_outputs(outputs, self.task_names)
        losses = self.compute_losses(outputs, targets, masks)
        self.optimizer.zero_grad(set_to_none=True)
        result = self.balancer.backward(
            losses,
            shared_params=self.shared_params,
            representation=getattr(self.model, "shared_representation", None),
        )
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return losses, result, outputs, (targets, masks)

    # -- loops ------------------------------------------------------------------------
    def fit(
        self,
        train_loader: Iterable,
        epochs: int,
        val_loader: Iterable | None = None,
        resume: bool = False,
    ) -> list[dict[str, Any]]:
        """Train for ``epochs`` epochs (in total, counting resumed ones).

        With ``resume=True`` and a ``last.pt`` in ``log_dir``, training continues from
        it and ends exactly where an uninterrupted run would. Returns the history:
        one dict per epoch with ``train`` and ``val`` logs.
        """
        if self.seed is not None:
            seed_everything(self.seed)
        self.balancer.attach(
            model=self.model, optimizer=self.optimizer, loader=train_loader,
            tasks=self.tasks, primary=self.main_tasks, device=self.device,
        )
        attach_loader = getattr(train_loader, "attach_trainer", None)
        if callable(attach_loader):  # loaders that check or follow the run (multidataset)
            attach_loader(self)
        if resume:
            if self.log_dir is None:
                raise PolytaskError("resume=True needs a log_dir")
            if (self.log_dir / "last.pt").exists():
                self.load_checkpoint(self.log_dir / "last.pt")
        for cb in self.callbacks:
            cb.on_fit_start(self)
        for epoch in range(self.epochs_done, epochs):
            for cb in self.callbacks:
                cb.on_epoch_start(self, epoch)
            if isinstance(self.model, MultiTaskModel):  # schedules (AdaShare, Learning to Branch)
                self.model.on_epoch_start(epoch)
            start = time.perf_counter()
            train_logs = self._train_epoch(train_loader, epoch, epochs)
            train_logs["time"] = time.perf_counter() - start
            logs: dict[str, Any] = {"train": train_logs}
            if val_loader is not None:
                logs["val"] = self._flatten(self.evaluate(val_loader))
            self.balancer.on_epoch_end(
                epoch, {n: train_logs[f"loss/{n}"] for n in self.task_names}
            )
            self.epochs_done = epoch + 1
            improved = self._update_best(logs, epoch)
            self.history.append({"epoch": epoch, **logs})
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, logs)
            if self.log_dir is not None:
                if improved:
                    self.save_checkpoint(self.log_dir / "best.pt")
                self.save_checkpoint(self.log_dir / "last.pt")
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    def _train_epoch(self, loader: Iterable, epoch: int, epochs: int) -> dict[str, float]:
        self.model.train()
        k = len(self.task_names)
        loss_sum = torch.zeros(k, dtype=torch.float64)
        weight_sum = torch.zeros(k, dtype=torch.float64)
        batches = 0
        metrics = {n: t.metrics() for n, t in self.tasks.items()} if self.train_metrics else None
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not self.progress, leave=False
        )
        for batch in bar:
            losses, result, outputs, (targets, masks) = self.train_step(batch)
            values = torch.stack([losses[n].detach() for n in self.task_names]).double().cpu()
            weights = torch.tensor([result.weights.get(n, 1.0) for n in self.task_names])
            loss_sum += values
            weight_sum += weights.double()
            batches += 1
            self.global_step += 1
            if metrics is not None:
                for name, task in self.tasks.items():
                    task.update_metrics(metrics[name], outputs[name], targets[name],
                                        masks.get(name))
            if self.callbacks:
                vals = values.tolist()
                record = {f"loss/{n}": v for n, v in zip(self.task_names, vals)}
                record.update(
                    {f"weight/{n}": w for n, w in zip(self.task_names, weights.tolist())}
                )
                record.update(result.extras)
                for cb in self.callbacks:
                    cb.on_step_end(self, self.global_step, record)
            if self.progress and batches % 20 == 0:
                bar.set_postfix(loss=f"{float(loss_sum.sum()) / batches:.4f}")
        if batches == 0:
            raise PolytaskError("the training loader yielded no batch")
        logs = {f"loss/{n}": float(loss_sum[i] / batches) for i, n in enumerate(self.task_names)}
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
        for batch in loader:
            inputs, targets, masks = split_batch(batch)
            check_targets(self.task_names, targets)
            inputs, targets, masks = (to_device(v, self.device) for v in (inputs, targets, masks))
            outputs = self.model(inputs)
            _check_outputs(outputs, self.task_names)
            for name, task in self.tasks.items():
                _, _, labeled = task.prepare(outputs[name], targets[name], masks.get(name))
                n_labeled = int(labeled.reshape(labeled.shape[0], -1).any(dim=1).sum())
                if n_labeled:
                    loss = task.loss(outputs[name], targets[name], masks.get(name))
                    loss_sum[name] += float(loss) * n_labeled
                    count[name] += n_labeled
                task.update_metrics(metrics[name], outputs[name], targets[name], masks.get(name))
        self.model.train(was_training)
        results: Metrics = {}
        for name, ms in metrics.items():
            results[name] = {m: metric.compute() for m, metric in ms.items()}
            results[name]["loss"] = loss_sum[name] / count[name] if count[name] else math.nan
        return results

    @staticmethod
    def _flatten(results: Metrics) -> dict[str, float]:
        flat = {}
        for task, values in results.items():
            for metric, value in values.items():
                key = f"loss/{task}" if metric == "loss" else f"{task}/{metric}"
                flat[key] = value
        return flat

    def _update_best(self, logs: dict[str, Any], epoch: int) -> bool:
        split = logs.get("val", logs["train"])
        if self.monitor == "loss":
            score = sum(split[f"loss/{n}"] for n in self.main_tasks)
        else:
            if self.monitor not in split:
                raise PolytaskError(
                    f"monitor {self.monitor!r} is not logged; give a val_loader (or "
                    "train_metrics=True)"
                )
            score = split[self.monitor]
        if math.isnan(score):
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
        """Everything needed to resume: model, optimizer, balancer, RNGs, counters."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "balancer": self.balancer.state_dict(),
            "epochs_done": self.epochs_done,
            "global_step": self.global_step,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.balancer.load_state_dict(state["balancer"])
        self.epochs_done = state["epochs_done"]
        self.global_step = state["global_step"]
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.history = list(state["history"])
        set_rng_state(state["rng"])

    def save_checkpoint(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save_checkpoint`."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.load_state_dict(state)

    def load_best(self) -> None:
        """Load the model weights of the best epoch (needs ``log_dir``)."""
        if self.log_dir is None or not (self.log_dir / "best.pt").exists():
            raise PolytaskError("no best checkpoint: train with a log_dir first")
        state = torch.load(self.log_dir / "best.pt", map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
