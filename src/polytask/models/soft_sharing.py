"""Soft parameter sharing: one network per task, tied by a penalty on their distance."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import params
from ..errors import PolytaskError
from ..tasks import Task, as_task_dict
from .base import MultiTaskModel
from .layers import build_heads, module_out_features, modules_parameters
from .registry import Backbone, register

PENALTIES = ("l2", "trace", "tucker")


def l2_distance_penalty(groups: list[list[Tensor]]) -> Tensor:
    """``Σ_tied Σ_{k<j} ||W_k - W_j||²`` over groups of corresponding parameters."""
    total = groups[0][0].new_zeros(())
    for group in groups:
        stacked = torch.stack([p.reshape(-1) for p in group])  # (K, P)
        k = stacked.shape[0]
        # Σ_{k<j} ||w_k - w_j||² = K Σ_k ||w_k||² - ||Σ_k w_k||²
        total = total + k * stacked.pow(2).sum() - stacked.sum(0).pow(2).sum()
    return total


def trace_norm_penalty(groups: list[list[Tensor]], mode: str = "trace") -> Tensor:
    """Tensor trace norms of the stacked task parameters (Yang & Hospedales, 2017).

    ``"trace"``: last-axis flattening, the nuclear norm of the (P × K) matrix whose
    columns are the tasks' flattened parameters. ``"tucker"``: the mean nuclear norm
    of every mode unfolding of the (K, *shape) tensor.
    """
    total = groups[0][0].new_zeros(())
    for group in groups:
        stacked = torch.stack(list(group))  # (K, *shape)
        if mode == "trace" or stacked.dim() == 2:
            total = total + torch.linalg.matrix_norm(stacked.reshape(len(group), -1), ord="nuc")
            continue
        norms = []
        for axis in range(stacked.dim()):
            unfolded = stacked.movedim(axis, 0).reshape(stacked.shape[axis], -1)
            norms.append(torch.linalg.matrix_norm(unfolded, ord="nuc"))
        total = total + torch.stack(norms).mean()
    return total


class SoftSharing(MultiTaskModel):
    """Soft parameter sharing: a separate network per task, kept close by a penalty.

    Each task has its own encoder (a fresh module from ``make_encoder``) and head;
    corresponding parameters of the task encoders are tied by a penalty:

    - ``"l2"``: squared distance, summed over task pairs (Duong, Cohn, Bird & Cook,
      ACL 2015, where two parsers' weights are tied by an l2 distance);
    - ``"trace"`` / ``"tucker"``: the tensor trace norm of the stacked task parameters,
      last-axis-flattening or Tucker form (Yang & Hospedales, ICLR 2017 workshop,
      "Trace Norm Regularised Deep Multi-Task Learning").

    The penalty is ``penalty_weight ×`` that sum, returned by :meth:`regularization`;
    it reaches the gradients through the balancing machinery
    (``polytask.balancing.penalty.attach(balancer, model)``, done by the Trainer), not
    by hand in the training loop.

    Parameter split: nothing is shared (no task loss reaches another task's
    network; only the penalty couples them), so ``shared_parameters()`` is empty and
    gradient-aggregation balancers, which act on shared parameters, do not apply — use a
    loss weighting. Each task owns its encoder and head. No shared representation.

    Cost relative to hard sharing: K encoders (K× encoder parameters and compute) plus
    the penalty: O(K·P) for l2, an SVD of a P×K matrix per tied tensor for trace.

    Args:
        make_encoder: returns a fresh, independently initialised encoder.
        tasks: the task specs.
        penalty: ``"l2"``, ``"trace"`` or ``"tucker"``.
        penalty_weight: λ.
        tie: which encoder parameters are tied, by name (default: all of them).
        encoder_out_features / heads / example_input: as :class:`HardSharing`.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "penalty": [params.Options(PENALTIES)],
        "penalty_weight": [params.Interval(params.Real, 0, None)],
    }

    def __init__(
        self,
        make_encoder: Callable[[], nn.Module],
        tasks: Mapping[str, Task] | Iterable[Task],
        penalty: str = "l2",
        penalty_weight: float = 1e-3,
        tie: Callable[[str], bool] | None = None,
        encoder_out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)  # checks the task set (inputs_from is not supported)
        if penalty not in PENALTIES:
            raise PolytaskError(f"unknown penalty {penalty!r}; available: {PENALTIES}")
        self.tasks = as_task_dict(tasks)
        self.task_names = tuple(self.tasks)
        self.penalty, self.penalty_weight = penalty, float(penalty_weight)
        self.encoders = nn.ModuleDict({k: make_encoder() for k in self.task_names})
        first = self.encoders[self.task_names[0]]
        names = [n for n, _ in first.named_parameters()]
        for k in self.task_names[1:]:
            other = [n for n, _ in self.encoders[k].named_parameters()]
            if other != names:
                raise PolytaskError(
                    f"make_encoder() built encoders with different parameters for tasks "
                    f"{self.task_names[0]!r} and {k!r}; soft sharing ties corresponding ones"
                )
        self.tied_names = [n for n in names if tie is None or tie(n)]
        self.heads = build_heads(
            self.tasks,
            heads,
            lambda: module_out_features(first, encoder_out_features, example_input,
                                        "the encoder's output"),
        )

    def tied_groups(self) -> list[list[Tensor]]:
        """For each tied parameter name, the K corresponding task parameters."""
        params = {k: dict(self.encoders[k].named_parameters()) for k in self.task_names}
        return [[params[k][n] for k in self.task_names] for n in self.tied_names]

    def distance(self) -> Tensor:
        """The unweighted penalty (l2 distance or trace norm)."""
        groups = self.tied_groups()
        if not groups or len(self.task_names) < 2:
            return next(self.parameters()).new_zeros(())
        if self.penalty == "l2":
            return l2_distance_penalty(groups)
        return trace_norm_penalty(groups, self.penalty)

    def regularization(self) -> Tensor:
        """``penalty_weight × distance()``."""
        return self.penalty_weight * self.distance()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {k: self.heads[k](self.encoders[k](x)) for k in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return iter(())

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        return modules_parameters([self.encoders[name], self.heads[name]])


@register("soft_sharing")
def _soft_sharing(tasks, backbone: Backbone, **kwargs: Any) -> SoftSharing:  # noqa: ANN001
    """Soft sharing (Duong et al., ACL 2015; Yang & Hospedales, 2017): tied task networks."""
    kwargs.setdefault("encoder_out_features", backbone.out_features)
    return SoftSharing(backbone.make_encoder, tasks, **kwargs)
