"""Affinity estimators at one step: gradient similarity and TAG's lookahead.

Both take the step's task losses (still in the graph) and get the per-task gradients
of the shared parameters from the Jacobian engine (:mod:`polytask.balancing.engine`);
the lookahead runs the model at virtual parameters through
:mod:`polytask.balancing.lookahead`. Neither modifies the model, its ``.grad``, its
buffers or the optimizer, and both keep the graph so that the step's real backward
can follow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..balancing import engine
from ..balancing.lookahead import (
    LossOfBatch,
    functional_forward,
    trainable_parameters,
    unflatten,
)
from ..balancing.lookahead import virtual_step as _virtual_step
from ..errors import PolytaskError

ESTIMATORS = ("tag", "cosine", "inner")


def _losses_list(losses: Mapping[str, Tensor]) -> tuple[list[str], list[Tensor]]:
    if not isinstance(losses, Mapping) or not losses:
        raise PolytaskError("losses must be a non-empty dict {task name: scalar loss}")
    names = list(losses)
    values = []
    for name in names:
        loss = losses[name]
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise PolytaskError(f"loss of task {name!r} must be a scalar tensor")
        if not bool(torch.isfinite(loss.detach())):
            raise PolytaskError(f"loss of task {name!r} is not finite: {float(loss):.4g}")
        values.append(loss.reshape(()))
    return names, values


def _shared(shared_params: Sequence[Tensor] | None) -> list[Tensor]:
    params = [p for p in (shared_params or []) if p.requires_grad]
    if not params:
        raise PolytaskError("an affinity estimator needs shared_params=model.shared_parameters()")
    return params


def gradient_similarity(
    losses: Mapping[str, Tensor],
    shared_params: Sequence[Tensor],
    kind: str = "cosine",
    strategy: str = "loop",
    jacobian_memory_limit: int = 256 * 2**20,
) -> np.ndarray:
    """T×T similarity of the task gradients on the shared parameters.

    ``kind="inner"``: the Gramian ``G_ij = ⟨∇L_i, ∇L_j⟩``; ``"cosine"``:
    ``G_ij / (‖∇L_i‖ ‖∇L_j‖)`` (0 where a gradient is zero). The Gramian comes from the
    Jacobian engine: from the T×P Jacobian when it fits ``jacobian_memory_limit``
    bytes (T backward passes), else by Jacobian-vector products
    (:func:`polytask.balancing.engine.compute_gramian`, the Jacobian never held).
    Gradient cosine similarity as a measure of task relatedness: Du et al.,
    "Adapting auxiliary losses using gradient similarity" (2018); Yu et al.,
    PCGrad (NeurIPS 2020); a grouping baseline of Fifty et al. (NeurIPS 2021), whose
    code takes the cosine over weight matrices only (not biases or normalization
    parameters); polytask uses every shared parameter.

    Extra cost per call: T backward passes (plus T backwards through the backward on
    the Jacobian-vector path); the graph is kept.
    """
    if kind not in ("cosine", "inner"):
        raise PolytaskError(f"gradient similarity kind {kind!r}; use 'cosine' or 'inner'")
    _, values = _losses_list(losses)
    shared = _shared(shared_params)
    size = len(values) * sum(p.numel() for p in shared) * shared[0].element_size()
    if size <= jacobian_memory_limit:
        jac = engine.compute_jacobian(values, shared, strategy, retain_graph=True)
        gram = engine.scaled_gram(jac).cpu().numpy()
    else:
        gram = engine.compute_gramian(values, shared, strategy).cpu().numpy()
    if kind == "inner":
        return gram
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    denom = np.outer(norms, norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(denom > 0, gram / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(cos, -1.0, 1.0)


def _named_shared(model: nn.Module, shared: Sequence[Tensor]) -> dict[str, Tensor]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    missing = [i for i, p in enumerate(shared) if id(p) not in by_id]
    if missing:
        raise PolytaskError(
            f"shared parameter(s) at position(s) {missing} are not parameters of the model"
        )
    return {by_id[id(p)]: p for p in shared}


def lookahead_affinity(
    model: nn.Module,
    loss_of_batch: LossOfBatch,
    losses: Mapping[str, Tensor],
    shared_params: Sequence[Tensor],
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    sources: Sequence[Sequence[str]] | None = None,
    strategy: str = "batched",
) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """TAG's lookahead inter-task affinity at one step (Fifty, Amid, Zhao, Yu, Anil &
    Finn, "Efficiently Identifying Task Groupings for Multi-Task Learning", NeurIPS
    2021).

    For each source group ``S`` (default: each task alone),
    ``Z_{S→j} = 1 − L_j(θ_s − η Σ_{i∈S} ∇_{θ_s} L_i, θ_j) / L_j(θ_s, θ_j)`` on the same
    batch: the shared parameters take one virtual step along the source's gradient,
    the task-specific ones stay, and every task's loss is evaluated again.
    ``losses`` are the step's losses at ``θ`` (the denominators, in the graph);
    ``loss_of_batch(forward)`` recomputes them on the same batch with ``forward`` the
    model at the virtual parameters.

    The virtual step (:func:`polytask.balancing.lookahead.virtual_step`) is an SGD
    step: ``θ_s − lr (g + μ·buf + wd·θ_s)`` with ``lr`` (or the optimizer's learning
    rate), and the optimizer's momentum buffer and weight decay when it is SGD with
    them — exactly the next update of plain SGD/momentum SGD had the source been
    trained alone. For Adam and other adaptive optimizers it is the SGD step with the
    optimizer's ``lr`` (the paper defines the lookahead with SGD; its code trains
    with momentum SGD and uses its momentum, as here). Nothing of the real model
    changes: the virtual parameters are new tensors, buffers (BatchNorm running
    statistics) are copied for the virtual forward (in the model's current mode,
    i.e. batch statistics in training, as the paper's code), the optimizer is only
    read, and the RNG state is restored afterwards (dropout in the lookahead does not
    shift the training run's random stream).

    Paper vs. code: the reference code divides ``Z`` by the learning rate and
    averages per epoch; polytask keeps the paper's ``Z`` (the recorder averages over
    steps; the learning rate is kept in the result's provenance).

    Returns ``(sources, Z)`` with ``Z[s, j] = Z_{sources[s]→j}`` (rows: sources).

    Extra cost per call: the Jacobian of the T losses on the shared parameters (by
    default one vectorised backward, ``strategy="batched"``, falling back to T
    backward passes; T×P_shared memory) and one forward per source group, without
    gradient.
    """
    names, values = _losses_list(losses)
    shared = _shared(shared_params)
    named = _named_shared(model, shared)
    groups = [tuple(g) for g in (sources if sources is not None else [(n,) for n in names])]
    for g in groups:
        unknown = [t for t in g if t not in names]
        if unknown or not g:
            raise PolytaskError(
                f"source group {list(g)} names unknown tasks {unknown}; tasks are {names}"
            )
    jac = engine.compute_jacobian(values, list(named.values()), strategy, retain_graph=True)
    denominators = torch.stack([v.detach() for v in values]).double()
    params = trainable_parameters(model)
    out = np.zeros((len(groups), len(names)))
    devices = [p.device.index for p in shared if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=sorted(set(d for d in devices if d is not None))):
        state = torch.random.get_rng_state()
        for s, group in enumerate(groups):
            direction_flat = sum(jac[names.index(t)] for t in group)
            direction = unflatten(direction_flat, named)
            virtual = _virtual_step(params, direction, lr=lr, optimizer=optimizer)
            torch.random.set_rng_state(state)
            with torch.no_grad():
                after = loss_of_batch(functional_forward(model, virtual))
            missing = [n for n in names if n not in after]
            if missing:
                raise PolytaskError(f"loss_of_batch returned no loss for task(s) {missing}")
            ratio = torch.stack([after[n].detach().reshape(()) for n in names]).double()
            with np.errstate(divide="ignore", invalid="ignore"):
                z = 1.0 - (ratio / denominators).cpu().numpy()
            z[(denominators == 0).cpu().numpy()] = 0.0
            if not np.isfinite(z).all():
                bad = [n for n, ok in zip(names, np.isfinite(z)) if not ok]
                raise PolytaskError(f"lookahead of sources {list(group)}: loss of {bad} "
                                    "is not finite after the virtual step (lr too large?)")
            out[s] = z
    return groups, out

