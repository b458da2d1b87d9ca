"""Normalising a user's task declaration into a name -> Task dict."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from ..errors import PolytaskError, TargetMissingError, UnknownNameError
from .base import Task


def as_task_dict(tasks: Mapping[str, Task] | Iterable[Task]) -> dict[str, Task]:
    """Return ``{name: task}`` from a mapping or a sequence of tasks.

    Raises on an empty set, duplicated names, or a mapping key that differs from the
    task's own name.
    """
    if isinstance(tasks, Mapping):
        result = dict(tasks)
        for key, task in result.items():
            if not isinstance(task, Task):
                raise PolytaskError(f"tasks[{key!r}] is {type(task).__name__}, not a Task")
            if key != task.name:
                raise PolytaskError(f"tasks[{key!r}] holds a task named {task.name!r}")
    else:
        result = {}
        for task in tasks:
            if not isinstance(task, Task):
                raise PolytaskError(f"{task!r} is not a Task")
            if task.name in result:
                raise PolytaskError(f"two tasks are named {task.name!r}")
            result[task.name] = task
    if not result:
        raise PolytaskError("the task set is empty: declare at least one task")
    return result


def check_batch_keys(
    task_names: Iterable[str],
    targets: Mapping[str, Any],
    masks: Mapping[str, Any] | None = None,
) -> None:
    """Raise naming the task whose target is missing (and the keys present), or a mask
    key that is no task (a misspelt mask would otherwise be ignored and the task
    trained on every label)."""
    names = list(task_names)
    if not isinstance(targets, Mapping):
        raise PolytaskError(
            f"targets must be a dict {{task: tensor}}, got {type(targets).__name__}"
        )
    for name in names:
        if name not in targets:
            raise TargetMissingError(
                f"the batch has no target for task {name!r}; target keys present: "
                f"{sorted(targets)}"
            )
    if masks:
        if not isinstance(masks, Mapping):
            raise PolytaskError(
                f"masks must be a dict {{task: tensor}}, got {type(masks).__name__}"
            )
        unknown = [key for key in masks if key not in names]
        if unknown:
            close = {k: difflib.get_close_matches(str(k), names, n=1) for k in unknown}
            hint = "; ".join(f"{k!r} -> did you mean {v[0]!r}?" for k, v in close.items() if v)
            raise UnknownNameError(
                f"mask key(s) {unknown} name no task; tasks are {names}"
                + (f" ({hint})" if hint else "")
            )


def compute_losses(
    tasks: Mapping[str, Task] | Iterable[Task],
    outputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Every task's loss on a batch, ``{task: scalar}``, after checking the batch:
    a missing output or target, or a mask key that is no task, raises naming it.

    The one-line loss step of a plain training loop (the Trainer uses it too).
    """
    tasks = as_task_dict(tasks)
    check_batch_keys(tasks, targets, masks)
    if not isinstance(outputs, Mapping):
        raise PolytaskError(
            f"the model must return a dict {{task: output}}, got {type(outputs).__name__}"
        )
    missing = [n for n in tasks if n not in outputs]
    if missing:
        raise PolytaskError(
            f"the model returned no output for task(s) {missing}; outputs: {sorted(outputs)}"
        )
    masks = masks or {}
    return {name: task.loss(outputs[name], targets[name], masks.get(name))
            for name, task in tasks.items()}
