"""Normalising a user's task declaration into a name -> Task dict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import PolytaskError
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
