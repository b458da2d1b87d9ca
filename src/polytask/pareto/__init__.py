"""Multi-task learning as multi-objective optimisation: Pareto fronts.

- preferences: :func:`check_preference`, :func:`uniform_rays`, :func:`das_dennis`,
  :func:`circle_rays`, :class:`DirichletSampler`, :func:`loss_direction`;
- scalarizations (pure functions and registered balancers): ``linear``,
  ``tchebycheff``, ``augmented-tchebycheff``, ``modified-tchebycheff``, ``stch-paper``,
  ``stch-reference``, ``pbi``, ``cosmos``;
- gradient methods for one ray: :class:`ParetoMTL` (``pmtl``), :class:`EPO` (``epo``);
- preference-conditioned models ``model(x, pref)``: :class:`COSMOS`,
  :class:`ParetoHyperNetwork`, :class:`ParetoManifold`;
- fronts: :class:`FiniteFront`, :class:`ConditionedFront`, :class:`FrontResult`,
  :func:`train_finite_front`, :func:`train_conditioned`, :func:`plot_fronts`;
- indicators: :func:`hypervolume` (exact), :func:`igd`, :func:`igd_plus`,
  :func:`preference_fidelity`, :func:`non_dominated`, :func:`reference_point`.

>>> front = train_conditioned(make_model, tasks, "cosmos", (1, 36, 36), loader, epochs=10)
>>> result = front.evaluate(test_loader, uniform_rays(25), split="test")
>>> result.hypervolume([2, 2])
"""

from .aggregators import EPO, ParetoMTL, epo_weights
from .conditioned import (
    COSMOS,
    ParetoHyperNetwork,
    ParetoManifold,
    PreferenceConditioned,
    PreferenceFromModel,
)
from .front import (
    ConditionedFront,
    FiniteFront,
    FrontResult,
    evaluate_model,
    plot_fronts,
    write_front,
)
from .indicators import (
    ReferencePointError,
    hypervolume,
    igd,
    igd_plus,
    non_dominated,
    pareto_front,
    preference_fidelity,
    reference_point,
)
from .preferences import (
    DirichletSampler,
    PreferenceError,
    check_preference,
    check_rays,
    circle_rays,
    das_dennis,
    loss_direction,
    preference_of,
    uniform_rays,
)
from .scalarization import (
    FUNCTIONS,
    Scalarization,
    augmented_tchebycheff,
    cosmos,
    linear,
    modified_tchebycheff,
    pbi,
    smooth_tchebycheff,
    tchebycheff,
)
from .train import (
    CONDITIONED_METHODS,
    FINITE_METHODS,
    METHOD_LR,
    method_lr,
    train_conditioned,
    train_finite_front,
)

__all__ = [
    "COSMOS",
    "CONDITIONED_METHODS",
    "EPO",
    "FINITE_METHODS",
    "FUNCTIONS",
    "ConditionedFront",
    "DirichletSampler",
    "FiniteFront",
    "FrontResult",
    "METHOD_LR",
    "ParetoHyperNetwork",
    "ParetoMTL",
    "ParetoManifold",
    "PreferenceConditioned",
    "PreferenceError",
    "PreferenceFromModel",
    "ReferencePointError",
    "Scalarization",
    "augmented_tchebycheff",
    "check_preference",
    "check_rays",
    "circle_rays",
    "cosmos",
    "das_dennis",
    "epo_weights",
    "evaluate_model",
    "hypervolume",
    "igd",
    "igd_plus",
    "linear",
    "loss_direction",
    "method_lr",
    "modified_tchebycheff",
    "non_dominated",
    "pareto_front",
    "pbi",
    "plot_fronts",
    "preference_fidelity",
    "preference_of",
    "reference_point",
    "smooth_tchebycheff",
    "tchebycheff",
    "train_conditioned",
    "train_finite_front",
    "uniform_rays",
    "write_front",
]
