"""Multi-Task Attention Network: a shared trunk with task soft-attention per stage."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import PolytaskError, ShapeMismatchError
from ..tasks import Task
from .base import MultiTaskModel
from .layers import (
    StageFactory,
    backbone_example,
    backbone_stages,
    build_heads,
    dry_run,
    make_stage_list,
    modules_parameters,
)
from .registry import Backbone, register


def _attention(in_size: int, out_size: int, spatial: bool, norm: bool) -> nn.Module:
    """g: [1×1 conv, BN, ReLU, 1×1 conv, BN, sigmoid] (or its dense analogue)."""
    if spatial:
        bn = nn.BatchNorm2d if norm else (lambda c: nn.Identity())
        return nn.Sequential(
            nn.Conv2d(in_size, out_size, 1), bn(out_size), nn.ReLU(),
            nn.Conv2d(out_size, out_size, 1), bn(out_size), nn.Sigmoid(),
        )
    # dense analogue without BatchNorm: on (N, C) features, many of them zero after a
    # ReLU, BatchNorm before the sigmoid made evaluation-mode masks differ badly from
    # training-mode ones (MultiMNIST: 0.84 train-mode vs 0.41 eval-mode accuracy)
    return nn.Sequential(
        nn.Linear(in_size, out_size), nn.ReLU(),
        nn.Linear(out_size, out_size), nn.Sigmoid(),
    )


def _shared_block(prev: torch.Size, cur: torch.Size, norm: bool) -> nn.Module:
    """f: the shared layer carrying the previous attended feature to this stage's size
    (3×3 conv, BN, ReLU; then pooling to the stage's resolution in forward)."""
    if len(prev) == 4 and len(cur) == 4:
        bn = nn.BatchNorm2d(cur[1]) if norm else nn.Identity()
        return nn.Sequential(nn.Conv2d(prev[1], cur[1], 3, padding=1), bn, nn.ReLU())
    in_size = int(torch.Size(prev[1:]).numel())
    if len(cur) != 2:
        raise PolytaskError(
            f"MTAN: a stage maps a {len(prev)}-d feature {tuple(prev)} to a {len(cur)}-d one "
            f"{tuple(cur)}; supported stage outputs are (N, C, H, W) after (N, C, H, W), or "
            "(N, C) after anything"
        )
    return nn.Sequential(nn.Flatten(), nn.Linear(in_size, cur[1]), nn.ReLU())


def _match(t: Tensor, like: Tensor) -> Tensor:
    """Resize a (N, C, H, W) tensor to ``like``'s resolution (max-pool down, else
    bilinear up)."""
    if t.dim() != 4 or t.shape[-2:] == like.shape[-2:]:
        return t
    if t.shape[-2] >= like.shape[-2] and t.shape[-1] >= like.shape[-1]:
        return F.adaptive_max_pool2d(t, like.shape[-2:])
    return F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=False)


class MTAN(MultiTaskModel):
    """Multi-Task Attention Network (Liu, Johns & Davison, CVPR 2019).

    One trunk of the user's stages is shared. Each task has, at every stage ``j``, a
    soft-attention module ``g_k^j`` whose mask ``a_k^j ∈ (0, 1)`` selects features of
    the shared stage output ``p^j``: ``â_k^j = a_k^j ⊙ p^j`` with
    ``a_k^1 = g_k^1(p^1)`` and ``a_k^j = g_k^j([p^j ; f^j(â_k^{j-1})])``, where the
    shared ``f^j`` (3×3 conv, BN, ReLU, then pooling to the stage's resolution) carries
    the task's previous attended feature. Task ``k``'s head reads ``â_k^L``.

    Generic adaptation: the paper feeds ``g`` the block's intermediate feature
    ``u^j`` and masks its output; with arbitrary user stages we use the stage output
    for both. Stages may output (N, C, H, W) or (N, C) features (for the latter, linear
    analogues of the convolutions, without BatchNorm, which made evaluation-mode masks
    unstable there); their shapes are found by a dry run on ``example_input``.

    Parameter split: trunk stages and the ``f^j`` are shared; a task's attention
    modules and head are its own. No single shared representation: the attention
    modules read the trunk's intermediate features, so ``shared_representation`` is
    None.

    Cost relative to hard sharing: the trunk once, plus per stage one ``f^j`` and K
    attention modules (two 1×1 convolutions each) and K masked copies of the stage's
    output; per task roughly ``2·C_j²`` extra weights per stage.

    Args:
        make_stages: returns the list of trunk stages (called once).
        tasks: the task specs.
        example_input: a sample batch (at least 2 samples), to find the stages' shapes.
        heads: optional ``{task: module}``; default heads read the flattened ``â_k^L``.
        norm: BatchNorm in the convolutional attention and shared layers, as the paper
            (True).
    """

    def __init__(
        self,
        make_stages: StageFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        example_input: Tensor | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        norm: bool = True,
    ) -> None:
        super().__init__(tasks)
        self.stages = make_stage_list(make_stages)
        if example_input is None:
            raise PolytaskError("MTAN needs example_input=... to find each stage's shape")
        shapes = self._shapes(example_input)
        self.shared_blocks = nn.ModuleList(
            [nn.Identity()] + [_shared_block(shapes[j - 1], shapes[j], norm)
                               for j in range(1, len(shapes))]
        )
        self.attention = nn.ModuleDict()
        for k in self.task_names:
            mods = []
            for j, shape in enumerate(shapes):
                spatial = len(shape) == 4
                if not spatial and len(shape) != 2:
                    raise PolytaskError(
                        f"MTAN: stage {j} outputs {tuple(shape)}; supported are (N, C, H, W) "
                        "and (N, C)"
                    )
                channels = shape[1]
                in_size = channels if j == 0 else 2 * channels
                mods.append(_attention(in_size, channels, spatial, norm))
            self.attention[k] = nn.ModuleList(mods)
        last = shapes[-1]
        self.heads = build_heads(self.tasks, heads, lambda: int(torch.Size(last[1:]).numel()),
                                 lambda: int(last[1]))

    def _shapes(self, example_input: Tensor) -> list[torch.Size]:
        shapes = []

        def run(x: Tensor) -> Tensor:
            for stage in self.stages:
                x = stage(x)
                shapes.append(x.shape)
            return x

        if example_input.shape[0] < 2:
            raise ShapeMismatchError("MTAN: example_input needs at least 2 samples (BatchNorm)")
        dry_run(run, example_input, self.stages)
        return shapes

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        attended: dict[str, Tensor] = {}
        for j, stage in enumerate(self.stages):
            x = stage(x)
            for k in self.task_names:
                if j == 0:
                    a_in = x
                else:
                    carried = _match(self.shared_blocks[j](attended[k]), x)
                    a_in = torch.cat([x, carried], dim=1)
                attended[k] = self.attention[k][j](a_in) * x
        return {k: self.heads[k](attended[k]) for k in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return modules_parameters([self.stages, self.shared_blocks])

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        return modules_parameters([self.attention[name], self.heads[name]])


@register("mtan")
def _mtan(tasks, backbone: Backbone, **kwargs: Any) -> MTAN:  # noqa: ANN001
    """MTAN (Liu et al., CVPR 2019): shared trunk, task soft-attention per stage."""
    backbone_stages(backbone, "mtan")
    example = kwargs.pop("example_input", None)
    if example is None:
        example = backbone_example(backbone)
    if example is None:
        raise PolytaskError("architecture 'mtan' needs Backbone.input_shape (for a dry run)")
    return MTAN(backbone.make_stages, tasks, example_input=example, **kwargs)

