"""Preference-conditioned models: one network for every point of the front.

Each is an ordinary :class:`~polytask.models.MultiTaskModel` called as
``model(x, pref)`` (``pref``: a K-vector on the simplex, one for the whole batch)
that returns ``{task: output}``:

- :class:`COSMOS` (Ruchte & Grabocka, ICDM 2021): the preference is an input;
- :class:`ParetoHyperNetwork` (Navon, Shamsian, Chechik & Fetaya, ICLR 2021): a
  hypernetwork maps the preference to the weights of the target network;
- :class:`ParetoManifold` (Dimitriadis, Frossard & Fleuret, ICML 2023, Pareto manifold
  learning): K weight sets, the model at ``pref`` is their convex combination.

Called without ``pref``, a model in training mode draws one from its ``sampler``
(Dirichlet, seeded) and one in eval mode uses ``eval_preference`` (default equal);
the preference used is kept in ``model.preference``, where
:class:`PreferenceFromModel` reads it, so the Trainer trains these models unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..balancing.base import Balancer, BalanceResult
from ..errors import PolytaskError
from ..models import MultiTaskModel
from .preferences import DirichletSampler, PreferenceLike, check_preference


class PreferenceConditioned(MultiTaskModel):
    """Base of the preference-conditioned models: preference handling only."""

    def __init__(self, target: MultiTaskModel, alpha: float | Sequence[float] = 1.0,
                 seed: int = 0) -> None:
        if not isinstance(target, MultiTaskModel):
            raise PolytaskError(
                "a preference-conditioned model wraps a MultiTaskModel, got "
                f"{type(target).__name__}"
            )
        super().__init__(getattr(target, "tasks", None))
        if not self.task_names:
            self.task_names = tuple(target.task_names)
        self.k = len(self.task_names)
        if self.k < 2:
            raise PolytaskError(f"a Pareto front needs two or more tasks, got {self.task_names}")
        self.sampler = DirichletSampler(self.k, alpha, seed)
        self.eval_preference: Tensor = torch.full((self.k,), 1.0 / self.k)
        self.preference: Tensor | None = None

    def resolve_preference(self, pref: PreferenceLike | None, like: Tensor) -> Tensor:
        """The preference of this forward (given, sampled in training, or the eval one)."""
        if pref is None:
            p = self.sampler.sample() if self.training else self.eval_preference
        else:
            p = check_preference(pref, list(self.task_names) if isinstance(pref, Mapping)
                                 else self.k)
        p = p.to(device=like.device, dtype=like.dtype if like.is_floating_point() else
                 torch.float32)
        self.preference = p
        return p

    def get_extra_state(self) -> dict[str, Any]:
        """The sampler's generator, so that resumed training draws the same preferences."""
        return {"sampler": self.sampler.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_extra_state`."""
        self.sampler.load_state_dict(state["sampler"])

    def conditioned_forward(self, x: Tensor, pref: Tensor) -> dict[str, Tensor]:
        """``{task: output}`` for a batch ``x`` at preference ``pref``."""
        raise NotImplementedError

    def forward(self, x: Tensor, pref: PreferenceLike | None = None) -> dict[str, Tensor]:
        return self.conditioned_forward(x, self.resolve_preference(pref, x))


class COSMOS(PreferenceConditioned):
    """COSMOS (Ruchte & Grabocka, ICDM 2021, "Scalable Pareto Front Approximation for
    Deep Multi-Objective Learning"): the preference is fed to the network with the input.

    Train with the ``cosmos`` scalarization (``Σ p_k L_k − λ cos(L, p)``, λ = 2 and
    Dirichlet(1.2) preferences on MultiMNIST in the authors' ``settings.py``).

    How the preference enters: ``x + E p`` with ``E`` a learned linear map from the K
    preferences to the input's shape, so any encoder works unchanged. ``E`` starts at
    zero (``embed_init="zeros"``, the default): the model starts exactly as its target
    and learns how the preference shifts its input. ``embed_init="default"`` starts
    ``E`` at PyTorch's initialisation, which reads the preference from the first step
    but adds an input offset of order 1 for every preference. Measured here, 3 seeds
    each (test hypervolume, docs/pareto.md): zeros 0.392 ± 0.009 against 0.289 ± 0.009
    on the CPU-sized Pareto-MTL MultiMNIST, 0.715 ± 0.015 against 0.661 ± 0.005 on
    Census-Income, but 1.103 ± 0.050 against 1.209 ± 0.044 on multidigits.
    The authors' code concatenates the preferences to the input instead (as K extra
    channels produced by a small transposed CNN for images, widening the first layer);
    both make the first layer's pre-activations a learned function of ``p``. polytask
    follows its own form so that every backbone can be used.

    Extra cost per step: one (K × input size) linear map; parameters:
    ``K · prod(input_shape)`` more than the target.
    """

    def __init__(self, target: MultiTaskModel, input_shape: Sequence[int],
                 alpha: float | Sequence[float] = 1.2, seed: int = 0,
                 embed_init: str = "zeros") -> None:
        super().__init__(target, alpha, seed)
        if embed_init not in ("zeros", "default"):
            raise PolytaskError(f"COSMOS embed_init must be 'zeros' or 'default', got "
                                f"{embed_init!r}")
        self.target = target
        self.input_shape = tuple(int(s) for s in input_shape)
        numel = 1
        for s in self.input_shape:
            numel *= s
        self.embed = nn.Linear(self.k, numel, bias=False)
        if embed_init == "zeros":
            nn.init.zeros_(self.embed.weight)

    def conditioned_forward(self, x: Tensor, pref: Tensor) -> dict[str, Tensor]:
        if tuple(x.shape[1:]) != self.input_shape:
            raise PolytaskError(
                f"COSMOS was built for inputs {self.input_shape}, got {tuple(x.shape[1:])}"
            )
        offset = self.embed(pref.to(self.embed.weight.dtype)).view(1, *self.input_shape)
        out = self.target(x + offset.to(x.dtype))
        self.shared_representation = self.target.shared_representation
        return out

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.embed.parameters()
        yield from self.target.shared_parameters()

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        return self.target.task_parameters(name)


def _target_parameters(target: nn.Module) -> list[tuple[str, nn.Parameter]]:
    params = [(n, p) for n, p in target.named_parameters() if p.requires_grad]
    if not params:
        raise PolytaskError("the target network has no trainable parameters")
    return params


class ParetoHyperNetwork(PreferenceConditioned):
    """Pareto HyperNetworks (Navon et al., ICLR 2021, "Learning the Pareto Front with
    HyperNetworks").

    An MLP maps the preference to a ``hidden``-dimensional embedding (``layers`` linear
    layers with ReLU between, 100 units as in the authors' MultiMNIST model), and one
    linear head per weight tensor of ``target`` outputs that tensor; the target then runs
    with those weights (``torch.func.functional_call``). Its own weights are not used
    or trained. Train with ``linear`` (PHN-LS) or ``epo`` (PHN-EPO) on
    ``model.shared_parameters()`` (every hypernetwork parameter), Dirichlet(0.2)
    preferences as the authors.

    Differences from the authors' code: the code writes one hypernetwork per target
    architecture by hand; here any target is generated from its parameter list (the
    same structure: a shared ray MLP and one linear head per tensor). Each head starts
    with the target's initial tensor as its bias and a small weight (the code uses
    PyTorch's default initialisation of the heads), so the generated network starts as
    a normally initialised one. Buffers (e.g. batch-norm statistics) stay the target's.

    Extra cost per step: the hypernetwork forward (``hidden × P`` multiply-adds for a
    target of P parameters) and its backward; parameters: about ``hidden · P``.
    """

    def __init__(self, target: MultiTaskModel, hidden: int = 100, layers: int = 3,
                 alpha: float | Sequence[float] = 0.2, seed: int = 0) -> None:
        super().__init__(target, alpha, seed)
        if layers < 1 or hidden < 1:
            raise PolytaskError(f"hypernetwork needs layers >= 1 and hidden >= 1, got "
                                f"{layers}, {hidden}")
        self.target = target
        params = _target_parameters(target)
        self._names = [n for n, _ in params]
        self._shapes = {n: tuple(p.shape) for n, p in params}
        for p in target.parameters():
            p.requires_grad_(False)
        mlp: list[nn.Module] = [nn.Linear(self.k, hidden)]
        for _ in range(layers - 1):
            mlp += [nn.ReLU(), nn.Linear(hidden, hidden)]
        self.ray_mlp = nn.Sequential(*mlp)
        self.heads_out = nn.ModuleDict({
            n.replace(".", "__"): nn.Linear(hidden, p.numel()) for n, p in params
        })
        self._init_like_target(params)

    def _init_like_target(self, params: list[tuple[str, nn.Parameter]]) -> None:
        # start at the target's own initialisation: the head bias is the target's initial
        # tensor and its weight small, so each generated tensor starts near it
        for n, p in params:
            head = self.heads_out[n.replace(".", "__")]
            with torch.no_grad():
                head.bias.copy_(p.detach().reshape(-1))
                spread = p.detach().float().std(correction=0) if p.numel() > 1 else p.abs()
                head.weight.mul_(0.1 * float(spread.clamp_min(1e-3)))

    def generate(self, pref: Tensor) -> dict[str, Tensor]:
        """The target's weights at ``pref``, by name."""
        h = self.ray_mlp(pref.to(self.ray_mlp[0].weight.dtype))
        return {
            n: self.heads_out[n.replace(".", "__")](h).view(self._shapes[n]) for n in self._names
        }

    def conditioned_forward(self, x: Tensor, pref: Tensor) -> dict[str, Tensor]:
        out = functional_call(self.target, self.generate(pref), (x,), strict=False)
        self.shared_representation = getattr(self.target, "shared_representation", None)
        return out

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.ray_mlp.parameters()
        yield from self.heads_out.parameters()

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        return iter(())


class ParetoManifold(PreferenceConditioned):
    """Pareto manifold learning (Dimitriadis, Frossard & Fleuret, ICML 2023, "Pareto
    Manifold Learning: Tackling multiple tasks via ensembles of single-task models").

    K weight sets ``θ_1..θ_K`` of the target (independently initialised); the model at
    preference ``p`` uses ``θ(p) = Σ_k p_k θ_k``, so the vertices of the simplex are K
    single-task-like models and the front is the image of the simplex. Train with the
    ``linear`` scalarization at the sampled ``p``: then ``θ_k`` is pulled towards task k.

    Differences from the paper and code (nik-dim/pamal): the paper draws several ``p``
    per batch (and adds a regularizer ordering the losses along them); polytask draws
    one per batch (the Trainer's one forward per step) and has no extra regularizer.
    Dirichlet(1) preferences by default.

    Extra cost per step: forming ``θ(p)`` (K·P multiply-adds); parameters: K × the target's.
    """

    def __init__(self, target: MultiTaskModel, alpha: float | Sequence[float] = 1.0,
                 seed: int = 0) -> None:
        super().__init__(target, alpha, seed)
        self.target = target
        self._names = [n for n, _ in _target_parameters(target)]
        copies = [target]
        for _ in range(self.k - 1):
            other = copy.deepcopy(target)
            for m in other.modules():
                if m is not other and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            copies.append(other)
        self.vertices = nn.ParameterDict({
            n.replace(".", "__"): nn.Parameter(torch.stack(
                [dict(c.named_parameters())[n].detach().clone() for c in copies]))
            for n in self._names
        })
        for p in target.parameters():
            p.requires_grad_(False)

    def combine(self, pref: Tensor) -> dict[str, Tensor]:
        """The target's weights at ``pref``: ``Σ_k p_k θ_k`` by name."""
        out = {}
        for n in self._names:
            v = self.vertices[n.replace(".", "__")]
            out[n] = torch.tensordot(pref.to(v.dtype), v, dims=1)
        return out

    def conditioned_forward(self, x: Tensor, pref: Tensor) -> dict[str, Tensor]:
        out = functional_call(self.target, self.combine(pref), (x,), strict=False)
        self.shared_representation = getattr(self.target, "shared_representation", None)
        return out

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        shared = {id(p) for p in self.target.shared_parameters()}
        named = dict(self.target.named_parameters())
        for n in self._names:
            if id(named[n]) in shared:
                yield self.vertices[n.replace(".", "__")]

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        own = {id(p) for p in self.target.task_parameters(name)}
        named = dict(self.target.named_parameters())
        for n in self._names:
            if id(named[n]) in own:
                yield self.vertices[n.replace(".", "__")]


class PreferenceFromModel(Balancer):
    """Runs a preference-taking balancer (a scalarization, ``epo``) at the preference the
    conditioned model used in this step's forward (``model.preference``).

    The Trainer gives the model through ``attach``; in a plain loop give ``model=`` to
    the constructor (or set ``inner.pref`` yourself). Extra cost: that of ``inner``.
    """

    def __init__(self, inner: Balancer, model: PreferenceConditioned | None = None) -> None:
        super().__init__()
        if not hasattr(inner, "pref"):
            raise PolytaskError(
                f"{type(inner).__name__} takes no preference; use a scalarization or 'epo'"
            )
        self.inner = inner
        self.needs_shared_params = inner.needs_shared_params
        self._model = [model] if model is not None else []

    def prepare(self, task_names: Sequence[str]) -> None:
        self.inner.prepare(task_names)

    def extra_parameters(self) -> list[nn.Parameter]:
        return self.inner.extra_parameters()

    def attach(self, **context: Any) -> Balancer:
        model = context.get("model")
        if isinstance(model, PreferenceConditioned):
            self._model = [model]
        self.inner.attach(**context)
        return self

    def on_epoch_end(self, epoch: int, train_losses: Mapping[str, float]) -> None:
        self.inner.on_epoch_end(epoch, train_losses)

    def get_extra_state(self) -> dict:
        state = super().get_extra_state()
        state.pop("_model", None)
        return state

    def backward(self, losses: Mapping[str, Tensor], shared_params=None, task_params=None,  # noqa: ANN001
                 representation: Tensor | None = None, grad_scale: Any = None) -> BalanceResult:
        if not self._model or self._model[0].preference is None:
            raise PolytaskError(
                "PreferenceFromModel has no preference: run the conditioned model's forward "
                "first (and give model=... outside the Trainer)"
            )
        self.inner.pref = self._model[0].preference.detach().double().cpu()
        result = self.inner.backward(losses, shared_params, task_params, representation,
                                     grad_scale=grad_scale)
        self.step += 1
        return result
