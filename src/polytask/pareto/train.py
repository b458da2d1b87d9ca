"""Training fronts with the Trainer: one model per ray, or one conditioned model.

Methods by name (``FINITE_METHODS`` and ``CONDITIONED_METHODS``):

- finite (one model per ray): ``ls`` (linear scalarization), every other registered
  scalarization (``tchebycheff``, ``stch-paper``, ``pbi``, ...), ``pmtl`` (Pareto MTL),
  ``epo`` and ``mgda`` (which ignores the ray: its "front" is one point per ray seed);
- conditioned (one model for all rays): ``cosmos``, ``phn`` / ``phn-ls``, ``phn-epo``
  and ``pamal`` (Pareto manifold learning).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..balancing import Balancer
from ..balancing import get as get_balancer
from ..errors import PolytaskError
from ..models import MultiTaskModel
from ..tasks import Task, as_task_dict
from .aggregators import EPO, ParetoMTL
from .conditioned import (
    COSMOS,
    ParetoHyperNetwork,
    ParetoManifold,
    PreferenceConditioned,
    PreferenceFromModel,
)
from .front import ConditionedFront, FiniteFront
from .preferences import PreferenceError, check_rays
from .scalarization import FUNCTIONS

FINITE_METHODS = ("ls", "pmtl", "epo", "mgda", *sorted(FUNCTIONS))
CONDITIONED_METHODS = ("cosmos", "phn", "phn-ls", "phn-epo", "pamal")
#: a method's own Adam learning rate where its authors' code sets one apart from the
#: benchmark's: Pareto HyperNetworks train the hypernetwork at 1e-4 (Navon et al.'s
#: ``experiments/multimnist/trainer.py`` default, and the COSMOS code's PHN settings).
#: At the LeNet benchmarks' 1e-3 a hypernetwork step moves every generated weight at
#: once (each is a sum over the ``hidden`` features) and PHN-EPO, whose weights are
#: nearly one-hot, diverges: one task's loss jumps back above ln 10 and never recovers.
METHOD_LR: dict[str, float] = {"phn": 1e-4, "phn-ls": 1e-4, "phn-epo": 1e-4}
#: the most models a finite front trains (one per ray)
MAX_FINITE_RAYS = 64


def method_ray(method: str, options: Mapping[str, Any] | None = None) -> str:
    """How ``method`` reads a preference in loss space (see ``FrontResult.ray``)."""
    if method in ("cosmos",) and (options or {}).get("ray", "preference") == "preference":
        return "preference"
    return "inverse"


def finite_balancer(method: str, prefs: Tensor, index: int, **options: Any) -> Balancer:
    """The balancer that trains the ``index``-th model of a finite front."""
    pref = prefs[index].tolist()
    if method == "pmtl":
        return ParetoMTL(prefs=prefs, index=index, **options)
    if method == "epo":
        return EPO(pref=pref, **options)
    if method == "mgda":
        return get_balancer("mgda", **options)
    name = "linear" if method == "ls" else method
    if name in FUNCTIONS:
        return get_balancer(name, pref=pref, **options)
    raise PolytaskError(
        f"unknown finite-front method {method!r}; available: {', '.join(FINITE_METHODS)}"
    )


def conditioned_model(
    method: str,
    target: MultiTaskModel,
    input_shape: Sequence[int],
    seed: int = 0,
    **model_options: Any,
) -> PreferenceConditioned:
    """The preference-conditioned model of ``method`` around ``target``."""
    if method == "cosmos":
        return COSMOS(target, input_shape, seed=seed, **model_options)
    if method in ("phn", "phn-ls", "phn-epo"):
        return ParetoHyperNetwork(target, seed=seed, **model_options)
    if method == "pamal":
        return ParetoManifold(target, seed=seed, **model_options)
    raise PolytaskError(
        f"unknown conditioned method {method!r}; available: {', '.join(CONDITIONED_METHODS)}"
    )


def conditioned_balancer(method: str, **options: Any) -> Balancer:
    """The preference-taking balancer a conditioned ``method`` trains with."""
    if method == "cosmos":
        inner: Balancer = get_balancer("cosmos", **options)
    elif method == "phn-epo":
        inner = EPO(**options)
    elif method in ("phn", "phn-ls", "pamal"):
        inner = get_balancer("linear", **options)
    else:
        raise PolytaskError(
            f"unknown conditioned method {method!r}; available: {', '.join(CONDITIONED_METHODS)}"
        )
    return PreferenceFromModel(inner)


def method_lr(method: str, default: float | None = None) -> float | None:
    """The learning rate ``method`` trains at: :data:`METHOD_LR` where its authors set
    one, else ``default``."""
    return METHOD_LR.get(method, default)


def _trainer(
    model: nn.Module,
    tasks: Mapping[str, Task],
    balancer: Balancer,
    optimizer: Callable | None,
    device: Any,
    seed: int,
    progress: bool,
    log_dir: Any = None,
):
    from ..training import Trainer

    return Trainer(
        model,
        tasks,
        balancer,
        optimizer,
        device=device,
        seed=seed,
        progress=progress,
        log_dir=log_dir,
    )


def train_finite_front(
    make_model: Callable[[], MultiTaskModel],
    tasks: Mapping[str, Task] | Iterable[Task],
    method: str,
    prefs: Tensor | Sequence,
    train_loader: Iterable,
    epochs: int,
    *,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    device: Any = None,
    seed: int = 0,
    progress: bool = False,
    method_options: Mapping[str, Any] | None = None,
) -> FiniteFront:
    """Train one model per preference with ``method`` (see :data:`FINITE_METHODS`);
    ``info["seconds"]`` holds the total training time."""
    tasks = as_task_dict(tasks)
    if method not in FINITE_METHODS:
        raise PolytaskError(
            f"unknown finite-front method {method!r}; available: {', '.join(FINITE_METHODS)}"
        )
    rays = check_rays(prefs, len(tasks))
    if len(rays) > MAX_FINITE_RAYS:
        raise PreferenceError(
            f"{len(rays)} rays: a finite front trains one model per ray, at most "
            f"{MAX_FINITE_RAYS}; use a preference-conditioned method for more"
        )
    if method == "pmtl" and len(rays) < 2:
        raise PreferenceError(f"pmtl needs at least two rays, got {len(rays)}")
    models, start = [], time.perf_counter()
    for i in range(len(rays)):
        torch.manual_seed(seed)  # every ray starts from the same initialisation
        model = make_model()
        balancer = finite_balancer(method, rays, i, **dict(method_options or {}))
        _trainer(model, tasks, balancer, optimizer, device, seed, progress).fit(
            train_loader, epochs
        )
        models.append(model)
    front = FiniteFront(models, rays, tasks, method, method_ray(method, method_options))
    front.seconds = time.perf_counter() - start
    return front


def train_conditioned(
    make_model: Callable[[], MultiTaskModel],
    tasks: Mapping[str, Task] | Iterable[Task],
    method: str,
    input_shape: Sequence[int],
    train_loader: Iterable,
    epochs: int,
    *,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    device: Any = None,
    seed: int = 0,
    progress: bool = False,
    model_options: Mapping[str, Any] | None = None,
    method_options: Mapping[str, Any] | None = None,
) -> ConditionedFront:
    """Train one preference-conditioned model with ``method`` (see
    :data:`CONDITIONED_METHODS`). Without ``optimizer``: Adam at :func:`method_lr`
    (1e-4 for PHN, as its authors; else the Trainer's default 1e-3)."""
    tasks = as_task_dict(tasks)
    if optimizer is None and method in METHOD_LR:
        lr = METHOD_LR[method]

        def optimizer(groups: Any) -> torch.optim.Optimizer:
            return torch.optim.Adam(groups, lr=lr)

    torch.manual_seed(seed)
    model = conditioned_model(
        method, make_model(), input_shape, seed=seed, **dict(model_options or {})
    )
    balancer = conditioned_balancer(method, **dict(method_options or {}))
    start = time.perf_counter()
    _trainer(model, tasks, balancer, optimizer, device, seed, progress).fit(train_loader, epochs)
    front = ConditionedFront(model, tasks, method, method_ray(method, method_options))
    front.seconds = time.perf_counter() - start
    return front
