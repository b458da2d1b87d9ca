"""Architectures by name, for configs and the CLI (``--arch mmoe``).

A registered builder is called as ``builder(tasks=..., backbone=..., **kwargs)`` where
``backbone`` is a :class:`Backbone`: a benchmark's description of its building
blocks (a fresh encoder on each call and its output size). Each architecture decides
how to use them (one encoder shared, one per task, one per expert, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..registry import Registry
from .base import MultiTaskModel
from .hard_sharing import HardSharing


@dataclass(frozen=True)
class Backbone:
    """Building blocks for registry-built architectures.

    Args:
        make_encoder: returns a fresh, independently initialised encoder.
        out_features: the size of the encoder's (flattened) output.
        make_stages: optional, returns a fresh encoder split into a list of stages
            (for architectures that mix or attend between stages).
        stage_channels: optional, the output channels/features of each stage.
        input_shape: optional, the shape of one input sample (no batch dimension),
            for architectures that read the raw input (MMoE-style gates) or find
            shapes by a dry run (which stages AdaShare may skip).
        options: optional settings for architectures built around a specific network
            (e.g. the SegNet ``filters``/``convs`` that ``mtan_segnet`` reads).
    """

    make_encoder: Callable[[], nn.Module]
    out_features: int
    make_stages: Callable[[], list[nn.Module]] | None = None
    stage_channels: tuple[int, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    options: dict[str, Any] | None = None


_ARCHITECTURES: Registry[MultiTaskModel] = Registry("architecture")
register = _ARCHITECTURES.register
available = _ARCHITECTURES.available


def get(name: str, **kwargs: Any) -> MultiTaskModel:
    """Build architecture ``name``: ``get("hard", tasks=tasks, backbone=backbone)``."""
    return _ARCHITECTURES.get(name, **kwargs)


@register("hard")
@register("shared_bottom")
def _hard_sharing(tasks, backbone: Backbone, **kwargs: Any) -> HardSharing:  # noqa: ANN001
    """Hard parameter sharing: one encoder shared by all tasks, one head each."""
    if backbone.input_shape is not None:  # dense heads may need a dry run for channels
        kwargs.setdefault("example_input", torch.zeros(2, *backbone.input_shape))
    return HardSharing(
        backbone.make_encoder(), tasks, encoder_out_features=backbone.out_features, **kwargs
    )


def builder(name: str):  # noqa: ANN201
    """The builder registered under ``name`` (raises listing the available ones)."""
    return _ARCHITECTURES.factory(name)
