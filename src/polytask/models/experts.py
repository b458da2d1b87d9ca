"""Mixtures of experts with task gates: MMoE, DSelect-k, CGC and PLE."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import params
from ..errors import PolytaskError
from ..tasks import Task
from .base import MultiTaskModel
from .layers import (
    backbone_example,
    backbone_in_features,
    build_heads,
    mix,
    module_out_features,
    modules_parameters,
)
from .registry import Backbone, register

ExpertFactory = Callable[[], nn.Module]


def _check_count(value: int, what: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or value < minimum:
        raise PolytaskError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _input_features(in_features: int | None, example_input: Tensor | None, arch: str) -> int:
    if in_features is not None:
        return int(in_features)
    if example_input is None:
        raise PolytaskError(
            f"{arch} gates read the flattened input: give in_features=... or example_input=..."
        )
    return int(example_input.reshape(example_input.shape[0], -1).shape[1])


class SoftmaxGate(nn.Module):
    """``softmax(W x)`` over ``num_experts`` (one linear layer on the flattened input)."""

    def __init__(self, in_features: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_experts)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.linear(x.flatten(1)), dim=-1)


class MMoE(MultiTaskModel):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

    ``num_experts`` experts (each a fresh module from the user's ``make_expert``) read
    the input; each task ``k`` has its own gate ``g_k(x) = softmax(W_k x)`` over the
    experts and its head (tower) reads ``Σ_e g_k(x)_e f_e(x)``.

    Parameter split: the experts are shared; a task's gate and head are its own. The
    stacked expert outputs ``(batch, num_experts, ...)`` are the shared
    representation (every task reads only them, so representation-gradient balancers
    apply). ``last_gate_weights`` holds the detached gate weights of the last forward.

    Cost relative to hard sharing with the same module as encoder: ``E`` times the
    encoder's parameters and compute (E = ``num_experts``), plus ``K`` gates of
    ``in_features × E`` weights.

    Args:
        make_expert: returns a fresh expert module (any encoder).
        tasks: the task specs.
        num_experts: E (the paper uses 8 on census-income).
        in_features: the flattened input size (gates read the raw input); or
            ``example_input``.
        expert_out_features: the experts' flattened output size (for default heads).
        heads: optional ``{task: module}`` towers; missing ones are built from the specs.
        example_input: a sample batch, to infer sizes.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "num_experts": [params.Interval(params.Integral, 1, None)],
        "in_features": [None, params.Interval(params.Integral, 1, None)],
        "expert_out_features": [None, params.Interval(params.Integral, 1, None)],
    }

    def __init__(
        self,
        make_expert: ExpertFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        num_experts: int = 8,
        in_features: int | None = None,
        expert_out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)
        self.num_experts = _check_count(num_experts, "num_experts")
        self.experts = nn.ModuleList([make_expert() for _ in range(self.num_experts)])
        d_in = _input_features(in_features, example_input, type(self).__name__)
        self.in_features = d_in
        self.gates = nn.ModuleDict({k: self._make_gate(d_in) for k in self.task_names})
        self.heads = build_heads(
            self.tasks,
            heads,
            lambda: module_out_features(
                self.experts[0], expert_out_features, example_input, "the experts' output"
            ),
        )
        self.last_gate_weights: dict[str, Tensor] = {}

    def _make_gate(self, in_features: int) -> nn.Module:
        return SoftmaxGate(in_features, self.num_experts)

    def gate_weights(self, x: Tensor) -> dict[str, Tensor]:
        """``{task: (batch, num_experts) gate weights}`` for input ``x``."""
        return {k: self.gates[k](x) for k in self.task_names}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        stacked = torch.stack([expert(x) for expert in self.experts], dim=1)
        self.shared_representation = stacked
        weights = self.gate_weights(x)
        self.last_gate_weights = {k: w.detach() for k, w in weights.items()}
        return {k: self.heads[k](mix(weights[k], stacked)) for k in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.experts.parameters()

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        return modules_parameters([self.gates[name], self.heads[name]])


def smooth_step(t: Tensor, gamma: float) -> Tensor:
    """The cubic smooth-step of DSelect-k: 0 below -γ/2, 1 above γ/2, C¹ in between."""
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t),
                       torch.where(t >= gamma / 2, torch.ones_like(t), cubic))


class DSelectGate(nn.Module):
    """A DSelect-k gate: ``k`` differentiable single-expert selectors, softmax-combined.

    Each selector encodes an expert index in ``m = ceil(log2 E)`` smooth-step "bits";
    its weight on expert ``i`` is ``Π_j (S(z_j) if bit_j(i) else 1 - S(z_j))``. With
    ``per_example`` the ``z`` and selector logits are linear in the input, else they
    are free parameters (static gate). Initialisation as the official code:
    ``z ~ U(-γ/100, γ/100)``, selector logits ``~ U(-0.05, 0.05)``.
    """

    def __init__(
        self, in_features: int, num_experts: int, k: int, gamma: float, per_example: bool
    ) -> None:
        super().__init__()
        self.num_experts, self.k, self.gamma = num_experts, k, gamma
        self.num_bits = max(1, math.ceil(math.log2(num_experts)))
        self.per_example = per_example
        if per_example:
            self.z = nn.Linear(in_features, k * self.num_bits)
            self.w = nn.Linear(in_features, k)
            tensors = [*self.z.parameters()]
            weights = [*self.w.parameters()]
        else:
            self.z = nn.Parameter(torch.empty(k, self.num_bits))
            self.w = nn.Parameter(torch.empty(k))
            tensors, weights = [self.z], [self.w]
        with torch.no_grad():
            for p in tensors:
                p.uniform_(-gamma / 100, gamma / 100)
            for p in weights:
                p.uniform_(-0.05, 0.05)
        codes = torch.tensor(
            [[(i >> (self.num_bits - 1 - j)) & 1 for j in range(self.num_bits)]
             for i in range(num_experts)],
            dtype=torch.bool,
        )
        self.register_buffer("codes", codes, persistent=False)  # (E, m)
        self.last_selectors: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        if self.per_example:
            flat = x.flatten(1)
            z = self.z(flat).reshape(n, self.k, 1, self.num_bits)
            w = torch.softmax(self.w(flat), dim=-1)  # (B, k)
        else:
            z = self.z.reshape(1, self.k, 1, self.num_bits).expand(n, -1, -1, -1)
            w = torch.softmax(self.w, dim=-1).expand(n, -1)
        s = smooth_step(z, self.gamma)  # (B, k, 1, m)
        selectors = torch.where(self.codes, s, 1.0 - s).prod(dim=-1)  # (B, k, E)
        self.last_selectors = selectors
        return torch.einsum("bk,bke->be", w, selectors)

    def regularization(self) -> Tensor:
        """Entropy of each selector (drives them to one-hot), plus the official code's
        penalty ``Σ 1/Σ_i r_i`` pushing the mass onto real experts when E is not a power
        of two."""
        r = self.last_selectors
        if r is None:
            return self.codes.new_zeros((), dtype=torch.float32)
        penalty = -(r * torch.log(r + 1e-6)).sum(dim=-1).mean()
        if self.num_experts != 2**self.num_bits:
            penalty = penalty + (1.0 / r.sum(dim=-1)).mean()
        return penalty


class DSelectK(MMoE):
    """MMoE with DSelect-k gates (Hazimeh et al., NeurIPS 2021).

    Each task's gate selects (at convergence) exactly ``k`` experts through
    differentiable binary-encoded selectors and a smooth-step (see
    :class:`DSelectGate`); the mixture is otherwise MMoE's. The selectors' entropy
    regulariser (weight ``entropy_weight``) is returned by :meth:`regularization`, so a
    balancer wrapped with :func:`polytask.balancing.penalty.attach` adds it.

    Parameter split as :class:`MMoE` (a task's gate is its own). Cost relative to hard
    sharing: ``E`` times the encoder, plus per task ``in_features × k(⌈log2 E⌉ + 1)``
    gate weights; the gate's ``E × k × log2 E`` products are negligible.

    Args:
        num_nonzeros: ``k``, the experts each task selects.
        gamma: the smooth-step width γ (official default 1.0).
        entropy_weight: the weight of the entropy regulariser (our default 1e-3).
        per_example: per-sample gates (True, as in the MTL experiments) or static.
        (other arguments as :class:`MMoE`)
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "num_nonzeros": [params.Interval(params.Integral, 1, None)],
        "gamma": [params.Interval(params.Real, 0, None, closed="neither")],
        "entropy_weight": [params.Interval(params.Real, 0, None)],
        "per_example": ["boolean"],
    }

    def __init__(
        self,
        make_expert: ExpertFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        num_experts: int = 8,
        num_nonzeros: int = 2,
        gamma: float = 1.0,
        entropy_weight: float = 1e-3,
        per_example: bool = True,
        in_features: int | None = None,
        expert_out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        self.num_nonzeros = _check_count(num_nonzeros, "num_nonzeros")
        if num_nonzeros > num_experts:
            raise PolytaskError(f"num_nonzeros={num_nonzeros} exceeds num_experts={num_experts}")
        if gamma <= 0:
            raise PolytaskError(f"gamma must be > 0, got {gamma}")
        self.gamma, self.per_example = float(gamma), per_example
        super().__init__(
            make_expert, tasks, num_experts, in_features, expert_out_features, heads,
            example_input,
        )
        self.entropy_weight = float(entropy_weight)

    def _make_gate(self, in_features: int) -> nn.Module:
        return DSelectGate(
            in_features, self.num_experts, self.num_nonzeros, self.gamma, self.per_example
        )

    def regularization(self) -> Tensor | None:
        """``entropy_weight × Σ_tasks`` selector entropy of the last training forward
        (None in evaluation mode)."""
        if not self.training or self.entropy_weight == 0:
            return None
        return self.entropy_weight * sum(g.regularization() for g in self.gates.values())


class _Level(nn.Module):
    """One extraction level of PLE (a CGC layer): experts and gates."""

    def __init__(
        self,
        names: tuple[str, ...],
        make_expert: ExpertFactory,
        gate_in: int,
        num_shared: int,
        num_task: int,
        with_shared_gate: bool,
    ) -> None:
        super().__init__()
        self.shared_experts = nn.ModuleList([make_expert() for _ in range(num_shared)])
        self.task_experts = nn.ModuleDict(
            {k: nn.ModuleList([make_expert() for _ in range(num_task)]) for k in names}
        )
        self.task_gates = nn.ModuleDict(
            {k: SoftmaxGate(gate_in, num_task + num_shared) for k in names}
        )
        total = num_shared + num_task * len(names)
        self.shared_gate = SoftmaxGate(gate_in, total) if with_shared_gate else None

    def forward(
        self, task_in: dict[str, Tensor], shared_in: Tensor
    ) -> tuple[dict[str, Tensor], Tensor | None, dict[str, Tensor], Tensor | None]:
        """(task mixtures, next shared input, task gate weights, stacked shared experts)."""
        shared = None
        if len(self.shared_experts):
            shared = torch.stack([e(shared_in) for e in self.shared_experts], dim=1)
        task_out = {
            k: torch.stack([e(task_in[k]) for e in experts], dim=1)
            for k, experts in self.task_experts.items()
            if len(experts)
        }
        gates, mixed = {}, {}
        for k, gate in self.task_gates.items():
            gates[k] = gate(task_in[k])
            parts = [t for t in (task_out.get(k), shared) if t is not None]
            mixed[k] = mix(gates[k], torch.cat(parts, dim=1))
        shared_mixed = None
        if self.shared_gate is not None:
            parts = [task_out[k] for k in self.task_experts if k in task_out]
            parts += [shared] if shared is not None else []
            shared_mixed = mix(self.shared_gate(shared_in), torch.cat(parts, dim=1))
        return mixed, shared_mixed, gates, shared


class PLE(MultiTaskModel):
    """Progressive Layered Extraction (Tang et al., RecSys 2020).

    ``num_levels`` extraction levels. At each level every task has
    ``num_task_experts`` experts of its own and all tasks share ``num_shared_experts``;
    task ``k``'s gate mixes its own and the shared experts' outputs. Below the last
    level a shared gate mixes *all* experts into the next level's shared input, so
    information flows between tasks progressively; the last level has no shared
    gate. With one level this is CGC (:class:`CGC`).

    Level-1 experts come from ``make_expert`` and read the input; experts of higher
    levels come from ``make_upper_expert`` (default ``Linear(D, D) + ReLU``) and read
    the previous level's mixtures (size ``D`` = the experts' output size).

    Parameter split (by which task losses reach a parameter): shared experts and
    shared gates are shared; a task's experts are its own only at the last level (below
    it they feed the shared gate); a task's gates are its own at the last two levels.
    Shared representation: with one level (CGC) the stacked shared-expert outputs,
    through which every shared parameter acts; with more levels none (the lower
    levels' task experts are shared too, yet act through no single tensor).

    Cost relative to hard sharing with the same encoder: level 1 holds
    ``num_shared + K·num_task`` encoders (parameters and compute), plus ``K`` (+1) gates
    per level.

    Args:
        make_expert: returns a fresh level-1 expert (any encoder).
        tasks: the task specs.
        num_levels: extraction levels (default 2).
        num_shared_experts / num_task_experts: experts per level.
        make_upper_expert: returns a fresh expert for levels 2.. (maps the flattened
            D-vector to D; default ``Flatten, Linear(D, D), ReLU``).
        in_features / expert_out_features / heads / example_input: as :class:`MMoE`.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "num_levels": [params.Interval(params.Integral, 1, None)],
        "num_shared_experts": [params.Interval(params.Integral, 0, None)],
        "num_task_experts": [params.Interval(params.Integral, 0, None)],
        "in_features": [None, params.Interval(params.Integral, 1, None)],
        "expert_out_features": [None, params.Interval(params.Integral, 1, None)],
    }

    def __init__(
        self,
        make_expert: ExpertFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        num_levels: int = 2,
        num_shared_experts: int = 1,
        num_task_experts: int = 1,
        make_upper_expert: ExpertFactory | None = None,
        in_features: int | None = None,
        expert_out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(tasks)
        self.num_levels = _check_count(num_levels, "num_levels")
        _check_count(num_shared_experts, "num_shared_experts", 0)
        _check_count(num_task_experts, "num_task_experts", 0)
        if num_shared_experts + num_task_experts == 0:
            raise PolytaskError("PLE needs at least one expert per gate")
        d_in = _input_features(in_features, example_input, type(self).__name__)
        self.in_features = d_in
        first = _Level(
            self.task_names, make_expert, d_in, num_shared_experts, num_task_experts,
            with_shared_gate=self.num_levels > 1,
        )
        probe = (first.shared_experts or next(iter(first.task_experts.values())))[0]
        self._expert_size: int | None = expert_out_features
        levels = [first]
        if self.num_levels > 1:
            d = self._expert_out(probe, example_input)
            upper = make_upper_expert or (
                lambda: nn.Sequential(nn.Flatten(), nn.Linear(d, d), nn.ReLU())
            )
            for j in range(1, self.num_levels):
                levels.append(
                    _Level(self.task_names, upper, d, num_shared_experts, num_task_experts,
                           with_shared_gate=j < self.num_levels - 1)
                )
        self.levels = nn.ModuleList(levels)
        self.heads = build_heads(self.tasks, heads, lambda: self._expert_out(probe, example_input))
        self.last_gate_weights: dict[str, Tensor] = {}

    def _expert_out(self, probe: nn.Module, example_input: Tensor | None) -> int:
        if self._expert_size is None:
            self._expert_size = module_out_features(
                probe, None, example_input, "the experts' output"
            )
        return self._expert_size

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        task_in = {k: x for k in self.task_names}
        shared_in = x
        gates: dict[str, Tensor] = {}
        for j, level in enumerate(self.levels):
            task_in, shared_next, gates, shared = level(task_in, shared_in)
            if j == 0:
                # one level (CGC): every shared parameter acts through the shared experts
                self.shared_representation = shared if self.num_levels == 1 else None
            shared_in = shared_next if shared_next is not None else shared_in
        self.last_gate_weights = {k: g.detach() for k, g in gates.items()}
        return {k: self.heads[k](task_in[k]) for k in self.task_names}

    def _task_owned(self, name: str) -> list[nn.Module]:
        owned: list[nn.Module] = [self.heads[name]]
        last = self.num_levels - 1
        for j, level in enumerate(self.levels):
            if j == last:
                owned.append(level.task_experts[name])
            if j >= last - 1:
                owned.append(level.task_gates[name])
        return owned

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        owned = {id(p) for k in self.task_names for m in self._task_owned(k)
                 for p in m.parameters()}
        return (p for p in self.levels.parameters() if id(p) not in owned)

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        return modules_parameters(self._task_owned(name))


class CGC(PLE):
    """Customized Gate Control (Tang et al., RecSys 2020): PLE with a single level.

    Shared experts plus ``num_task_experts`` experts per task; each task's gate mixes
    its own experts and the shared ones. A task's experts and gate are its own; the
    shared experts are shared and their stacked outputs are the shared representation.
    Cost relative to hard sharing: ``num_shared + K·num_task`` encoders plus K gates.
    """

    def __init__(
        self,
        make_expert: ExpertFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        num_shared_experts: int = 1,
        num_task_experts: int = 1,
        in_features: int | None = None,
        expert_out_features: int | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        super().__init__(
            make_expert, tasks, 1, num_shared_experts, num_task_experts, None, in_features,
            expert_out_features, heads, example_input,
        )


def _expert_kwargs(backbone: Backbone, arch: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("in_features", backbone_in_features(backbone, arch))
    kwargs.setdefault("expert_out_features", backbone.out_features)
    if "example_input" not in kwargs and backbone.input_shape is not None:
        kwargs["example_input"] = backbone_example(backbone)
    return kwargs


@register("mmoe")
def _mmoe(tasks, backbone: Backbone, **kwargs: Any) -> MMoE:  # noqa: ANN001
    """MMoE (Ma et al., KDD 2018): shared experts, one softmax gate per task."""
    return MMoE(backbone.make_encoder, tasks, **_expert_kwargs(backbone, "mmoe", kwargs))


@register("dselect_k")
def _dselect_k(tasks, backbone: Backbone, **kwargs: Any) -> DSelectK:  # noqa: ANN001
    """DSelect-k (Hazimeh et al., NeurIPS 2021): MMoE with sparse differentiable top-k gates."""
    return DSelectK(backbone.make_encoder, tasks, **_expert_kwargs(backbone, "dselect_k", kwargs))


@register("cgc")
def _cgc(tasks, backbone: Backbone, **kwargs: Any) -> CGC:  # noqa: ANN001
    """CGC (Tang et al., RecSys 2020): shared and task-specific experts, one level."""
    return CGC(backbone.make_encoder, tasks, **_expert_kwargs(backbone, "cgc", kwargs))


@register("ple")
def _ple(tasks, backbone: Backbone, **kwargs: Any) -> PLE:  # noqa: ANN001
    """PLE (Tang et al., RecSys 2020): progressive layered extraction, several CGC levels."""
    return PLE(backbone.make_encoder, tasks, **_expert_kwargs(backbone, "ple", kwargs))
