"""Linear scalarization with fixed weights, and helpers to sweep them over the simplex."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ...errors import PolytaskError
from ..base import BalanceContext, LossWeighting
from ..registry import register


@register("scalarization")
class LinearScalarization(LossWeighting):
    """Linear scalarization ``Σ_k w_k L_k`` with fixed weights on the simplex.

    Tuned linear scalarization is a strong baseline that many specialised methods do not
    beat (Xin, Ghorbani, Gilmer, Garg & Firat, NeurIPS 2022, "Do current multi-task
    optimization methods in deep learning even help?"; Kurin, De Palma, Kostrikov,
    Whiteson & Kumar, NeurIPS 2022, "In defense of the unitary scalarization"). Use
    :func:`simplex_grid` or :func:`random_simplex` to list candidate weights and
    :func:`sweep` to pick the best.

    The given weights (a point of the simplex, or any non-negative weights, then
    normalised) are scaled to sum K so that the centre of the simplex is exactly equal
    weighting and learning rates carry over from ``ew``; ``scale="simplex"`` keeps them
    summing to 1 instead.

    Extra cost per step: none.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "weights": [None, params.PerTask(params.Interval(params.Real, 0, None))],
        "scale": [params.Options(("tasks", "simplex"))],
    }

    def __init__(
        self,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        scale: str = "tasks",
    ) -> None:
        super().__init__()
        if scale not in ("tasks", "simplex"):
            raise PolytaskError(f"scalarization scale must be 'tasks' or 'simplex', got {scale!r}")
        self.user_weights = weights
        self.scale = scale

    def weights(self, losses: Tensor, ctx: BalanceContext) -> Tensor:
        given = self.user_weights
        k = len(ctx.names)
        if given is None:
            values = [1.0] * k
        elif isinstance(given, Mapping):
            unknown = set(given) - set(ctx.names)
            if unknown:
                raise PolytaskError(
                    f"weights given for unknown tasks {sorted(unknown)}; tasks are {ctx.names}"
                )
            missing = set(ctx.names) - set(given)
            if missing:
                raise PolytaskError(f"scalarization weights lack tasks {sorted(missing)}")
            values = [float(given[n]) for n in ctx.names]
        else:
            values = [float(v) for v in given]
            if len(values) != k:
                raise PolytaskError(f"{len(values)} weights for {k} tasks {ctx.names}")
        w = torch.tensor(values, dtype=losses.dtype, device=losses.device)
        if bool((w < 0).any()) or float(w.sum()) <= 0:
            raise PolytaskError(f"scalarization weights must be non-negative, not all 0: {values}")
        w = w / w.sum()
        return w * k if self.scale == "tasks" else w


def simplex_grid(task_names: Sequence[str], divisions: int = 4) -> list[dict[str, float]]:
    """Every point of the simplex whose weights are multiples of ``1/divisions``.

    ``C(divisions + K - 1, K - 1)`` points: 5 for two tasks and 4 divisions
    (0, .25, .5, .75, 1), 15 for three tasks.
    """
    k = len(task_names)
    if k == 0 or divisions < 1:
        raise PolytaskError("simplex_grid needs tasks and divisions >= 1")
    points = []
    for combo in itertools.product(range(divisions + 1), repeat=k - 1):
        if sum(combo) <= divisions:
            parts = list(combo) + [divisions - sum(combo)]
            points.append({n: p / divisions for n, p in zip(task_names, parts)})
    return points


def random_simplex(task_names: Sequence[str], n: int, seed: int = 0) -> list[dict[str, float]]:
    """``n`` points drawn uniformly on the simplex (Dirichlet(1)), for many tasks."""
    g = torch.Generator().manual_seed(seed)
    draws = -torch.log(torch.rand(n, len(task_names), generator=g).clamp_min(1e-12))
    draws = draws / draws.sum(dim=1, keepdim=True)
    return [{t: float(v) for t, v in zip(task_names, row)} for row in draws]


def sweep(
    evaluate: Callable[[dict[str, float]], float],
    candidates: Sequence[Mapping[str, float]],
    higher_is_better: bool = True,
) -> tuple[dict[str, float], float, list[tuple[dict[str, float], float]]]:
    """Train/evaluate once per candidate weighting; return (best weights, best score,
    every (weights, score)). ``evaluate(weights)`` typically trains with
    ``LinearScalarization(weights)`` and returns a validation score such as Δm."""
    if not candidates:
        raise PolytaskError("sweep needs at least one candidate")
    results: list[tuple[dict[str, float], float]] = []
    for weights in candidates:
        results.append((dict(weights), float(evaluate(dict(weights)))))
    pick: Any = max if higher_is_better else min
    best = pick(results, key=lambda item: item[1])
    return best[0], best[1], results
