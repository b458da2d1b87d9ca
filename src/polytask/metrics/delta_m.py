"""Δm: the mean relative change of every metric against single-task baselines."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import PolytaskError

Results = Mapping[str, Mapping[str, float]]


def delta_m(
    results: Results,
    baselines: Results,
    higher_is_better: Mapping[str, Mapping[str, bool]],
) -> float:
    """Δm in percent, positive when the multi-task model is better than its baselines.

    Δm = 100/T · Σ_t s_t (M_t − B_t)/B_t over every metric t of every task, with
    s_t = +1 where higher is better and −1 where lower is better (Maninis et al.,
    CVPR 2019; Vandenhende et al., TPAMI 2021). ``results`` and ``baselines`` map
    task -> metric -> value; ``higher_is_better`` gives each metric's direction.
    Every metric of ``higher_is_better`` is counted; a missing value or a zero
    baseline raises an error naming the task and metric.
    """
    terms = []
    for task, directions in higher_is_better.items():
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
    if not terms:
        raise PolytaskError("Δm: no metric to compare")
    return 100.0 * sum(terms) / len(terms)
