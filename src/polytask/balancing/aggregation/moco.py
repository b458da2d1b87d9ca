"""MoCo: multi-objective gradient correction with tracked gradients."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ..base import GradientAggregator
from ..registry import register
from ._common import resize_buffers_on_load
from ._solvers import project_simplex


@register("moco")
class MoCo(GradientAggregator):
    """MoCo (Fernando et al., ICLR 2023, "Mitigating Gradient Bias in Multi-objective
    Learning: A Provably Convergent Approach").

    Stochastic MGDA is biased; MoCo corrects it by tracking each task gradient,
    ``Y ← Y − β_t (Y − J)``, and by updating the task weights with one gradient step
    instead of solving MGDA exactly; the update is ``d = Yᵀ λ``. Step sizes
    ``β_t = β / t^{β_σ}``, ``γ_t = γ / t^{γ_σ}`` (t = 1, 2, ...).

    Paper and authors' code differ, and polytask follows the code (the authors'
    CAGrad-based scripts, and LibMTL's ``MoCo`` "implemented based on the authors'
    sharing code"), with the paper's choices as options:

    - the tracked gradients start at ``Y = 0`` (so the first step tracks ``β J``);
      ``init="first"`` starts them at the first Jacobian instead;
    - ``λ ← softmax(λ − γ_t (Y Yᵀ + ρ I) λ)`` (``lambda_update="softmax"``, the code);
      the paper's Algorithm 1 projects onto the simplex,
      ``λ ← Π_Δ(λ − γ_t (Y Yᵀ + ρ I) λ)`` (``lambda_update="projection"``).

    Args:
        beta, beta_sigma, gamma, gamma_sigma, rho: the paper's hyper-parameters
            (defaults 0.5, 0.5, 0.1, 0.5, 0 from LibMTL's configuration).
        normalization: how each task gradient is scaled before it is tracked:
            ``"loss"`` (the code: unit gradient times the task's loss; on a bare
            Jacobian, with no losses known, the losses count as 1), ``"l2"`` (unit
            gradients) or ``"none"`` (raw gradients, the paper).
        init: ``"zero"`` (the code) or ``"first"``.
        lambda_update: ``"softmax"`` (the code) or ``"projection"`` (the paper).

    ``Y`` and ``λ`` (uniform at the start) are buffers (saved in checkpoints). A dead
    task (loss exactly 0) keeps its tracked gradient at that step and drops out of the
    update (weight 0; λ renormalised over the live tasks). On the representation
    path, a change of the representation's size (a smaller last batch) restarts the
    tracking (``extras["restarted"] = 1``). Task-specific parameters get ``∇L_k``
    (LibMTL: ``task_gradients="raw"``). Extra cost per step: the Jacobian (it needs the
    full K×P matrix: no Gramian path) plus O(K·P) to track it and O(K²P) for
    ``Y Yᵀ``; memory: one more K×P matrix. Degenerate inputs: zero or opposite rows
    pass through the convex combination (opposite rows with equal λ cancel).
    """

    scaling = "none"

    default_task_gradients = "raw"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "beta": [params.Interval(params.Real, 0, None)],
        "beta_sigma": [params.Interval(params.Real, 0, None)],
        "gamma": [params.Interval(params.Real, 0, None)],
        "gamma_sigma": [params.Interval(params.Real, 0, None)],
        "rho": [params.Interval(params.Real, 0, None)],
        "normalization": [params.Options(("loss", "l2", "none"))],
    }

    def __init__(self, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1,
                 gamma_sigma: float = 0.5, rho: float = 0.0, normalization: str = "loss",
                 init: str = "zero", lambda_update: str = "softmax",
                 **engine_options: Any) -> None:
        super().__init__(**engine_options)
        if normalization not in ("loss", "l2", "none"):
            raise ValueError(
                f"MoCo normalization {normalization!r}: choose 'loss', 'l2' or 'none'"
            )
        if init not in ("zero", "first"):
            raise ValueError(f"MoCo init {init!r}: choose 'zero' or 'first'")
        if lambda_update not in ("softmax", "projection"):
            raise ValueError(
                f"MoCo lambda_update {lambda_update!r}: choose 'softmax' or 'projection'"
            )
        self.normalization = normalization
        self.init = init
        self.lambda_update = lambda_update
        self.beta, self.beta_sigma = beta, beta_sigma
        self.gamma, self.gamma_sigma = gamma, gamma_sigma
        self.rho = rho
        self.register_buffer("tracked", torch.zeros(0, 0))
        self.register_buffer("lambdas", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("t", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        resize_buffers_on_load(self, state_dict, prefix, ("tracked", "lambdas"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def aggregate(self, jacobian: Tensor) -> Tensor:
        k = jacobian.shape[0]
        jac = self._normalized(jacobian.detach())
        if self.tracked.shape != jac.shape:
            if self.tracked.numel():
                self.extras["restarted"] = 1.0
            self.tracked = jac.clone() if self.init == "first" else torch.zeros_like(jac)
            self.lambdas = torch.full((k,), 1.0 / k, dtype=torch.float64)
            self.t.zero_()
        self.t += 1
        t = float(self.t)
        beta_t = self.beta / t**self.beta_sigma
        gamma_t = self.gamma / t**self.gamma_sigma
        dead = self._dead(k)
        y = self.tracked.to(jac.device, jac.dtype)
        change = beta_t * (y - jac)
        if dead is not None:  # a dead task keeps its tracked gradient
            change[dead.to(change.device)] = 0
        y.sub_(change)
        self.tracked = y
        from ..engine import scaled_gram

        yy = scaled_gram(y).cpu()
        lam = self.lambdas.cpu()
        step = lam - gamma_t * ((yy + self.rho * torch.eye(k, dtype=torch.float64)) @ lam)
        if self.lambda_update == "softmax":
            lam = torch.softmax(step, dim=0)
        else:
            lam = torch.as_tensor(project_simplex(step.numpy()))
        self.lambdas = lam
        w = lam.clone()
        if dead is not None and not bool(dead.all()):
            w[dead] = 0.0
            w = w / w.sum().clamp_min(1e-300)
        w = w.to(jac.device)
        self._last_weights = w
        return w.to(jac.dtype) @ y

    def _normalized(self, jac: Tensor) -> Tensor:
        if self.normalization == "none":
            return jac
        unit = jac / (jac.norm(dim=1, keepdim=True) + 1e-8)
        losses = self.current_losses
        if self.normalization == "l2" or losses is None:
            return unit
        return unit * losses.detach().abs().to(jac.device, jac.dtype).reshape(-1, 1)
