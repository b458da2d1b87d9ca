"""Δm: the mean relative change of every metric against single-task baselines."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import PolytaskError

Results = Mapping[str, Mapping[str, float]]

#: The Δm conventions: ``"metric"`` weighs every metric equally (Maninis et al.; the
#: Nash-MTL and FAMO papers); ``"task"`` averages within each task first (LibMTL).
DELTA_M_CONVENTIONS = ("metric", "task")


def delta_m(
    results: Results,
    baselines: Results,
    higher_is_better: Mapping[str, Mapping[str, bool]],
    convention: str = "metric",
) -> float:
    """Δm in percent, positive when the multi-task model is better than its baselines.

    ``convention="metric"`` (default): Δm = 100/T · Σ_t s_t (M_t − B_t)/B_t over every
    metric t of every task, with s_t = +1 where higher is better and −1 where lower is
    better (Maninis et al., CVPR 2019; Vandenhende et al., TPAMI 2021; the Nash-MTL and
    FAMO papers): a task with five metrics counts five times as much as a task with one.

    ``convention="task"``: Δp = 100/K · Σ_k 1/M_k Σ_m s_km (M_km − B_km)/B_km, the mean
    over tasks of each task's mean relative change (LibMTL's ``count_improvement``):
    every task counts equally whatever its number of metrics.

    ``results`` and ``baselines`` map task -> metric -> value; ``higher_is_better``
    gives each metric's direction. Every metric of ``higher_is_better`` is counted; a
    missing value or a zero baseline raises an error naming the task and metric.
    """
    if convention not in DELTA_M_CONVENTIONS:
        raise PolytaskError(
            f"Δm: unknown convention {convention!r}; choose one of {list(DELTA_M_CONVENTIONS)}"
        )
    per_task: list[list[float]] = []
    for task, directions in higher_is_better.items():
        terms = []
        for metric, higher in directions.items():
            try:
                value = results[task][metric]
            except KeyError:
                raise PolytaskError(f"Δm: no result for task {task!r} metric {metric!r}") from None
            try:
                base = baselines[task][metric]
            except KeyError:
                raise PolytaskError(
                    f"Δm: no baseline for task {task!r} metric {metric!r}"
                ) from None
            if base == 0:
                raise PolytaskError(f"Δm: baseline of task {task!r} metric {metric!r} is zero")
            sign = 1.0 if higher else -1.0
            terms.append(sign * (value - base) / abs(base))
        if terms:
            per_task.append(terms)
    if not per_task:
        raise PolytaskError("Δm: no metric to compare")
    if convention == "task":
        return 100.0 * sum(sum(t) / len(t) for t in per_task) / len(per_task)
    flat = [v for t in per_task for v in t]
    return 100.0 * sum(flat) / len(flat)
