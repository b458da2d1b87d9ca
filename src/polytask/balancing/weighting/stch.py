"""Smooth Tchebycheff scalarization (STCH)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ...errors import PolytaskError
from ..base import BalanceContext, surrogate
from ..registry import register
from ._common import StatefulWeighting


def stch_weights(log_losses: Tensor, mu: float, preference: Tensor | None = None) -> Tensor:
    """The weights of STCH on the (log, normalised) losses: ``softmax(λ ⊙ l / μ)``.

    ``μ → 0`` gives all weight to the worst task (Tchebycheff); ``μ → ∞`` equal weights
    (linear scalarization).
    """
    lam = torch.ones_like(log_losses) if preference is None else preference
    return torch.softmax(lam * log_losses / mu, dim=0)


@register("stch")
class SmoothTchebycheff(StatefulWeighting):
    """Smooth Tchebycheff scalarization (Lin et al., ICML 2024, "Smooth Tchebycheff
    scalarization for multi-objective optimization").

    Minimises ``K μ log Σ_k exp(λ_k l_k / μ)`` with ``l_k = log(L_k / N_k)``, a smooth
    maximum of the (normalised) task losses: the gradient is
    ``Σ_k K softmax_k(λ l / μ) ∇l_k``, so the worst-off task gets the most weight.
    ``N`` (the nadir) is the mean loss over the last warm-up epoch; during the
    ``warmup_epochs`` the model trains on ``Σ_k log L_k``. Defaults ``μ = 1``,
    4 warm-up epochs follow the authors' deep-MTL code (there the nadir is averaged over
    one extra epoch after the warm-up; here over the last warm-up epoch).

    Per epoch: call ``on_epoch_end()`` after each epoch (the Trainer does) so the
    warm-up ends; ``warmup_epochs=0`` skips it (``N = 1``, no call needed).

    Reported weights: the factor on ``∇L_k``, ``K softmax_k / L_k`` (or ``1/L_k``
    during warm-up).

    The weights are computed from the engine's loss values and the backward is
    ``Σ_k w_k L_k``: the same gradient in one process, and the whole batch's under
    ``torch.distributed`` (a smooth maximum of each rank's own losses would not be).

    Extra cost per step: none (K numbers of state).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "mu": [params.Interval(params.Real, 0, None, closed="neither")],
        "warmup_epochs": [params.Interval(params.Integral, 0, None)],
        "preference": [None, params.PerTask(params.Interval(params.Real, 0, None))],
        "eps": [params.Interval(params.Real, 0, None)],
    }


    def __init__(
        self,
        mu: float = 1.0,
        warmup_epochs: int = 4,
        preference: Mapping[str, float] | Sequence[float] | None = None,
        eps: float = 1e-20,
    ) -> None:
        if mu <= 0:
            raise PolytaskError(f"STCH mu must be positive, got {mu}")
        self.mu = float(mu)
        self.warmup_epochs = int(warmup_epochs)
        self.preference = preference
        self.eps = float(eps)
        self.epoch = 0
        self.nadir: Tensor | None = None
        self._sum: Tensor | None = None
        self._count = 0
        self._seen: Tensor | None = None
        super().__init__()

    def _preference(self, names: list[str], like: Tensor) -> Tensor | None:
        p = self.preference
        if p is None:
            return None
        if isinstance(p, Mapping):
            unknown = set(p) - set(names)
            if unknown:
                raise PolytaskError(f"STCH preference for unknown tasks {sorted(unknown)}")
            values = [float(p.get(n, 1.0)) for n in names]
        else:
            values = [float(v) for v in p]
            if len(values) != len(names):
                raise PolytaskError(f"{len(values)} STCH preferences for tasks {names}")
        return torch.tensor(values, dtype=like.dtype, device=like.device)

    @property
    def warming_up(self) -> bool:
        """Whether the model still trains on the sum of log-losses."""
        return self.epoch < self.warmup_epochs

    def combine(self, ctx: BalanceContext) -> tuple[Tensor, Tensor]:
        losses = torch.stack(ctx.losses)
        # the engine's loss values: under torch.distributed the whole batch's; the
        # weights are the objective's gradient there, and the backward Σ w_k L_k
        values = ctx.loss_values.to(losses)
        k = len(ctx.losses)
        if self.warming_up:
            live = ctx.live.to(values.device)
            if self.epoch == self.warmup_epochs - 1:  # the nadir: each task's mean live loss
                seen = live.to(values.dtype)
                self._sum = values.clone() if self._sum is None else self._sum + values
                self._seen = seen if getattr(self, "_seen", None) is None else self._seen + seen
                self._count += 1
            w = (1.0 / (values + self.eps)).masked_fill(~live, 0.0)
            return surrogate(losses, w, torch.log(values[live] + self.eps).sum()), w
        nadir = torch.ones_like(values) if self.nadir is None else self.nadir.to(values)
        live = ctx.live.to(values.device)
        logs = torch.log(values / nadir + self.eps)
        lam = self._preference(ctx.names, values)
        lam_full = torch.ones_like(values) if lam is None else lam
        # dead tasks (loss exactly 0) drop out of the smooth maximum at this step
        scaled = (lam_full * logs / self.mu).masked_fill(~live, float("-inf"))
        if not bool(live.any()):
            return (losses * 0).sum(), torch.zeros_like(values)
        soft = torch.softmax(scaled, dim=0)
        w = (k * soft * lam_full / (values + self.eps * nadir)).masked_fill(~live, 0.0)
        return surrogate(losses, w, k * self.mu * torch.logsumexp(scaled, dim=0)), w

    def on_epoch_end(
        self, epoch: int | None = None, train_losses: Mapping[str, float] | None = None
    ) -> None:
        """Close an epoch; at the end of the warm-up, fix the nadir."""
        if self.warming_up and self.epoch == self.warmup_epochs - 1 and self._count:
            seen = getattr(self, "_seen", None)
            self.nadir = self._sum / (seen.clamp_min(1) if seen is not None else self._count)
            self.nadir = torch.where(self.nadir > 0, self.nadir, torch.ones_like(self.nadir))
            self._sum, self._count, self._seen = None, 0, None
        self.epoch += 1
