"""PyTorch Lightning integration: a ``LightningModule`` over polytask's balancers.

:class:`MultiTaskModule` runs the plain-loop protocol (docs/plain_loop.md) inside
``training_step`` with manual optimization; the final gradients of every step go
through ``self.manual_backward``, so Lightning's DDP gradient sync and precision
plugins apply. See docs/lightning.md. Needs the ``lightning`` extra::

    pip install polytask[lightning]
"""

from __future__ import annotations

from ..errors import MissingExtraError

try:
    import lightning.pytorch  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised with lightning hidden
    raise MissingExtraError(
        "polytask.lightning needs PyTorch Lightning (>= 2.2), which is not installed: "
        "pip install polytask[lightning]"
    ) from error

from .module import SUPPORTED_STRATEGIES, MultiTaskModule, check_strategy

__all__ = ["SUPPORTED_STRATEGIES", "MultiTaskModule", "check_strategy"]
