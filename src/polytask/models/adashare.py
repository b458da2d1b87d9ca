"""AdaShare: a per-task select-or-skip policy over the blocks of one shared network."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Task
from .base import MultiTaskModel
from .layers import (
    StageFactory,
    backbone_example,
    backbone_stages,
    build_heads,
    dry_run,
    flat_size,
    make_stage_list,
    modules_parameters,
)
from .registry import Backbone, register


def _find_skippable(stages: nn.ModuleList, example_input: Tensor) -> tuple[list[bool], int]:
    """Which stages keep their input's shape (only those can be skipped), and the
    flattened size of the last output."""
    flags: list[bool] = []

    def run(x: Tensor) -> Tensor:
        for stage in stages:
            y = stage(x)
            flags.append(tuple(y.shape) == tuple(x.shape))
            x = y
        return x

    out = dry_run(run, example_input, stages)
    return flags, flat_size(out)


class AdaShare(MultiTaskModel):
    """AdaShare (Sun, Panda, Feris & Saenko, NeurIPS 2020, "AdaShare: Learning What To
    Share For Efficient Deep Multi-Task Learning").

    One network of the user's blocks (stages) is shared; each task ``k`` learns, per
    block ``l``, a select-or-skip distribution (logits ``(select, skip)``). In the
    search phase a task runs block ``l`` as ``u·F_l(x) + (1-u)·x`` with ``u`` drawn by
    Gumbel-softmax (temperature ``temperature``, decayed by ``temperature_decay`` per
    epoch); only blocks that keep their input's shape can be skipped (found by a dry
    run on ``example_input``, or given as ``skippable``). In evaluation mode the policy
    is discrete: a block runs iff its select probability is at least 0.5. Curriculum
    (:meth:`on_epoch_start`): after ``warmup_epochs`` of running every block, epoch
    ``j`` learns the policy of the last ``j`` blocks only. The sparsity loss
    ``Σ log α_{l,k}`` (α: select probability) and the sharing loss
    ``Σ_{k<k'} Σ_l (L-l)/L |α_{l,k} - α_{l,k'}|`` are returned, weighted, by
    :meth:`regularization` for the balancing machinery to add. The paper trains the
    weights and the policy alternately with separate optimizers:
    :meth:`weight_parameters` and :meth:`policy_parameters`.

    Retrain phase: :meth:`derive` gives the (K, L) discrete policy; :meth:`finalize`
    returns a fixed-policy AdaShare with fresh weights (the paper retrains from
    scratch), or with the searched weights (``reinitialize=False``).

    Parameter split: search phase — the blocks are shared; a task's policy logits and
    head are its own. Fixed policy — a block executed by two or more tasks is shared,
    by one task that task's, by none removed.

    Cost relative to hard sharing: search — one pass up to the first learnable block,
    then one pass per task (tasks' inputs differ once one may skip), plus K·L·2
    logits; fixed — one pass per distinct policy prefix (≤ K), and the blocks no task
    runs are gone.

    Args:
        make_stages: returns the list of blocks (called once).
        tasks: the task specs.
        example_input: a sample batch (for which blocks can be skipped, and head sizes).
        skippable / out_features: instead of ``example_input``.
        policy: a fixed (K, L) boolean policy (retrain phase) instead of learning one.
        temperature / temperature_decay: Gumbel-softmax τ₀ and its per-epoch factor
            (paper: 5 and 0.965).
        sparsity_weight / sharing_weight: the losses' weights (our defaults 0.05;
            the paper tunes them per data set).
        warmup_epochs: epochs running every block before the policy is learned.
        curriculum: learn the last ``j`` blocks' policy at epoch ``j`` after warm-up.
        hard_sampling: straight-through one-hot samples instead of soft ones.
        heads: optional ``{task: module}``.
    """

    def __init__(
        self,
        make_stages: StageFactory,
        tasks: Mapping[str, Task] | Iterable[Task],
        example_input: Tensor | None = None,
        skippable: Sequence[bool] | None = None,
        out_features: int | None = None,
        policy: Tensor | Sequence[Sequence[bool]] | None = None,
        temperature: float = 5.0,
        temperature_decay: float = 0.965,
        sparsity_weight: float = 0.05,
        sharing_weight: float = 0.05,
        warmup_epochs: int = 0,
        curriculum: bool = True,
        hard_sampling: bool = False,
        heads: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__(tasks)
        self._make_stages = make_stages
        stages = make_stage_list(make_stages)
        num = len(stages)
        size = out_features
        if example_input is not None:
            found, size_found = _find_skippable(stages, example_input)
            skippable = found if skippable is None else skippable
            size = size if size is not None else size_found
        if skippable is None:
            raise PolytaskError("AdaShare needs example_input=... (or skippable=[...])")
        if len(skippable) != num:
            raise PolytaskError(f"skippable has {len(skippable)} entries for {num} blocks")
        self.skippable = [bool(s) for s in skippable]
        self.num_blocks = num
        self._out_features = size
        self.temperature0 = self.temperature = float(temperature)
        self.temperature_decay = float(temperature_decay)
        self.sparsity_weight, self.sharing_weight = float(sparsity_weight), float(sharing_weight)
        self.warmup_epochs, self.curriculum = int(warmup_epochs), bool(curriculum)
        self.hard_sampling = hard_sampling
        self.warming_up = self.warmup_epochs > 0
        self.learnable_from = 0
        if policy is None:
            self.policy_logits = nn.ParameterDict(
                {k: nn.Parameter(torch.zeros(num, 2)) for k in self.task_names}
            )
            self.register_buffer("fixed_policy", None)
        else:
            fixed = torch.as_tensor(policy, dtype=torch.bool)
            if fixed.shape != (len(self.task_names), num):
                raise PolytaskError(
                    f"policy must be (tasks, blocks) = ({len(self.task_names)}, {num}), "
                    f"got {tuple(fixed.shape)}"
                )
            not_skippable = [i for i in range(num) if not self.skippable[i]]
            if not_skippable and not bool(fixed[:, not_skippable].all()):
                raise PolytaskError(
                    f"the policy skips blocks {not_skippable} that change the shape and "
                    "cannot be skipped"
                )
            self.policy_logits = nn.ParameterDict()
            self.register_buffer("fixed_policy", fixed)
            stages = nn.ModuleList(
                [s if bool(fixed[:, i].any()) else nn.Identity() for i, s in enumerate(stages)]
            )
        self.stages = stages
        self.heads = build_heads(self.tasks, heads, self._head_size)

    def _head_size(self) -> int:
        if self._out_features is None:
            raise PolytaskError("AdaShare: give example_input=... or out_features=... for heads")
        return int(self._out_features)

    # -- schedule -------------------------------------------------------------------
    @property
    def searching(self) -> bool:
        """True in the search phase (policy learned), False with a fixed policy."""
        return self.fixed_policy is None

    def on_epoch_start(self, epoch: int) -> None:
        """Warm-up, curriculum and temperature for ``epoch`` (0-based); call it at the
        start of every epoch (the Trainer does when it supports model hooks)."""
        self.warming_up = epoch < self.warmup_epochs
        learned = epoch - self.warmup_epochs + 1
        self.temperature = self.temperature0 * self.temperature_decay ** max(0, learned - 1)
        if self.curriculum:
            self.learnable_from = max(0, self.num_blocks - max(0, learned))
        else:
            self.learnable_from = 0

    def policy_parameters(self) -> list[nn.Parameter]:
        """The select-or-skip logits (the paper's policy optimizer)."""
        return list(self.policy_logits.parameters())

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (blocks and heads)."""
        policy = {id(p) for p in self.policy_parameters()}
        return [p for p in self.parameters() if id(p) not in policy]

    # -- the policy -----------------------------------------------------------------
    def _active(self, block: int) -> bool:
        return self.skippable[block] and block >= self.learnable_from and not self.warming_up

    def select_probabilities(self) -> Tensor:
        """(K, L) probability of running each block, per task (search phase)."""
        if not self.searching:
            return self.fixed_policy.float()
        return torch.stack([torch.softmax(self.policy_logits[k], -1)[:, 0]
                            for k in self.task_names])

    def derive(self) -> Tensor:
        """The discrete (K, L) policy: run a block iff its select probability ≥ 0.5
        (blocks that cannot be skipped always run)."""
        if not self.searching:
            return self.fixed_policy.clone()
        policy = self.select_probabilities().detach() >= 0.5
        policy[:, [not s for s in self.skippable]] = True
        return policy

    def finalize(self, reinitialize: bool = True, **kwargs: Any) -> AdaShare:
        """The retrain-phase model: the derived policy fixed, weights fresh (default)
        or copied from this model. ``kwargs`` override constructor arguments."""
        args: dict[str, Any] = dict(
            skippable=self.skippable, out_features=self._out_features, policy=self.derive(),
        )
        args.update(kwargs)
        model = AdaShare(self._make_stages, self.tasks, **args)
        if not reinitialize:
            state = {k: v for k, v in self.state_dict().items()
                     if k.startswith(("stages.", "heads."))}
            own = model.state_dict()
            model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        return model

    # -- forward --------------------------------------------------------------------
    def _sample(self, name: str, block: int) -> Tensor:
        logits = self.policy_logits[name][block]
        return F.gumbel_softmax(logits, tau=self.temperature, hard=self.hard_sampling)[0]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.searching and self.training:
            return self._forward_sampled(x)
        return self._forward_discrete(x, self.derive())

    def _forward_sampled(self, x: Tensor) -> dict[str, Tensor]:
        active = [i for i in range(self.num_blocks) if self._active(i)]
        first = active[0] if active else self.num_blocks
        trunk = x
        for stage in list(self.stages)[:first]:  # run by every task alike: once
            trunk = stage(trunk)
        out = {}
        for name in self.task_names:
            h = trunk
            for i in range(first, self.num_blocks):
                stage = self.stages[i]
                if self._active(i):
                    u = self._sample(name, i)
                    h = u * stage(h) + (1 - u) * h
                else:
                    h = stage(h)
            out[name] = self.heads[name](h)
        return out

    def _forward_discrete(self, x: Tensor, policy: Tensor) -> dict[str, Tensor]:
        cache: dict[tuple[bool, ...], Tensor] = {(): x}
        out = {}
        for t, name in enumerate(self.task_names):
            decisions = tuple(bool(v) for v in policy[t])
            h = x
            for i in range(self.num_blocks):
                key = decisions[: i + 1]
                if key not in cache:
                    cache[key] = self.stages[i](h) if decisions[i] else h
                h = cache[key]
            out[name] = self.heads[name](h)
        return out

    def regularization(self) -> Tensor | None:
        """``sparsity_weight · L_sparsity + sharing_weight · L_sharing`` over the blocks
        whose policy is being learned (None outside the search phase's training)."""
        if not self.searching or not self.training or self.warming_up:
            return None
        active = [i for i in range(self.num_blocks) if self._active(i)]
        if not active:
            return None
        alpha = self.select_probabilities()  # (K, L)
        sparsity = torch.log(alpha[:, active]).sum()
        num = self.num_blocks
        depth = torch.tensor([(num - (i + 1)) / num for i in active], dtype=alpha.dtype,
                             device=alpha.device)
        sharing = alpha.new_zeros(())
        for a in range(len(self.task_names)):
            for b in range(a + 1, len(self.task_names)):
                sharing = sharing + (depth * (alpha[a, active] - alpha[b, active]).abs()).sum()
        return self.sparsity_weight * sparsity + self.sharing_weight * sharing

    # -- parameter split ------------------------------------------------------------
    def _users(self, block: int) -> int:
        if self.searching:
            return len(self.task_names)
        return int(self.fixed_policy[:, block].sum())

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return modules_parameters(
            [s for i, s in enumerate(self.stages) if self._users(i) > 1]
        )

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        t = self.task_names.index(name)
        own: list[nn.Module] = [self.heads[name]]
        if not self.searching:
            own += [s for i, s in enumerate(self.stages)
                    if self._users(i) == 1 and bool(self.fixed_policy[t, i])]
        params = list(modules_parameters(own))
        if self.searching:
            params.append(self.policy_logits[name])
        return iter(params)


def _stage_builder_kwargs(backbone: Backbone, arch: str, kwargs: dict[str, Any]) -> dict:
    backbone_stages(backbone, arch)
    example = kwargs.get("example_input")
    if example is None:
        example = backbone_example(backbone)
    if example is None and "skippable" not in kwargs:
        raise PolytaskError(
            f"architecture {arch!r} needs Backbone.input_shape (a dry run finds which stages "
            "keep their shape and can be skipped) or skippable=[...]"
        )
    kwargs["example_input"] = example
    if example is None:
        kwargs.setdefault("out_features", backbone.out_features)
    return kwargs


@register("adashare")
def _adashare(tasks, backbone: Backbone, **kwargs: Any) -> AdaShare:  # noqa: ANN001
    """AdaShare (Sun et al., NeurIPS 2020): per-task select-or-skip policy per block."""
    return AdaShare(backbone.make_stages, tasks,
                    **_stage_builder_kwargs(backbone, "adashare", kwargs))

