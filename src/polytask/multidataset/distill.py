"""Multi-task distillation with teacher annealing (Clark et al., ACL 2019, BAM!).

"BAM! Born-Again Multi-Task Networks for Natural Language Understanding" (Clark,
Luong, Khandelwal, Manning, Le; ACL 2019): a single-task teacher is trained for each
task, then one multi-task student learns from the teachers' predictions. With
*teacher annealing* the student's target is the mixture

    y_t = λ · gold + (1 − λ) · teacher,    λ = step / total_steps (0 → 1),

so the student first imitates its teachers and ends on the gold labels, which lets it
surpass them. For classification the target is the mixed probability vector and the
loss the cross-entropy to it; for regression the mixed value under the task's own
loss; for binary tasks the mixed probability under binary cross-entropy.

Teachers run once per training sample: :func:`teacher_outputs` caches their
predictions (probabilities, or values) for every sample of each task's dataset, and
the loader mixes cached predictions with gold labels batch by batch.

Where polytask differs: BAM's reference code (google-research/bam) was not
available to check here; polytask follows the paper's formula with λ linear in the
training step, reached at the loader's last step (``epochs × steps_per_epoch``).
Gold labels that are missing stay missing (the student gets no target there).

Extra cost: one teacher forward per training sample, once, before training; per step,
the mixing of the batch's cached predictions (O(B·C)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LabelRangeError, PolytaskError, ShapeMismatchError
from ..metrics import Metric
from ..tasks import Binary, Multiclass, Regression, Task, as_task_dict
from ..training.batches import to_device

if TYPE_CHECKING:
    from .loader import MultiDatasetLoader


@dataclass(frozen=True, eq=False)
class SoftMulticlass(Multiclass):
    """A :class:`~polytask.tasks.Multiclass` task that also takes soft targets.

    The target is either integer labels (N,) — then it behaves exactly as
    ``Multiclass`` — or class probabilities (N, num_classes), float, rows summing to 1
    (a row of NaN marks a missing label); the loss is then the cross-entropy to the
    target distribution, −Σ_c y_c log softmax(z)_c, and metrics compare the argmax of
    the target. Used as a distillation student's task (:func:`student_tasks`).
    """

    kind = "multiclass"

    def _is_soft(self, target: Tensor) -> bool:
        return torch.is_floating_point(target) and target.dim() == 2

    def prepare(
        self, output: Tensor, target: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if not self._is_soft(target):
            return super().prepare(output, target, mask)
        n = output.shape[0]
        expected = (n, self.num_classes)
        if output.shape != expected or target.shape != expected:
            raise ShapeMismatchError(
                f"task {self.name!r}: soft targets need output and target {expected}; got "
                f"output {tuple(output.shape)} and target {tuple(target.shape)}"
            )
        labeled = ~torch.isnan(target).any(dim=1)
        if mask is not None:
            labeled = labeled & mask.to(device=labeled.device, dtype=torch.bool).reshape(n)
        rows = target[labeled]
        if rows.numel():
            bad = (rows < -1e-6).any(dim=1) | ((rows.sum(dim=1) - 1).abs() > 1e-3)
            if bool(bad.any()):
                raise LabelRangeError(
                    f"task {self.name!r}: a soft target row is not a probability vector: "
                    f"{rows[bad][0].tolist()}"
                )
        return output, target, labeled

    def loss(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        if not self._is_soft(target):
            return super().loss(output, target, mask)
        output, target, labeled = self.prepare(output, target, mask)
        safe = torch.where(labeled[:, None], target, torch.zeros_like(target))
        per_sample = -(safe.to(output.dtype) * F.log_softmax(output, dim=1)).sum(dim=1)
        weights = labeled.to(per_sample.dtype)
        return (per_sample * weights).sum() / weights.sum().clamp(min=1.0)

    def update_metrics(
        self,
        metrics: Mapping[str, Metric],
        output: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
    ) -> None:
        if self._is_soft(target):
            _, _, labeled = self.prepare(output.detach(), target, mask)
            hard = torch.where(
                labeled, target.nan_to_num(0.0).argmax(dim=1), torch.full_like(labeled, -1,
                                                                               dtype=torch.long)
            )
            return super().update_metrics(metrics, output, hard, None)
        return super().update_metrics(metrics, output, target, mask)


def student_tasks(tasks: Mapping[str, Task] | list[Task]) -> dict[str, Task]:
    """The student's tasks: every :class:`Multiclass` becomes a :class:`SoftMulticlass`
    (same name, classes, head and flags); binary and regression tasks already take
    the mixed targets and are kept."""
    out: dict[str, Task] = {}
    for name, task in as_task_dict(tasks).items():
        if type(task) is Multiclass:
            out[name] = SoftMulticlass(
                name, num_classes=task.num_classes, label_smoothing=task.label_smoothing,
                auxiliary=task.auxiliary, head=task.head, inputs_from=task.inputs_from,
                detach_inputs=task.detach_inputs,
            )
        elif isinstance(task, (SoftMulticlass, Binary, Regression)):
            out[name] = task
        else:
            raise PolytaskError(
                f"task {name!r}: distillation supports multiclass, binary and regression "
                f"tasks, not {type(task).__name__}"
            )
    return out


@torch.no_grad()
def teacher_outputs(
    teachers: Mapping[str, nn.Module],
    loader: MultiDatasetLoader,
    tasks: Mapping[str, Task] | list[Task],
    *,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> dict[str, Tensor]:
    """Each teacher's predictions on every training sample of its task's dataset.

    ``teachers[task]`` is a model returning ``{task: output}`` (a single-task model);
    it runs once per sample of the dataset ``loader`` maps ``task`` to, in eval mode.
    Returns ``{task: predictions (N_d, ...)}``: class probabilities (softmax) for
    multiclass tasks, ``task.predict`` otherwise (probabilities for binary, values for
    regression), on the CPU.
    """
    specs = as_task_dict(tasks)
    out: dict[str, Tensor] = {}
    for task, teacher in teachers.items():
        if task not in loader.dataset_of:
            raise PolytaskError(
                f"teacher for task {task!r}, which has no dataset; tasks: {loader.task_names}"
            )
        if task not in specs:
            raise PolytaskError(f"teacher for task {task!r}, which is not among {list(specs)}")
        ds = next(d for d in loader.datasets if d.name == loader.dataset_of[task])
        dev = torch.device(device) if device is not None else next(
            (p.device for p in teacher.parameters()), torch.device("cpu")
        )
        was_training = teacher.training
        teacher.eval()
        chunks = []
        for start in range(0, len(ds), batch_size):
            x = to_device(ds.inputs[start : start + batch_size], dev)
            if loader.inputs_mode == "by_dataset":
                x = {ds.name: x}
            result = teacher(x)
            if not isinstance(result, Mapping) or task not in result:
                raise PolytaskError(f"the teacher of task {task!r} returned no output for it")
            spec = specs[task]
            if isinstance(spec, Multiclass):  # predict() gives logits: probabilities here
                pred = torch.softmax(result[task].float(), dim=-1)
            else:
                pred = spec.predict(result[task]).float()
            chunks.append(pred.cpu())
        teacher.train(was_training)
        out[task] = torch.cat(chunks)
    return out


class Distillation:
    """Teacher-annealed targets for a :class:`MultiDatasetLoader` (BAM; see the module).

    Args:
        tasks: the (original) task specs of the distilled tasks.
        outputs: :func:`teacher_outputs`, ``{task: cached predictions}``.
        epochs: the training epochs; λ reaches 1 at the loader's last step
            (``epochs × loader.steps_per_epoch``).
        anneal: teacher annealing (default); ``False`` keeps ``gold_weight`` fixed.
        gold_weight: λ when ``anneal=False`` (0: pure distillation).
    """

    def __init__(
        self,
        tasks: Mapping[str, Task] | list[Task],
        outputs: Mapping[str, Tensor],
        epochs: int,
        *,
        anneal: bool = True,
        gold_weight: float = 0.0,
    ) -> None:
        specs = as_task_dict(tasks)
        unknown = [t for t in outputs if t not in specs]
        if unknown:
            raise PolytaskError(f"teacher outputs for unknown task(s) {unknown}")
        if not isinstance(epochs, int) or epochs < 1:
            raise PolytaskError(f"distillation: epochs must be an integer >= 1, got {epochs!r}")
        if not 0.0 <= gold_weight <= 1.0:
            raise PolytaskError(f"distillation: gold_weight must be in [0, 1], got {gold_weight}")
        self.tasks = {t: specs[t] for t in outputs}
        self.outputs = dict(outputs)
        self.task_names = list(outputs)
        self.epochs = epochs
        self.anneal = anneal
        self.gold_weight = float(gold_weight)
        self.total_steps = 0

    def bind(self, loader: MultiDatasetLoader) -> None:
        """Check the cached outputs against the loader's datasets (the loader calls it)."""
        sizes = dict(zip(loader.names, loader.sizes))
        for task, pred in self.outputs.items():
            if task not in loader.dataset_of:
                raise PolytaskError(f"distilled task {task!r} has no dataset in the loader")
            n = sizes[loader.dataset_of[task]]
            if pred.shape[0] != n:
                raise ShapeMismatchError(
                    f"teacher outputs of task {task!r}: {pred.shape[0]} rows for the "
                    f"{n} samples of dataset {loader.dataset_of[task]!r}"
                )
        self.total_steps = self.epochs * loader.steps_per_epoch

    def gold_fraction(self, step: int) -> float:
        """λ at global step ``step``: step / (total_steps − 1), clipped to [0, 1]."""
        if not self.anneal:
            return self.gold_weight
        last = max(1, self.total_steps - 1)
        return min(1.0, max(0.0, step / last))

    def template(self, task: str) -> tuple[tuple[int, ...], torch.dtype]:
        """Per-sample shape and dtype of the mixed target of ``task``."""
        spec = self.tasks[task]
        if isinstance(spec, Multiclass):
            return (spec.num_classes,), torch.float32
        return tuple(self.outputs[task].shape[1:]), torch.float32

    def targets(self, task: str, gold: Tensor, idx: Tensor, step: int) -> Tensor:
        """The mixed target of ``task`` for the samples ``idx`` (with gold labels
        ``gold``) at global step ``step``."""
        lam = self.gold_fraction(step)
        spec = self.tasks[task]
        teacher = self.outputs[task][idx]
        missing = spec._missing(gold)  # noqa: SLF001  (the kind's missing-label rule)
        if isinstance(spec, Multiclass):
            missing = missing.reshape(-1)
            labels = torch.where(missing, torch.zeros_like(gold), gold).long().reshape(-1)
            one_hot = F.one_hot(labels, spec.num_classes).float()
            mixed = lam * one_hot + (1.0 - lam) * teacher.reshape(one_hot.shape)
            mixed[missing] = float("nan")
            return mixed
        gold_f = gold.float().reshape(teacher.shape)
        mixed = lam * torch.where(missing.reshape(teacher.shape), 0.0, gold_f) + (
            1.0 - lam
        ) * teacher
        return torch.where(missing.reshape(teacher.shape), float("nan"), mixed)
