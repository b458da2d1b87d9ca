"""Branched multi-task networks: a tree of shared and task-specific stages from a spec."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Task, as_task_dict
from .base import MultiTaskModel
from .layers import (
    StageFactory,
    build_heads,
    channels_resolver,
    make_stage_list,
    modules_parameters,
    run_stages,
    size_resolver,
    stage_kwargs,
)
from .registry import Backbone, register

Spec = tuple[tuple[tuple[str, ...], ...], ...]


def normalize_spec(
    spec: Sequence[Sequence[Sequence[str]]], task_names: Sequence[str], num_stages: int
) -> Spec:
    """Check a branching spec and return it as nested tuples.

    A spec lists, for every stage, the groups of tasks that share one copy of it:
    ``[[("a", "b", "c")], [("a", "b"), ("c",)]]`` shares stage 0 by all three tasks and
    gives stage 1 one copy for a and b and one for c. Each stage's groups must partition
    the tasks, and each group must lie inside one group of the stage before (a tree).
    """
    if len(spec) != num_stages:
        raise PolytaskError(f"the spec has {len(spec)} stages but the backbone has {num_stages}")
    names = set(task_names)
    result = []
    for i, groups in enumerate(spec):
        if isinstance(groups, str) or not groups:
            raise PolytaskError(f"stage {i} of the spec must be a list of task groups")
        norm = []
        seen: set[str] = set()
        for g in groups:
            group = (g,) if isinstance(g, str) else tuple(g)
            if not group:
                raise PolytaskError(f"stage {i} of the spec has an empty group")
            unknown = set(group) - names
            if unknown:
                raise PolytaskError(
                    f"stage {i} of the spec names unknown tasks {sorted(unknown)}; "
                    f"tasks are {list(task_names)}"
                )
            twice = seen & set(group)
            if twice:
                raise PolytaskError(f"stage {i} of the spec puts tasks {sorted(twice)} twice")
            seen |= set(group)
            norm.append(group)
        missing = names - seen
        if missing:
            raise PolytaskError(f"stage {i} of the spec leaves out tasks {sorted(missing)}")
        if result:
            for group in norm:
                if not any(set(group) <= set(parent) for parent in result[-1]):
                    raise PolytaskError(
                        f"stage {i}: group {list(group)} spans several branches of stage "
                        f"{i - 1} {[list(p) for p in result[-1]]}; a branch cannot merge"
                    )
        result.append(tuple(norm))
    return tuple(result)


def spec_from_groups(
    groups: Sequence[Sequence[str]], task_names: Sequence[str], num_stages: int, branch_at: int
) -> Spec:
    """A spec sharing stages ``< branch_at`` by all tasks and giving each group of a task
    grouping (e.g. from task-affinity grouping) its own copy of the later stages."""
    if not 0 <= branch_at <= num_stages:
        raise PolytaskError(f"branch_at={branch_at} outside 0..{num_stages}")
    everyone = (tuple(task_names),)
    groups_t = tuple(tuple(g) for g in groups)
    return normalize_spec(
        [everyone if i < branch_at else groups_t for i in range(num_stages)],
        task_names, num_stages,
    )


class Branched(MultiTaskModel):
    """A branched multi-task network from a spec (Vandenhende, Georgoulis, De
    Brabandere & Van Gool, BMVC 2020, "Branched Multi-Task Networks: Deciding What
    Layers To Share").

    The spec (see :func:`normalize_spec`) says which tasks share each stage: every
    group of a stage gets its own copy of that stage (a fresh one from
    ``make_stages``), fed by the copy of the group it branched from. A spec with every
    task in one group at every stage is hard sharing; one group per task everywhere is
    independent networks. :meth:`from_groups` turns a task grouping into a model.

    Parameter split: a stage copy used by two or more tasks is shared (shared means
    "reached by more than one task", not necessarily all); a copy used by one task and
    the heads are that task's. The shared representation exists when the tree is hard
    sharing up to a stage and fully task-specific after it (then every shared
    parameter acts through that stage's output); otherwise it is None.

    Cost relative to hard sharing: stage ``l`` is run and stored once per group, so
    parameters and compute are ``Σ_l groups_l · cost_l`` against ``Σ_l cost_l``.

    Args:
        make_stages: returns a fresh list of stages (called once per copy needed).
        tasks: the task specs.
        spec: the branching spec.
        out_features / heads / example_input: the last stage's flattened output size
            for default heads, user heads, or a batch to infer it.
    """

    def __init__(
        self,
        make_stages: StageFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        spec: Sequence[Sequence[Sequence[str]]],
        out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)
        first = make_stage_list(make_stages)
        self.spec = normalize_spec(spec, self.task_names, len(first))
        copies = [first] + [
            make_stage_list(make_stages) for _ in range(max(len(g) for g in self.spec) - 1)
        ]
        self.nodes = nn.ModuleDict()
        self.parents: list[list[int]] = []
        for i, groups in enumerate(self.spec):
            parents = []
            for j, group in enumerate(groups):
                self.nodes[f"{i}_{j}"] = copies[j][i]
                if i:
                    parents.append(next(p for p, pg in enumerate(self.spec[i - 1])
                                        if set(group) <= set(pg)))
            self.parents.append(parents)
        self._rep_stage = self._representation_stage()
        self.heads = build_heads(
            self.tasks, heads,
            size_resolver(out_features, example_input, lambda x: run_stages(first, x),
                          [first], "the last stage's output"),
            channels_resolver(example_input, lambda x: run_stages(first, x), [first],
                              "the last stage's output"),
        )

    @classmethod
    def from_groups(
        cls,
        make_stages: StageFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        groups: Sequence[Sequence[str]],
        branch_at: int,
        **kwargs: Any,
    ) -> Branched:
        """Share stages ``< branch_at`` by all tasks; each group gets its own later ones."""
        names = tuple(as_task_dict(tasks))
        num_stages = len(make_stage_list(make_stages))
        spec = spec_from_groups(groups, names, num_stages, branch_at)
        return cls(make_stages, tasks, spec, **kwargs)

    def _representation_stage(self) -> int | None:
        depth = -1
        while depth + 1 < len(self.spec) and len(self.spec[depth + 1]) == 1:
            depth += 1
        if depth < 0:
            return None
        if all(len(g) == 1 for groups in self.spec[depth + 1:] for g in groups):
            return depth
        return None

    def group_of(self, stage: int, name: str) -> int:
        """The index of the group holding task ``name`` at ``stage``."""
        return next(j for j, g in enumerate(self.spec[stage]) if name in g)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        prev: list[Tensor] = []
        self.shared_representation = None
        for i, groups in enumerate(self.spec):
            cur = []
            for j in range(len(groups)):
                inp = x if i == 0 else prev[self.parents[i][j]]
                cur.append(self.nodes[f"{i}_{j}"](inp))
            if i == self._rep_stage:
                self.shared_representation = cur[0]
            prev = cur
        last = len(self.spec) - 1
        return {k: self.heads[k](prev[self.group_of(last, k)]) for k in self.task_names}

    def _nodes_where(self, keep) -> list[nn.Module]:  # noqa: ANN001
        return [self.nodes[f"{i}_{j}"] for i, groups in enumerate(self.spec)
                for j, g in enumerate(groups) if keep(g)]

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return modules_parameters(self._nodes_where(lambda g: len(g) > 1))

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        return modules_parameters([*self._nodes_where(lambda g: g == (name,)), self.heads[name]])


@register("branched")
def _branched(tasks, backbone: Backbone, **kwargs: Any) -> Branched:  # noqa: ANN001
    """Branched (Vandenhende et al., BMVC 2020): a tree of shared/task stages from a spec.

    ``spec=`` or ``groups=`` (+ ``branch_at=``, default the last stage); default: every
    stage shared but the last, which each task gets for itself."""
    kwargs = stage_kwargs(backbone, "branched", kwargs)
    names = tuple(as_task_dict(tasks))
    if "spec" not in kwargs:
        num_stages = len(make_stage_list(backbone.make_stages))
        groups = kwargs.pop("groups", [(k,) for k in names])
        branch_at = kwargs.pop("branch_at", num_stages - 1)
        kwargs["spec"] = spec_from_groups(groups, names, num_stages, branch_at)
    return Branched(backbone.make_stages, tasks, **kwargs)
