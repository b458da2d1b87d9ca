"""Predictions in each task's natural form, and counting labeled samples.

>>> preds = polytask.training.predict(model, tasks, x_test)      # or Trainer.predict
>>> preds["click"]          # (N,) probabilities of a Binary task
>>> preds["dwell_time"]     # (N,) values of a Regression task

The natural form is what :meth:`polytask.tasks.Task.prediction` returns:
probabilities for :class:`~polytask.tasks.Binary` (N,), :class:`~polytask.tasks.Multiclass`
(N, C) and :class:`~polytask.tasks.MultiLabel` (N, L); values for
:class:`~polytask.tasks.Regression` ((N,) for ``dim=1``, else (N, dim)). These are
also what the task's metric objects take: ``task.metrics()["auc"].update(p, y)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Task, as_task_dict
from .batches import to_device


def labeled_samples(task: Task, output: Tensor, target: Tensor, mask: Tensor | None) -> int:
    """How many samples of a batch have a label for ``task`` (any entry labeled).

    The batch was checked by ``task.loss`` already; with no mask this skips the label
    checks (the Trainer calls it on every batch)."""
    if mask is not None or type(task)._shape_output is Task._shape_output:
        _, _, labeled = task.prepare(output.detach(), target, mask)
    else:
        _, shaped = task._shape_output(output.detach(), target)
        labeled = ~task._missing(shaped)
    if labeled.dim() == 1:
        return int(labeled.sum())
    return int(labeled.reshape(labeled.shape[0], -1).any(dim=1).sum())


def _batches(data: Any) -> Iterable[Any]:
    """The input batches in ``data``: one tensor (or dict of tensors), or an iterable
    of batches (inputs, ``(inputs, targets[, masks])`` or ``{"inputs": ...}``)."""
    if isinstance(data, Tensor) or (isinstance(data, Mapping) and "inputs" not in data):
        yield data
        return
    if isinstance(data, Mapping):
        yield data["inputs"]
        return
    for batch in data:
        if isinstance(batch, Mapping) and "inputs" in batch:
            yield batch["inputs"]
        elif (isinstance(batch, Sequence) and not isinstance(batch, Tensor)
              and len(batch) in (2, 3) and isinstance(batch[1], Mapping)):
            yield batch[0]
        else:
            yield batch


@torch.no_grad()
def predict(
    model: nn.Module,
    tasks: Mapping[str, Task] | Iterable[Task],
    data: Any,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Run ``model`` in eval mode over ``data``; ``{task: predictions}`` on the CPU.

    Args:
        model: a module returning ``{task: output}``.
        tasks: the task specs (they give each output's natural form).
        data: one input batch, or an iterable of batches (a DataLoader of
            ``(inputs, targets)`` works; targets are ignored).
        device: where to run (default: the model's device).
    """
    tasks = as_task_dict(tasks)
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {name: [] for name in tasks}
    try:
        for inputs in _batches(data):
            outputs = model(to_device(inputs, torch.device(device)))
            if not isinstance(outputs, Mapping):
                raise PolytaskError(
                    f"the model must return a dict {{task: output}}, got {type(outputs).__name__}"
                )
            for name, task in tasks.items():
                if name not in outputs:
                    raise PolytaskError(
                        f"the model returned no output for task {name!r}; outputs: "
                        f"{sorted(outputs)}"
                    )
                parts[name].append(task.prediction(outputs[name].detach()).cpu())
    finally:
        model.train(was_training)
    if not any(parts.values()):
        raise PolytaskError("predict: the data yielded no batch")
    return {name: torch.cat(chunks) for name, chunks in parts.items()}
