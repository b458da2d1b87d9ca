"""Optimizer parameter groups from a model's task split: per-task learning rates.

>>> groups = param_groups(model, balancer, lr=1e-3, task_lr={"ctr": 1e-2},
...                       task_options={"cvr": {"weight_decay": 1e-4}})
>>> optimizer = torch.optim.Adam(groups)

Each group carries a ``"name"`` key (``"shared"``, ``"task:<name>"``, ``"other"``,
``"balancer"``) so schedulers and logs can find it; PyTorch optimizers keep extra keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from ..errors import PolytaskError


def _check_tasks(what: str, given: Mapping[str, Any] | None, tasks: Iterable[str]) -> None:
    if not given:
        return
    unknown = set(given) - set(tasks)
    if unknown:
        raise PolytaskError(f"{what} names unknown task(s) {sorted(unknown)}; tasks are "
                            f"{list(tasks)}")


def param_groups(
    model: nn.Module,
    balancer: nn.Module | None = None,
    lr: float | None = None,
    task_lr: Mapping[str, float] | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    shared_options: Mapping[str, Any] | None = None,
    balancer_lr: float | None = None,
    balancer_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups: the shared part, each task's own part, the rest, the balancer's.

    Args:
        model: a :class:`~polytask.models.MultiTaskModel` (``task_names``,
            ``shared_parameters()``, ``task_parameters(name)``).
        balancer: optional; its ``extra_parameters()`` (e.g. UW's log-variances) get a
            group of their own (it is prepared for the model's tasks first).
        lr: the default learning rate (left to the optimizer's default when None).
        task_lr: ``{task: lr}`` for a task's own parameters (its head, its tower).
        task_options: ``{task: {option: value}}`` for a task's group (weight_decay,
            momentum, betas, ...).
        shared_options: options of the shared group (and of the "other" group).
        balancer_lr / balancer_options: learning rate and options of the balancer group.

    A parameter is put in exactly one group: shared first, then tasks in order, then
    every model parameter not yet placed ("other": gates, task-pair units, ...).
    """
    names = list(getattr(model, "task_names", ()))
    if not names or not hasattr(model, "shared_parameters"):
        raise PolytaskError("param_groups needs a MultiTaskModel (task_names, shared_parameters)")
    _check_tasks("task_lr", task_lr, names)
    _check_tasks("task_options", task_options, names)
    placed: set[int] = set()

    def take(params: Iterable[Tensor]) -> list[Tensor]:
        out = []
        for p in params:
            if p.requires_grad and id(p) not in placed:
                placed.add(id(p))
                out.append(p)
        return out

    def group(name: str, params: list[Tensor], rate: float | None,
              options: Mapping[str, Any] | None) -> dict[str, Any]:
        g: dict[str, Any] = {"params": params, "name": name, **dict(options or {})}
        if "params" in (options or {}):
            raise PolytaskError(f"options of group {name!r} may not set 'params'")
        if rate is not None:
            g["lr"] = rate
        elif lr is not None:
            g.setdefault("lr", lr)
        return g

    groups = []
    shared = take(model.shared_parameters())
    if shared:
        groups.append(group("shared", shared, None, shared_options))
    for name in names:
        own = take(model.task_parameters(name))
        if own:
            groups.append(group(f"task:{name}", own, (task_lr or {}).get(name),
                                (task_options or {}).get(name)))
        elif (task_lr and name in task_lr) or (task_options and name in task_options):
            raise PolytaskError(f"task {name!r} has no parameters of its own to set options on")
    rest = take(model.parameters())
    if rest:
        groups.append(group("other", rest, None, shared_options))
    if balancer is not None:
        if hasattr(balancer, "prepare"):
            balancer.prepare(names)
        extra = take(balancer.extra_parameters())
        if extra:
            groups.append(group("balancer", extra, balancer_lr, balancer_options))
    return groups
