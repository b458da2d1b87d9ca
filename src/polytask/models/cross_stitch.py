"""Cross-stitch networks: task columns linearly mixed at chosen stages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Task
from .base import MultiTaskModel
from .layers import (
    StageFactory,
    build_heads,
    channels_resolver,
    check_same_shapes,
    make_stage_list,
    modules_parameters,
    run_stages,
    size_resolver,
    stage_kwargs,
    unique_parameters,
)
from .registry import Backbone, register


def stitch_matrix(k: int, init: str | tuple[float, float]) -> Tensor:
    """A K×K cross-stitch matrix: ``"identity"``, ``"paper"`` (α_S=0.9, α_D=0.1 for two
    tasks; for K tasks each row keeps α_S and spreads 1-α_S evenly), ``"uniform"``
    (every entry 1/K) or an explicit ``(α_S, α_D)``."""
    if init == "identity":
        return torch.eye(k)
    if init == "uniform":
        return torch.full((k, k), 1.0 / k)
    if init == "paper":
        same, diff = 0.9, (0.1 / (k - 1) if k > 1 else 0.0)
    elif isinstance(init, tuple) and len(init) == 2:
        same, diff = float(init[0]), float(init[1])
    else:
        raise PolytaskError(
            f"unknown cross-stitch init {init!r}: 'paper', 'identity', 'uniform' or (α_S, α_D)"
        )
    return torch.full((k, k), diff) + (same - diff) * torch.eye(k)


def _stitch_points(stitch_after: Sequence[int] | None, num_stages: int, what: str) -> list[int]:
    points = list(range(num_stages)) if stitch_after is None else sorted(set(stitch_after))
    bad = [i for i in points if not 0 <= i < num_stages]
    if bad:
        raise PolytaskError(f"{what} {bad} out of range: the backbone has {num_stages} stages")
    return points


class CrossStitch(MultiTaskModel):
    """Cross-stitch networks (Misra, Shrivastava, Gupta & Hebert, CVPR 2016).

    One column (a fresh copy of the user's stages) per task. After each chosen stage a
    cross-stitch unit replaces the K column activations by learned linear
    combinations, ``x̃_k = Σ_j α_kj x_j`` (one K×K matrix per unit). The paper's
    initialisation is ``α_S = 0.9`` on a column's own activation and ``α_D = 0.1`` on
    the other's (two tasks; here 0.1 is split evenly among the K-1 others). With
    ``init="identity"`` the columns start independent. The paper also trains the α with
    a larger learning rate (10²–10³×): use :meth:`stitch_parameters` for their own
    parameter group.

    Parameter split: column stages up to the last cross-stitch unit reach every task
    and are shared, as are the cross-stitch matrices; stages after the last unit and
    the heads belong to their task. No single shared representation.

    Cost relative to hard sharing: K copies of the stages (K× parameters and compute
    of the backbone) plus K² weights and K² multiply-adds per activation per unit.

    Args:
        make_stages: returns a fresh list of stages (called once per task).
        tasks: the task specs.
        stitch_after: stage indices followed by a unit (default every stage).
        init: see :func:`stitch_matrix`.
        out_features / heads / example_input: the last stage's flattened output size
            for default heads, user heads, or a batch to infer the size.
    """

    def __init__(
        self,
        make_stages: StageFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        stitch_after: Sequence[int] | None = None,
        init: str | tuple[float, float] = "paper",
        out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)
        self.columns = nn.ModuleList([make_stage_list(make_stages) for _ in self.task_names])
        num_stages = len(self.columns[0])
        if any(len(c) != num_stages for c in self.columns):
            raise PolytaskError("make_stages() returned different numbers of stages")
        self.stitch_after = _stitch_points(stitch_after, num_stages, "stitch_after")
        k = len(self.task_names)
        self.alphas = nn.ParameterList(
            [nn.Parameter(stitch_matrix(k, init)) for _ in self.stitch_after]
        )
        column = self.columns[0]
        self.heads = build_heads(
            self.tasks, heads,
            size_resolver(out_features, example_input, lambda x: run_stages(column, x),
                          [column], "the last stage's output"),
            channels_resolver(example_input, lambda x: run_stages(column, x), [column],
                              "the last stage's output"),
        )

    def stitch_parameters(self) -> list[nn.Parameter]:
        """The cross-stitch matrices (for a parameter group with a larger learning rate)."""
        return list(self.alphas)

    def columns_forward(self, x: Tensor) -> list[Tensor]:
        """The K column activations after the last stage."""
        feats = [x] * len(self.task_names)
        units = dict(zip(self.stitch_after, self.alphas))
        for i in range(len(self.columns[0])):
            feats = [column[i](f) for column, f in zip(self.columns, feats)]
            if i in units:
                check_same_shapes(feats, f"cross-stitch unit after stage {i}")
                mixed = torch.einsum("kj,j...->k...", units[i], torch.stack(feats))
                feats = list(mixed.unbind(0))
        return feats

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.columns_forward(x)
        return {k: self.heads[k](f) for k, f in zip(self.task_names, feats)}

    def _tail(self, index: int) -> list[nn.Module]:
        last = self.stitch_after[-1] if self.stitch_after else -1
        return list(self.columns[index])[last + 1:]

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        last = self.stitch_after[-1] if self.stitch_after else -1
        return unique_parameters(
            modules_parameters(s for c in self.columns for s in list(c)[: last + 1]),
            self.alphas,
        )

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        index = self.task_names.index(name)
        return modules_parameters([*self._tail(index), self.heads[name]])


@register("cross_stitch")
def _cross_stitch(tasks, backbone: Backbone, **kwargs: Any) -> CrossStitch:  # noqa: ANN001
    """Cross-stitch (Misra et al., CVPR 2016): task columns mixed linearly after stages."""
    kwargs = stage_kwargs(backbone, "cross_stitch", kwargs)
    return CrossStitch(backbone.make_stages, tasks, **kwargs)
