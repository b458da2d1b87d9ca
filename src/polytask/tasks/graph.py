"""Estimates as features: a task's head reading other tasks' predictions.

A task declared ``Task(..., inputs_from=("a", "b"))`` gets a head whose input is the
shared representation (flattened) concatenated with the predictions of tasks ``a`` and
``b`` (``task.predict(output)``, flattened per sample; detached unless
``detach_inputs=False``). Heads run in an order where each task follows the tasks it
reads; a cycle or an unknown name raises an error naming the tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ..errors import PolytaskError
from .base import Task


def sources_of(task: Task) -> tuple[str, ...]:
    """The tasks whose predictions ``task``'s head reads (a lone string is one name)."""
    given = task.inputs_from
    return (given,) if isinstance(given, str) else tuple(given)


def prediction_order(tasks: Mapping[str, Task]) -> list[str]:
    """Task names ordered so that every task comes after the tasks it reads."""
    for name, task in tasks.items():
        for src in sources_of(task):
            if src not in tasks:
                raise PolytaskError(
                    f"task {name!r} reads predictions of unknown task {src!r}; "
                    f"tasks are {list(tasks)}"
                )
            if src == name:
                raise PolytaskError(f"task {name!r} lists itself in inputs_from")
    order: list[str] = []
    state: dict[str, int] = {}  # 1: in progress, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise PolytaskError(f"inputs_from forms a cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for src in sources_of(tasks[name]):
            visit(src, path + [name])
        state[name] = 2
        order.append(name)

    for name in tasks:
        visit(name, [])
    return order


def extra_input_features(tasks: Mapping[str, Task]) -> dict[str, int]:
    """For each task, how many features the predictions it reads add to its head input."""
    prediction_order(tasks)  # validates names and cycles
    return {
        name: sum(tasks[src].out_features for src in sources_of(task))
        for name, task in tasks.items()
    }


def has_inputs_from(tasks: Mapping[str, Task]) -> bool:
    """Whether any task reads another task's predictions."""
    return any(sources_of(t) for t in tasks.values())


def run_heads(
    tasks: Mapping[str, Task],
    heads: Mapping[str, Callable[[Tensor], Tensor]],
    representation: Tensor,
    order: list[str] | None = None,
) -> dict[str, Tensor]:
    """Every head's output, feeding predictions to the heads that read them.

    Heads of tasks without ``inputs_from`` get ``representation`` unchanged; the others
    get ``cat([representation.flatten(1), predictions...], dim=1)``.
    """
    order = order or prediction_order(tasks)
    outputs: dict[str, Tensor] = {}
    flat: Tensor | None = None
    for name in order:
        sources = sources_of(tasks[name])
        if not sources:
            outputs[name] = heads[name](representation)
            continue
        if flat is None:
            flat = representation.reshape(representation.shape[0], -1)
        parts = [flat]
        for src in sources:
            pred = tasks[src].predict(outputs[src]).reshape(flat.shape[0], -1)
            parts.append(pred.detach() if tasks[name].detach_inputs else pred)
        outputs[name] = heads[name](torch.cat(parts, dim=1))
    return {name: outputs[name] for name in tasks}
