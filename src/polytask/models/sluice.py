"""Sluice networks: subspaces mixed across tasks (α) and layers skipped per task (β)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import params
from ..errors import PolytaskError, ShapeMismatchError
from ..tasks import Task
from .base import MultiTaskModel
from .cross_stitch import _stitch_points
from .layers import (
    StageFactory,
    build_heads,
    check_same_shapes,
    dry_run,
    make_stage_list,
    modules_parameters,
    run_stages,
    size_resolver,
    stage_kwargs,
    unique_parameters,
)
from .registry import Backbone, register


def _alpha(n: int, init: str) -> Tensor:
    if init == "imbalanced":  # each subspace keeps 0.9, the rest spread evenly
        return torch.full((n, n), 0.1 / (n - 1)) + (0.9 - 0.1 / (n - 1)) * torch.eye(n)
    if init == "balanced":
        return torch.full((n, n), 1.0 / n)
    if init == "identity":
        return torch.eye(n)
    raise PolytaskError(f"unknown alpha_init {init!r}: 'imbalanced', 'balanced' or 'identity'")


class Sluice(MultiTaskModel):
    """Sluice networks (Ruder, Bingel, Augenstein & Søgaard, AAAI 2019, "Latent
    Multi-Task Architecture Learning").

    One column of the user's stages per task. Each column's output at a mixing point is
    split along the feature/channel axis into ``num_subspaces`` subspaces; a learned
    (K·M)×(K·M) matrix α mixes all tasks' subspaces (cross-stitch generalised to
    subspaces). Each task's head reads a learned β-weighted sum of its column's
    outputs at several layers (layer skips; those outputs must have equal shapes). An
    orthogonality penalty ``Σ ||G_{k,m}ᵀ G_{k,m'}||²_F`` between a task's subspaces
    (divided by batch², weight ``orthogonality_weight``) is returned by
    :meth:`regularization`, for the balancing machinery to add.

    Initialisation (our choices, not confirmed against the reference code): α
    ``"imbalanced"`` (0.9 kept by each subspace, the rest spread), β all on the last
    layer (the network starts as a plain stack of layers).

    Parameter split: column stages up to the last mixing point and the α are shared;
    a task's β, its stages after the last mixing point and its head are its own.

    Cost relative to hard sharing: K columns (K× backbone parameters and compute) plus
    (K·M)² weights per mixing point and the β sums.

    Args:
        make_stages: returns a fresh list of stages (called once per task).
        tasks: the task specs.
        num_subspaces: M (channels must divide by it; the paper uses 2).
        mix_after: stage indices followed by an α unit (default every stage).
        skip_from: stage indices whose outputs β combines (default: stages whose
            output shape equals the last stage's, found on ``example_input``; all
            stages without it); ``()`` disables layer skips.
        alpha_init: ``"imbalanced"``, ``"balanced"`` or ``"identity"``.
        orthogonality_weight: weight of the subspace orthogonality penalty.
        out_features / heads / example_input: as :class:`CrossStitch`.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "num_subspaces": [params.Interval(params.Integral, 1, None)],
        "orthogonality_weight": [params.Interval(params.Real, 0, None)],
    }

    def __init__(
        self,
        make_stages: StageFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        num_subspaces: int = 2,
        mix_after: Sequence[int] | None = None,
        skip_from: Sequence[int] | None = None,
        alpha_init: str = "imbalanced",
        orthogonality_weight: float = 1e-3,
        out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)
        if num_subspaces < 1:
            raise PolytaskError(f"num_subspaces must be >= 1, got {num_subspaces}")
        self.num_subspaces = num_subspaces
        self.columns = nn.ModuleList([make_stage_list(make_stages) for _ in self.task_names])
        num_stages = len(self.columns[0])
        self.mix_after = _stitch_points(mix_after, num_stages, "mix_after")
        n = len(self.task_names) * num_subspaces
        self.alphas = nn.ParameterList(
            [nn.Parameter(_alpha(n, alpha_init)) for _ in self.mix_after]
        )
        if skip_from is None:
            skip_from = self._default_skips(example_input, num_stages)
        self.skip_from = sorted(set(skip_from))
        if any(not 0 <= i < num_stages for i in self.skip_from):
            raise PolytaskError(f"skip_from {self.skip_from} outside 0..{num_stages - 1}")
        if self.skip_from:
            init = torch.zeros(len(self.skip_from))
            init[-1] = 1.0
            self.betas = nn.ParameterDict({k: nn.Parameter(init.clone()) for k in self.task_names})
        else:
            self.betas = nn.ParameterDict()
        self.orthogonality_weight = float(orthogonality_weight)
        self._subspaces: list[list[Tensor]] = []
        column = self.columns[0]
        self.heads = build_heads(
            self.tasks, heads,
            size_resolver(out_features, example_input, lambda x: run_stages(column, x),
                          [column], "the last stage's output"),
        )

    def _default_skips(self, example_input: Tensor | None, num_stages: int) -> list[int]:
        if example_input is None:
            return list(range(num_stages))
        shapes = []

        def run(x: Tensor) -> Tensor:
            for stage in self.columns[0]:
                x = stage(x)
                shapes.append(tuple(x.shape))
            return x

        dry_run(run, example_input, self.columns[0])
        return [i for i, s in enumerate(shapes) if s == shapes[-1]]

    def _mix(self, feats: list[Tensor], alpha: Tensor, stage: int) -> list[Tensor]:
        check_same_shapes(feats, f"sluice unit after stage {stage}")
        m = self.num_subspaces
        if feats[0].shape[1] % m:
            raise ShapeMismatchError(
                f"sluice unit after stage {stage}: {feats[0].shape[1]} channels do not split "
                f"into num_subspaces={m}"
            )
        chunks = [c for f in feats for c in f.chunk(m, dim=1)]  # K·M of (B, C/M, ...)
        if self.training and self.orthogonality_weight:
            self._subspaces.append(chunks)
        mixed = torch.einsum("ij,j...->i...", alpha, torch.stack(chunks))
        return [torch.cat(list(mixed[k * m:(k + 1) * m]), dim=1) for k in range(len(feats))]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self._subspaces = []
        feats = [x] * len(self.task_names)
        units = dict(zip(self.mix_after, self.alphas))
        kept: list[list[Tensor]] = []
        for i in range(len(self.columns[0])):
            feats = [column[i](f) for column, f in zip(self.columns, feats)]
            if i in units:
                feats = self._mix(feats, units[i], i)
            if i in self.skip_from:
                kept.append(feats)
        out = {}
        for t, name in enumerate(self.task_names):
            h = feats[t]
            if self.skip_from:
                layers = [layer[t] for layer in kept]
                check_same_shapes(layers, f"layer skips (β) of task {name!r}; set skip_from")
                beta = self.betas[name]
                h = sum(b * layer for b, layer in zip(beta, layers))
            out[name] = self.heads[name](h)
        return out

    def regularization(self) -> Tensor | None:
        """``orthogonality_weight × Σ_{task, unit, m<m'} ||G_mᵀ G_m'||²_F / batch²``."""
        if not self._subspaces or not self.orthogonality_weight:
            return None
        m = self.num_subspaces
        total = self._subspaces[0][0].new_zeros(())
        for chunks in self._subspaces:
            for k in range(len(self.task_names)):
                own = [c.reshape(c.shape[0], -1) for c in chunks[k * m:(k + 1) * m]]
                batch = own[0].shape[0]
                for a in range(m):
                    for b in range(a + 1, m):
                        total = total + (own[a].T @ own[b]).pow(2).sum() / batch**2
        return self.orthogonality_weight * total

    def _last_mix(self) -> int:
        return self.mix_after[-1] if self.mix_after else -1

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        last = self._last_mix()
        return unique_parameters(
            modules_parameters(s for c in self.columns for s in list(c)[: last + 1]),
            self.alphas,
        )

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        index = self.task_names.index(name)
        tail = list(self.columns[index])[self._last_mix() + 1:]
        betas = [self.betas[name]] if name in self.betas else []
        return unique_parameters(modules_parameters([*tail, self.heads[name]]), betas)


@register("sluice")
def _sluice(tasks, backbone: Backbone, **kwargs: Any) -> Sluice:  # noqa: ANN001
    """Sluice (Ruder et al., AAAI 2019): subspace mixing (alpha) and layer skips (beta)."""
    kwargs = stage_kwargs(backbone, "sluice", kwargs)
    if "example_input" not in kwargs and "skip_from" not in kwargs:
        channels = backbone.stage_channels
        if channels is not None:
            kwargs["skip_from"] = [i for i, c in enumerate(channels) if c == channels[-1]]
    return Sluice(backbone.make_stages, tasks, **kwargs)
