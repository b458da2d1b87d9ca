"""From a grouping to models: a :class:`~polytask.models.Branched` spec, or one model
per group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import PolytaskError
from ..models import Backbone, MultiTaskModel, get, spec_from_groups
from ..tasks import Task
from .selection import Grouping, check_groups


def _groups_of(grouping: Grouping | Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    return list(grouping.groups) if isinstance(grouping, Grouping) else [
        (g,) if isinstance(g, str) else tuple(g) for g in grouping
    ]


def grouping_spec(
    grouping: Grouping | Sequence[Sequence[str]],
    task_names: Sequence[str],
    num_stages: int,
    branch_at: int = 0,
):
    """A :class:`~polytask.models.Branched` spec: stages ``< branch_at`` shared by all
    tasks, each group its own copy of the later stages (``branch_at=0``: one network
    per group). A Branched network is a tree, so the groups must be disjoint: for an
    overlapping grouping use :func:`group_models`."""
    groups = check_groups(_groups_of(grouping), list(task_names))
    seen: dict[str, tuple[str, ...]] = {}
    for g in groups:
        for t in g:
            if t in seen:
                raise PolytaskError(
                    f"task {t!r} is in groups {list(seen[t])} and {list(g)}: a Branched spec "
                    "needs disjoint groups; train overlapping groups with group_models()"
                )
            seen[t] = g
    return spec_from_groups(groups, list(task_names), num_stages, branch_at)


def group_models(
    grouping: Grouping | Sequence[Sequence[str]],
    tasks: Mapping[str, Task],
    backbone: Backbone,
    arch: str = "hard",
    **kwargs: Any,
) -> dict[tuple[str, ...], MultiTaskModel]:
    """One model of architecture ``arch`` per group, trained on the group's tasks
    (overlap allowed: a task in two groups is trained in both; its prediction comes
    from the group serving it, ``grouping.served``)."""
    groups = check_groups(_groups_of(grouping), list(tasks))
    return {g: get(arch, tasks={t: tasks[t] for t in g}, backbone=backbone, **kwargs)
            for g in groups}
