"""Hard parameter sharing: one shared encoder, one head per task."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Task, is_dense
from ..tasks.graph import extra_input_features, has_inputs_from, prediction_order, run_heads
from .base import MultiTaskModel


def infer_out_features(encoder: nn.Module, example_input: Tensor | None) -> int:
    """The feature size an encoder produces: from ``out_features`` or a dry run."""
    for attr in ("out_features", "output_dim", "out_dim"):
        value = getattr(encoder, attr, None)
        if isinstance(value, int):
            return value
    if example_input is None:
        raise PolytaskError(
            "cannot tell the encoder's output size: give encoder_out_features=... or "
            "example_input=... (or give every head yourself)"
        )
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = encoder(example_input)
    encoder.train(was_training)
    return int(out.reshape(out.shape[0], -1).shape[1])


def infer_out_channels(encoder: nn.Module, example_input: Tensor | None) -> int:
    """The channels of an encoder's (N, C, H, W) feature map: from ``out_channels`` or a
    dry run (for the heads of dense tasks)."""
    value = getattr(encoder, "out_channels", None)
    if isinstance(value, int):
        return value
    if example_input is None:
        raise PolytaskError(
            "cannot tell the channels of the encoder's feature map for dense heads: give "
            "the encoder an out_channels attribute, example_input=..., or every head"
        )
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = encoder(example_input)
    encoder.train(was_training)
    if out.dim() != 4:
        raise PolytaskError(
            f"dense heads need a (N, C, H, W) feature map; the encoder gives {tuple(out.shape)}"
        )
    return int(out.shape[1])


class HardSharing(MultiTaskModel):
    """Shared encoder with one head per task (Caruana, Machine Learning 1997).

    The encoder's output is the shared representation; each head maps it to its
    task's output. Heads the user does not give are built from the task specs
    (``task.build_head(in_features)``, by default a linear layer), so the encoder's
    output size must be known: from ``encoder_out_features``, an ``out_features``
    attribute of the encoder, or a dry run on ``example_input``. The representation
    is flattened to (batch, features) before default heads. A task declared with
    ``inputs_from=(...)`` gets, as head input, the flattened representation
    concatenated with those tasks' predictions (:mod:`polytask.tasks.graph`).
    Dense (per-pixel) tasks get heads that read the (N, C, H, W) feature map itself,
    built from its channels (``out_channels`` of the encoder, or a dry run).

    Extra cost per step: none beyond the encoder and heads themselves.

    Args:
        encoder: any module mapping the input to a representation.
        tasks: the task specs (a sequence or a name -> Task mapping).
        heads: optional ``{task: module}``; missing ones are built from the specs.
        encoder_out_features: the representation size, when it cannot be inferred.
        example_input: a sample batch to infer the representation size.
    """

    supports_inputs_from = True

    def __init__(
        self,
        encoder: nn.Module,
        tasks: Mapping[str, Task] | Iterable[Task],
        heads: Mapping[str, nn.Module] | None = None,
        encoder_out_features: int | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)
        heads = dict(heads or {})
        unknown = set(heads) - set(self.tasks)
        if unknown:
            raise PolytaskError(
                f"heads given for unknown tasks {sorted(unknown)}; tasks are {list(self.tasks)}"
            )
        self.encoder = encoder
        dense = [n for n, t in self.tasks.items() if n not in heads and is_dense(t)]
        if dense:  # per-pixel heads read the feature map: built from its channels
            channels = infer_out_channels(encoder, example_input)
            for name in dense:
                heads[name] = self.tasks[name].build_head(channels)
        if len(heads) < len(self.tasks):
            size = encoder_out_features or infer_out_features(encoder, example_input)
            extra = extra_input_features(self.tasks)  # estimates as features (inputs_from)
            for name, task in self.tasks.items():
                if name not in heads:
                    heads[name] = nn.Sequential(nn.Flatten(), task.build_head(size + extra[name]))
        self.heads = nn.ModuleDict({name: heads[name] for name in self.task_names})
        self._order = prediction_order(self.tasks) if has_inputs_from(self.tasks) else None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        representation = self.encoder(x)
        self.shared_representation = representation
        if self._order is not None:
            return run_heads(self.tasks, self.heads, representation, self._order)
        return {name: head(representation) for name, head in self.heads.items()}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        return self.heads[name].parameters()
