"""Building blocks shared by the architectures: heads, stages, size inference, mixing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import PolytaskError, ShapeMismatchError
from ..tasks import Task, is_dense

StageFactory = Callable[[], Sequence[nn.Module]]


def build_heads(
    tasks: Mapping[str, Task],
    heads: Mapping[str, nn.Module] | None,
    in_features: Callable[[], int],
    in_channels: Callable[[], int] | None = None,
) -> nn.ModuleDict:
    """``{task: head}``: the user's heads, the missing ones built from the task specs.

    ``in_features`` is called only when a head must be built (so a model whose heads
    are all given never needs to know its representation size). Default heads flatten
    their input first — except those of dense (per-pixel) tasks, which read the feature
    map itself and are built from its channel count, ``in_channels()``.
    """
    heads = dict(heads or {})
    unknown = set(heads) - set(tasks)
    if unknown:
        raise PolytaskError(
            f"heads given for unknown tasks {sorted(unknown)}; tasks are {list(tasks)}"
        )
    missing = [name for name in tasks if name not in heads]
    flat = [name for name in missing if not is_dense(tasks[name])]
    dense = [name for name in missing if is_dense(tasks[name])]
    if flat:
        size = int(in_features())
        for name in flat:
            heads[name] = nn.Sequential(nn.Flatten(), tasks[name].build_head(size))
    if dense:
        if in_channels is None:
            raise PolytaskError(
                f"dense task(s) {dense}: this architecture builds no default per-pixel "
                "head; give heads={task: module} mapping its feature map to the prediction"
            )
        channels = int(in_channels())
        for name in dense:
            heads[name] = tasks[name].build_head(channels)
    return nn.ModuleDict({name: heads[name] for name in tasks})


def channels_resolver(
    example_input: Tensor | None, run: Callable[[Tensor], Tensor],
    modules: Iterable[nn.Module], what: str,
) -> Callable[[], int]:
    """A thunk giving the channel count of a (N, C, H, W) feature map by a dry run (for
    the heads of dense tasks)."""
    mods = list(modules)

    def resolve() -> int:
        if example_input is None:
            raise PolytaskError(
                f"cannot tell the channels of {what} for dense heads: give "
                "example_input=... (or give every head yourself)"
            )
        out = dry_run(run, example_input, *mods)
        if out.dim() != 4:
            raise ShapeMismatchError(
                f"dense heads need a (N, C, H, W) feature map, but {what} is "
                f"{tuple(out.shape)}"
            )
        return int(out.shape[1])

    return resolve


def make_stage_list(make_stages: StageFactory, what: str = "make_stages") -> nn.ModuleList:
    """Call a stage factory and check that it returns a non-empty list of modules."""
    stages = make_stages()
    if isinstance(stages, nn.Module) and not isinstance(stages, (nn.ModuleList, nn.Sequential)):
        stages = [stages]
    stages = list(stages)
    if not stages or not all(isinstance(s, nn.Module) for s in stages):
        raise PolytaskError(f"{what}() must return a non-empty list of nn.Module stages")
    return nn.ModuleList(stages)


@torch.no_grad()
def dry_run(module: Callable[[Tensor], Tensor], example_input: Tensor, *modules: nn.Module):
    """Run ``module(example_input)`` in eval mode (for shapes), restoring train modes."""
    modes = [(m, m.training) for m in modules]
    for m, _ in modes:
        m.eval()
    try:
        return module(example_input)
    finally:
        for m, mode in modes:
            m.train(mode)


def flat_size(t: Tensor) -> int:
    """The per-sample size of a batch tensor once flattened."""
    return int(t.reshape(t.shape[0], -1).shape[1])


def size_resolver(
    given: int | None, example_input: Tensor | None, run: Callable[[Tensor], Tensor],
    modules: Iterable[nn.Module], what: str,
) -> Callable[[], int]:
    """A thunk giving a representation size: ``given`` or a dry run on ``example_input``."""
    mods = list(modules)

    def resolve() -> int:
        if given is not None:
            return int(given)
        if example_input is None:
            raise PolytaskError(
                f"cannot tell the size of {what}: give out_features=... or "
                "example_input=... (or give every head yourself)"
            )
        return flat_size(dry_run(run, example_input, *mods))

    return resolve


def module_out_features(module: nn.Module, given: int | None, example_input: Tensor | None,
                        what: str) -> int:
    """The flattened output size of ``module``: given, an attribute, or a dry run."""
    if given is not None:
        return int(given)
    for attr in ("out_features", "output_dim", "out_dim"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return size_resolver(None, example_input, module, [module], what)()


def run_stages(stages: Iterable[nn.Module], x: Tensor) -> Tensor:
    """Apply stages in sequence."""
    for stage in stages:
        x = stage(x)
    return x


def mix(weights: Tensor, stacked: Tensor) -> Tensor:
    """Per-sample convex mixture: weights (B, E), stacked (B, E, ...) -> (B, ...)."""
    shape = weights.shape + (1,) * (stacked.dim() - weights.dim())
    return (weights.reshape(shape) * stacked).sum(dim=1)


def check_same_shapes(tensors: Sequence[Tensor], what: str) -> None:
    """Raise ShapeMismatchError when tensors that are mixed differ in shape."""
    first = tuple(tensors[0].shape)
    for i, t in enumerate(tensors[1:], 1):
        if tuple(t.shape) != first:
            raise ShapeMismatchError(
                f"{what}: cannot mix tensors of shapes {first} and {tuple(t.shape)} (input {i})"
            )


def unique_parameters(*groups: Iterable[nn.Parameter]) -> Iterator[nn.Parameter]:
    """Parameters of several groups, each once, in order."""
    seen: set[int] = set()
    for group in groups:
        for p in group:
            if id(p) not in seen:
                seen.add(id(p))
                yield p


def modules_parameters(modules: Iterable[nn.Module | None]) -> Iterator[nn.Parameter]:
    """The parameters of several modules (None entries skipped), each once."""
    return unique_parameters(*(m.parameters() for m in modules if m is not None))


# -- helpers for registry builders -------------------------------------------------------
def backbone_stages(backbone, arch: str) -> StageFactory:  # noqa: ANN001
    """The backbone's stage factory, or a clear error naming the architecture."""
    if backbone.make_stages is None:
        raise PolytaskError(
            f"architecture {arch!r} needs a Backbone with make_stages (the encoder split into "
            "stages); this benchmark's backbone gives only make_encoder"
        )
    return backbone.make_stages


def backbone_example(backbone) -> Tensor | None:  # noqa: ANN001
    """A zero batch of two samples of the backbone's input shape, when it is known."""
    if backbone.input_shape is None:
        return None
    return torch.zeros(2, *backbone.input_shape)


def backbone_in_features(backbone, arch: str) -> int:  # noqa: ANN001
    """The flattened input size (for gates that read the raw input)."""
    if backbone.input_shape is None:
        raise PolytaskError(
            f"architecture {arch!r} needs Backbone.input_shape (its gates read the raw input)"
        )
    size = 1
    for d in backbone.input_shape:
        size *= int(d)
    return size


def stage_kwargs(backbone, arch: str, kwargs: dict) -> dict:  # noqa: ANN001
    """Head-size arguments for stage-based builders: a dry run when the input shape is
    known, else the backbone's ``out_features`` (the stages compose to the encoder)."""
    backbone_stages(backbone, arch)
    example = backbone_example(backbone)
    if example is not None:
        kwargs.setdefault("example_input", example)
    else:
        kwargs.setdefault("out_features", backbone.out_features)
    return kwargs


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # noqa: ANN001
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001
        return -ctx.scale * grad, None


def reverse_gradient(x: Tensor, scale: float = 1.0) -> Tensor:
    """Identity forward; multiplies the gradient by ``-scale`` backward (Ganin &
    Lempitsky, ICML 2015)."""
    return _ReverseGradient.apply(x, float(scale))


class GradientReversal(nn.Module):
    """Gradient reversal layer (Ganin & Lempitsky, ICML 2015, "Unsupervised domain
    adaptation by backpropagation").

    Identity in the forward pass; the gradient is multiplied by ``-scale`` on the way
    back. Put it at the start of an adversarial auxiliary task's head: the head learns
    to predict its target while the shared layers learn to remove that information
    (e.g. a domain or a protected attribute). Extra cost per step: none.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return reverse_gradient(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def with_adversarial_head(task: Task, scale: float = 1.0) -> Task:
    """A copy of ``task`` whose head starts with a :class:`GradientReversal` layer, then
    the task's own head (its ``head`` factory, or a linear layer): an adversarial
    auxiliary task, e.g. ``with_adversarial_head(Binary("domain", auxiliary=True))``."""
    import dataclasses

    def build(in_features: int) -> nn.Module:
        inner = (task.head(in_features) if task.head is not None
                 else nn.Linear(in_features, task.out_features))
        return nn.Sequential(GradientReversal(scale), inner)

    return dataclasses.replace(task, head=build)
