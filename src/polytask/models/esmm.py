"""Entire Space Multi-task Model: pCTCVR = pCTR × pCVR, trained on all impressions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Binary, Task
from .base import MultiTaskModel
from .layers import module_out_features, modules_parameters
from .registry import Backbone, register


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate on both sides of ``-log 2``."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def product_logit(logit_a: Tensor, logit_b: Tensor) -> Tensor:
    """The logit of ``σ(a)·σ(b)``, computed in log space (no overflow, no 0·log 0)."""
    log_p = (F.logsigmoid(logit_a) + F.logsigmoid(logit_b)).clamp(max=-1e-7)
    return log_p - log1mexp(log_p)


class ESMM(MultiTaskModel):
    """Entire Space Multi-task Model (Ma, Zhao, Huang, Wang, Hu, Zhu & Gai, SIGIR 2018).

    Post-view clicks and post-click conversions follow impression → click →
    conversion. ESMM predicts ``pCTR = σ(a)`` and ``pCVR = σ(b)`` with two towers over
    a shared encoder (the paper shares the embedding layer) and trains on the whole
    impression space with two losses: CTR (label: click) and CTCVR (label: click and
    conversion, predicted as ``pCTCVR = pCTR × pCVR``). CVR is never fitted on clicked
    samples alone, which removes the sample-selection bias and the sparsity of the
    click space.

    The tasks a user declares (``Binary`` heads output logits, so ESMM outputs the
    logit of pCTCVR, computed stably in log space; the ``Binary`` loss on it is the
    paper's cross-entropy on ``pCTR × pCVR``)::

        tasks = [Binary("ctr"),     # target: click (0/1) for every impression
                 Binary("ctcvr")]   # target: click AND conversion, every impression

    Optionally a third task, ``cvr=`` (e.g. ``Binary("cvr", auxiliary=True)`` with the
    conversion label and -1 (missing) where there was no click), receives the CVR
    logit so its metrics (CVR AUC on clicked samples, as the paper reports) are
    computed; its loss then trains the CVR tower on the click space too — give it weight
    0 or leave it out to stay with the paper. ``last_cvr_logits`` always holds the last
    forward's CVR logits.

    Parameter split: the encoder and the CTR tower are shared (the CTCVR loss reaches
    the CTR tower through the product); the CVR tower belongs to ``ctcvr`` (or is shared
    when a ``cvr`` task also reads it); ``ctr`` owns no parameter of its own. The
    encoder output is the shared representation.

    Cost relative to hard sharing with two heads: none (two towers and one product).

    Args:
        encoder: the shared module (embeddings, MLP, ...).
        tasks: the task specs, holding ``ctr`` and ``ctcvr`` (and optionally ``cvr``).
        ctr / ctcvr / cvr: the names of those tasks.
        towers: optional ``{"ctr": module, "cvr": module}`` (each one logit per sample);
            default built from the task specs (``tasks[ctr].build_head``, and the cvr
            task's or else the ctcvr task's for the CVR tower).
        encoder_out_features / example_input: to size the default towers.
    """

    def __init__(
        self,
        encoder: nn.Module,
        tasks: Mapping[str, Task] | Iterable[Task],
        ctr: str = "ctr",
        ctcvr: str = "ctcvr",
        cvr: str | None = None,
        towers: Mapping[str, nn.Module] | None = None,
        encoder_out_features: int | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)
        self.ctr, self.ctcvr, self.cvr = ctr, ctcvr, cvr
        expected = {ctr, ctcvr} | ({cvr} if cvr else set())
        if set(self.task_names) != expected:
            raise PolytaskError(
                f"ESMM needs exactly the tasks {sorted(expected)} (ctr=, ctcvr=, cvr= name "
                f"them); got {list(self.task_names)}"
            )
        for name in expected:
            if not isinstance(self.tasks[name], Binary):
                raise PolytaskError(f"ESMM task {name!r} must be a Binary task")
        towers = dict(towers or {})
        unknown = set(towers) - {"ctr", "cvr"}
        if unknown:
            raise PolytaskError(f"ESMM towers are 'ctr' and 'cvr'; got {sorted(unknown)}")
        self.encoder = encoder
        if len(towers) < 2:
            size = module_out_features(encoder, encoder_out_features, example_input,
                                       "the encoder's output")
            towers.setdefault("ctr", nn.Sequential(nn.Flatten(),
                                                   self.tasks[ctr].build_head(size)))
            spec = self.tasks[cvr or ctcvr]
            towers.setdefault("cvr", nn.Sequential(nn.Flatten(), spec.build_head(size)))
        self.ctr_tower, self.cvr_tower = towers["ctr"], towers["cvr"]
        self.last_cvr_logits: Tensor | None = None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.encoder(x)
        self.shared_representation = h
        n = h.shape[0]
        a = self.ctr_tower(h).reshape(n, 1)
        b = self.cvr_tower(h).reshape(n, 1)
        self.last_cvr_logits = b.detach()
        out = {self.ctr: a, self.ctcvr: product_logit(a, b)}
        if self.cvr:
            out[self.cvr] = b
        return out

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        shared = [self.encoder, self.ctr_tower] + ([self.cvr_tower] if self.cvr else [])
        return modules_parameters(shared)

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        if name == self.ctcvr and not self.cvr:
            return self.cvr_tower.parameters()
        return iter(())


@register("esmm")
def _esmm(tasks, backbone: Backbone, **kwargs: Any) -> ESMM:  # noqa: ANN001
    """ESMM (Ma et al., SIGIR 2018): pCTCVR = pCTR x pCVR on the entire space."""
    kwargs.setdefault("encoder_out_features", backbone.out_features)
    return ESMM(backbone.make_encoder(), tasks, **kwargs)
