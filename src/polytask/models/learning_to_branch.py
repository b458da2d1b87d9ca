"""Learning to Branch: Gumbel-softmax over each node's parent in a tree super-network."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Task
from .base import MultiTaskModel
from .branched import Branched, Spec, normalize_spec
from .layers import (
    StageFactory,
    build_heads,
    make_stage_list,
    modules_parameters,
    run_stages,
    size_resolver,
    stage_kwargs,
)
from .registry import Backbone, register


class LearningToBranch(MultiTaskModel):
    """Learning to Branch (Guo, Lee & Ulbricht, ICML 2020, "Learning to Branch for
    Multi-Task Learning").

    A super-network of ``nodes_per_stage[l]`` copies of each user stage ``l``. Every
    node of stage ``l ≥ 1`` chooses its parent among the nodes of stage ``l-1`` with a
    categorical distribution (learned logits θ); in the search phase its input is
    ``Σ_i g_i · out_{l-1,i}`` with ``g`` a Gumbel-softmax sample (straight-through
    one-hot by default, temperature ``temperature`` decayed per epoch by
    :meth:`on_epoch_start`); in evaluation mode the argmax parent is used (discrete).
    The last stage has one node per task, read by that task's head. The branching
    logits are trained by the task losses themselves: the method adds no search loss,
    so :meth:`regularization` is the base class's None.

    Retrain phase: :meth:`derive` gives the tree as a :class:`Branched` spec (which
    tasks share each stage); :meth:`finalize` builds that :class:`Branched` model with
    fresh weights.

    Defaults (ours, not confirmed against the paper's code): one node at stage 0, K at
    the others; τ₀ = 5 decayed ×0.965 per epoch.

    Parameter split: the last stage's node ``k``, its branching logits and head ``k``
    belong to task ``k``; every other node and logit is shared (any task may route
    through it).

    Cost relative to hard sharing: search — every node runs: ``Σ_l N_l · cost_l``
    (≈ K× the backbone with the default) plus N_l·N_{l-1} logits; retrain — that of the
    derived :class:`Branched` tree.

    Args:
        make_stages: returns a fresh list of stages (called once per node copy).
        tasks: the task specs.
        nodes_per_stage: nodes of each stage (the last must equal the number of tasks).
        temperature / temperature_decay: Gumbel-softmax τ₀ and per-epoch factor.
        hard: straight-through one-hot samples (True) or soft ones.
        out_features / heads / example_input: as :class:`Branched`.
    """

    def __init__(
        self,
        make_stages: StageFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        nodes_per_stage: Sequence[int] | None = None,
        temperature: float = 5.0,
        temperature_decay: float = 0.965,
        hard: bool = True,
        out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)
        k = len(self.task_names)
        first = make_stage_list(make_stages)
        num = len(first)
        if nodes_per_stage is None:
            nodes_per_stage = [k] if num == 1 else [1] + [k] * (num - 1)
        self.nodes_per_stage = [int(n) for n in nodes_per_stage]
        if len(self.nodes_per_stage) != num or min(self.nodes_per_stage) < 1:
            raise PolytaskError(
                f"nodes_per_stage {self.nodes_per_stage} must give >= 1 node for each of the "
                f"{num} stages"
            )
        if self.nodes_per_stage[-1] != k:
            raise PolytaskError(
                f"the last stage needs one node per task ({k}), got {self.nodes_per_stage[-1]}"
            )
        copies = [first] + [make_stage_list(make_stages)
                            for _ in range(max(self.nodes_per_stage) - 1)]
        self._make_stages = make_stages
        self.nodes = nn.ModuleDict(
            {f"{i}_{j}": copies[j][i] for i in range(num) for j in range(self.nodes_per_stage[i])}
        )
        self.branch_logits = nn.ParameterDict(
            {f"{i}_{j}": nn.Parameter(torch.zeros(self.nodes_per_stage[i - 1]))
             for i in range(1, num) for j in range(self.nodes_per_stage[i])}
        )
        self.temperature0 = self.temperature = float(temperature)
        self.temperature_decay = float(temperature_decay)
        self.hard = hard
        resolve = size_resolver(out_features, example_input, lambda x: run_stages(first, x),
                                [first], "the last stage's output")
        sizes: list[int] = []

        def head_size() -> int:
            sizes.append(resolve())
            return sizes[-1]

        self.heads = build_heads(self.tasks, heads, head_size)
        self._out_features = sizes[0] if sizes else out_features

    def on_epoch_start(self, epoch: int) -> None:
        """Anneal the Gumbel-softmax temperature: ``τ₀ · decay^epoch``."""
        self.temperature = self.temperature0 * self.temperature_decay**epoch

    def architecture_parameters(self) -> list[nn.Parameter]:
        """The branching logits (for their own optimizer or learning rate)."""
        return list(self.branch_logits.parameters())

    def parents(self) -> list[list[int]]:
        """For each stage ≥ 1, each node's most probable parent."""
        return [
            [int(self.branch_logits[f"{i}_{j}"].argmax()) for j in range(self.nodes_per_stage[i])]
            for i in range(1, len(self.nodes_per_stage))
        ]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        num = len(self.nodes_per_stage)
        prev = [self.nodes[f"0_{j}"](x) for j in range(self.nodes_per_stage[0])]
        for i in range(1, num):
            cur = []
            for j in range(self.nodes_per_stage[i]):
                logits = self.branch_logits[f"{i}_{j}"]
                if self.training:
                    g = F.gumbel_softmax(logits, tau=self.temperature, hard=self.hard)
                    inp = sum(g[p] * prev[p] for p in range(len(prev)))
                else:
                    inp = prev[int(logits.argmax())]
                cur.append(self.nodes[f"{i}_{j}"](inp))
            prev = cur
        return {k: self.heads[k](prev[t]) for t, k in enumerate(self.task_names)}

    def derive(self) -> Spec:
        """The discrete tree as a :class:`Branched` spec."""
        num = len(self.nodes_per_stage)
        parents = self.parents()
        paths = []
        for t in range(len(self.task_names)):
            node, path = t, [t]
            for i in range(num - 1, 0, -1):
                node = parents[i - 1][node]
                path.append(node)
            paths.append(path[::-1])  # node index per stage
        spec = []
        for i in range(num):
            groups: dict[int, list[str]] = {}
            for t, name in enumerate(self.task_names):
                groups.setdefault(paths[t][i], []).append(name)
            spec.append([tuple(g) for g in groups.values()])
        return normalize_spec(spec, self.task_names, num)

    def finalize(self, **kwargs: Any) -> Branched:
        """The retrain-phase :class:`Branched` model of the derived tree, fresh weights
        (``kwargs`` go to :class:`Branched`, e.g. ``heads=``)."""
        if self._out_features is not None:
            kwargs.setdefault("out_features", self._out_features)
        return Branched(self._make_stages, self.tasks, self.derive(), **kwargs)

    def _task_nodes(self, name: str) -> list[str]:
        last = len(self.nodes_per_stage) - 1
        return [f"{last}_{self.task_names.index(name)}"]

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        own = {key for k in self.task_names for key in self._task_nodes(k)}
        mods = [m for key, m in self.nodes.items() if key not in own]
        logits = [p for key, p in self.branch_logits.items() if key not in own]
        return iter([*modules_parameters(mods), *logits])

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        keys = self._task_nodes(name)
        params = list(modules_parameters([*(self.nodes[k] for k in keys), self.heads[name]]))
        params += [self.branch_logits[k] for k in keys if k in self.branch_logits]
        return iter(params)


@register("learning_to_branch")
def _learning_to_branch(tasks, backbone: Backbone, **kwargs: Any) -> LearningToBranch:  # noqa: ANN001
    """Learning to Branch (Guo et al., ICML 2020): Gumbel-softmax over parents."""
    kwargs = stage_kwargs(backbone, "learning_to_branch", kwargs)
    return LearningToBranch(backbone.make_stages, tasks, **kwargs)
