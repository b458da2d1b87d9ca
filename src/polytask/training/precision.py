"""Numeric precision of a Trainer run: fp32, bf16 autocast, fp16 autocast + GradScaler.

The Trainer drives a :class:`Precision` plugin at fixed points of every step (as
Lightning's precision plugins), with no ``if precision`` of its own:

1. ``forward_context()``: the forward and the task losses run inside it
   (``torch.autocast`` on the Trainer's device type for bf16 and fp16);
2. ``grad_scale``: given to ``balancer.backward(..., grad_scale=...)``: for fp16 a
   ``torch.amp.GradScaler``, whose scale the balancer removes from the per-task
   gradients before any rule combines them (:mod:`polytask.balancing.scaling`);
   None otherwise;
3. ``unscale_(optimizer)``: before gradient clipping and the
   ``on_before_optimizer_step`` callbacks, so that both see true gradients;
4. ``optimizer_step(optimizer)``: ``scaler.step`` + ``scaler.update`` for fp16 (the
   step is skipped when a gradient is inf/NaN, and the scale lowered), else
   ``optimizer.step()``; returns whether the optimizer stepped;
5. ``state_dict()`` / ``load_state_dict()``: the scaler's state, in checkpoints.

Every solver of the balancing methods already runs in float64 on the K×K Gramian,
and rules on the Jacobian get it in float32 or wider (half-precision representation
gradients are upcast by the engine), so no method needs fp32 arithmetic that fp16
autocast would take away; a method whose gradient reads do not go through
:mod:`polytask.balancing.scaling` (``supports_grad_scale = False``) is refused with
fp16 when the Trainer is built, naming the method and the fix (bf16 or 32).

Extra cost per step: none for "32"; for bf16/fp16 the autocast casts (and the
forward and backward run in half precision); fp16 adds the scaler's unscale and
inf check (one pass over the gradients) and the balancer's (un)scaling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import PolytaskError

#: accepted spellings (Lightning's included) -> canonical name
PRECISIONS = {
    "32": "32", "fp32": "32", "32-true": "32", "float32": "32",
    "bf16": "bf16", "bf16-mixed": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "16": "fp16", "16-mixed": "fp16", "float16": "fp16",
}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """How the Trainer runs a step at a numeric precision (see the module docstring).

    Args:
        precision: "32", "bf16" or "fp16" (also "bf16-mixed", "16-mixed", "32-true").
        device: the Trainer's device (autocast runs on its type).
        init_scale, growth_interval: the fp16 GradScaler's settings (PyTorch's
            defaults: 2**16 and 2000).
    """

    def __init__(
        self,
        precision: str = "32",
        device: torch.device | str = "cpu",
        *,
        init_scale: float = 2.0**16,
        growth_interval: int = 2000,
    ) -> None:
        key = str(precision).lower()
        if key not in PRECISIONS:
            raise PolytaskError(
                f"unknown precision {precision!r}; available: "
                f"{sorted(set(PRECISIONS))} (canonical: '32', 'bf16', 'fp16')"
            )
        self.name = PRECISIONS[key]
        self.device = torch.device(device)
        self.dtype = _DTYPES.get(self.name)
        self.scaler: torch.amp.GradScaler | None = None
        if self.name == "bf16" and self.device.type == "cuda" and not (
                torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            raise PolytaskError(
                "precision='bf16': this CUDA device does not support bfloat16; use "
                "precision='fp16' (with loss scaling) or '32'"
            )
        if self.name == "fp16":
            self.scaler = torch.amp.GradScaler(
                self.device.type, init_scale=init_scale, growth_interval=growth_interval
            )

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, device={str(self.device)!r})"

    def check(self, model: nn.Module, balancer: Any) -> None:
        """Refuse set-ups that cannot work, naming the fix (called by the Trainer)."""
        if self.name != "fp16":
            return
        half = [n for n, p in model.named_parameters() if p.dtype == torch.float16]
        if half:
            raise PolytaskError(
                f"precision='fp16' is mixed precision: keep the model in float32 (autocast "
                f"runs the forward in float16, the GradScaler needs float32 gradients); "
                f"parameters {half[:3]} are float16: call model.float()"
            )
        inner = getattr(balancer, "inner", balancer)
        for b in {id(balancer): balancer, id(inner): inner}.values():
            if not getattr(type(b), "supports_grad_scale", True):
                raise PolytaskError(
                    f"{type(b).__name__} does not support float16 loss scaling (its "
                    "gradient reads bypass polytask.balancing.scaling): use "
                    "precision='bf16' (no scaler needed) or '32', or another method"
                )

    # -- the step -------------------------------------------------------------------
    def forward_context(self) -> contextlib.AbstractContextManager:
        """Where the forward and the losses run."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def grad_scale(self) -> torch.amp.GradScaler | None:
        """What ``balancer.backward(grad_scale=...)`` receives."""
        return self.scaler

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale (fp16), before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Step the optimizer; False when fp16's inf check skipped the step."""
        if self.scaler is None:
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return not self.scaler.get_scale() < before  # lowered: a skipped step

    @staticmethod
    def to_float(values: Mapping[str, Any]) -> dict[str, Any]:
        """Half-precision floating outputs or losses as float32 (metrics and the
        engine see one dtype); others as they are."""
        return {
            k: v.float() if isinstance(v, Tensor) and v.dtype in (torch.float16, torch.bfloat16)
            else v
            for k, v in values.items()
        }

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The precision and, for fp16, the scaler's state (plain data)."""
        state: dict[str, Any] = {"name": self.name}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (a checkpoint of another precision
        loads too: only a matching scaler state is restored)."""
        scaler_state = state.get("scaler")
        if self.scaler is not None and scaler_state:
            self.scaler.load_state_dict(dict(scaler_state))


def as_precision(precision: str | Precision, device: torch.device) -> Precision:
    """A :class:`Precision` from a name or an instance (kept as is)."""
    if isinstance(precision, Precision):
        return precision
    return Precision(precision, device)
