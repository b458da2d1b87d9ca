"""Task-sampling schedules: which dataset the next batch (or each sample) comes from.

A schedule sees the datasets of a :class:`~polytask.multidataset.MultiDatasetLoader`
(their names, sizes and the tasks each labels) and gives, for an epoch, a probability
for each dataset (:meth:`Schedule.probabilities`) or, for deterministic schedules, the
dataset of each step (:meth:`Schedule.choose`). Schedules are registered by name::

    get("temperature", temperature=2.0)      # or the spec "temperature:temperature=2"

Every schedule's extra cost per step is one draw from a categorical distribution over
the D datasets (O(D)); the probabilities are recomputed once per epoch (the dynamic
schedule: once per feedback).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import PolytaskError
from ..registry import Registry

_SCHEDULES: Registry[Schedule] = Registry("sampling schedule")
register = _SCHEDULES.register
available = _SCHEDULES.available


class Schedule:
    """Base class: a distribution over datasets, fixed within an epoch.

    Subclasses implement :meth:`probabilities`; deterministic ones override
    :meth:`choose`. ``needs_feedback`` schedules receive each task's validation loss
    through :meth:`update` (the loader's callback does it under the Trainer).
    """

    needs_feedback: ClassVar[bool] = False

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sizes: list[int] = []
        self.tasks_of: dict[str, tuple[str, ...]] = {}

    def bind(
        self, names: Sequence[str], sizes: Sequence[int], tasks_of: Mapping[str, Sequence[str]]
    ) -> Schedule:
        """Receive the datasets (the loader calls it); returns ``self``."""
        self.names = list(names)
        self.sizes = [int(s) for s in sizes]
        self.tasks_of = {k: tuple(v) for k, v in tasks_of.items()}
        return self

    def _sizes(self) -> Tensor:
        if not self.sizes:
            raise PolytaskError(f"{type(self).__name__} is not bound to any dataset")
        return torch.tensor(self.sizes, dtype=torch.float64)

    def probabilities(self, epoch: int) -> Tensor:
        """The D probabilities of the datasets for 0-based ``epoch`` (float64, sum 1)."""
        raise NotImplementedError

    def choose(self, step: int, epoch: int, generator: torch.Generator) -> int:
        """The dataset of global step ``step``: a draw from :meth:`probabilities`."""
        p = self.probabilities(epoch)
        return int(torch.multinomial(p, 1, generator=generator))

    def update(self, losses: Mapping[str, float]) -> None:
        """Feedback: each task's current validation loss (feedback schedules only)."""

    def state_dict(self) -> dict[str, Any]:
        """Feedback state to checkpoint (empty for the fixed schedules)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register("uniform")
class Uniform(Schedule):
    """Every dataset equally often, whatever its size: p_d = 1/D.

    The simplest schedule (e.g. the "uniform" mixing of Raffel et al., JMLR 2020, T5,
    Sec. 3.5.2); small datasets are revisited many times per pass over a large one.
    """

    def probabilities(self, epoch: int) -> Tensor:
        n = len(self._sizes())
        return torch.full((n,), 1.0 / n, dtype=torch.float64)


@register("proportional")
class Proportional(Schedule):
    """Proportional to dataset size: p_d = N_d / Σ N — every sample equally often.

    "Examples-proportional mixing" (Raffel et al., JMLR 2020, T5, Sec. 3.5.2), with
    the optional artificial size limit ``cap`` of that paper: p_d ∝ min(N_d, cap).
    """

    def __init__(self, cap: int | None = None) -> None:
        super().__init__()
        if cap is not None and cap <= 0:
            raise PolytaskError(f"proportional: cap must be > 0, got {cap}")
        self.cap = cap

    def _capped(self) -> Tensor:
        sizes = self._sizes()
        return sizes.clamp(max=float(self.cap)) if self.cap is not None else sizes

    def probabilities(self, epoch: int) -> Tensor:
        sizes = self._capped()
        return sizes / sizes.sum()


@register("temperature")
class Temperature(Proportional):
    """Temperature-scaled proportional: p_d ∝ N_d^(1/T).

    T = 1 is proportional sampling, T → ∞ uniform. From multilingual translation
    (Arivazhagan et al., "Massively Multilingual NMT in the Wild", 2019, T = 5) and T5's
    temperature-scaled mixing (Raffel et al., JMLR 2020), which first caps each size at
    ``cap`` (optional here, as there). Args: ``temperature`` T > 0.
    """

    def __init__(self, temperature: float = 2.0, cap: int | None = None) -> None:
        super().__init__(cap)
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise PolytaskError(f"temperature: the temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def probabilities(self, epoch: int) -> Tensor:
        logits = self._capped().log() / self.temperature
        return torch.softmax(logits, dim=0)

    def __repr__(self) -> str:
        return f"Temperature(temperature={self.temperature})"


@register("annealed")
class Annealed(Schedule):
    """Annealed sampling (Stickland & Murray, "BERT and PALs", ICML 2019, Sec. 4).

    p_d ∝ N_d^α with α = 1 − (1 − α_min)·(e − 1)/(E − 1) at epoch e = 1..E: the first
    epoch samples proportionally to size, the last with α_min (the paper: 0.2, i.e.
    α = 1 − 0.8 (e−1)/(E−1)), so that tasks drawn rarely early are seen more towards
    the end. Epochs past E keep α_min.

    Args:
        epochs: E, the number of training epochs.
        alpha_min: the final exponent (default 0.2, as in the paper).
    """

    def __init__(self, epochs: int, alpha_min: float = 0.2) -> None:
        super().__init__()
        if not isinstance(epochs, int) or epochs < 1:
            raise PolytaskError(f"annealed: epochs must be an integer >= 1, got {epochs!r}")
        if not 0.0 <= alpha_min <= 1.0:
            raise PolytaskError(f"annealed: alpha_min must be in [0, 1], got {alpha_min}")
        self.epochs = epochs
        self.alpha_min = float(alpha_min)

    def alpha(self, epoch: int) -> float:
        """The exponent α at 0-based ``epoch``."""
        if self.epochs == 1:
            return 1.0
        frac = min(1.0, epoch / (self.epochs - 1))
        return 1.0 - (1.0 - self.alpha_min) * frac

    def probabilities(self, epoch: int) -> Tensor:
        logits = self._sizes().log() * self.alpha(epoch)
        return torch.softmax(logits, dim=0)

    def __repr__(self) -> str:
        return f"Annealed(epochs={self.epochs}, alpha_min={self.alpha_min})"


@register("round_robin")
@register("round-robin")
class RoundRobin(Schedule):
    """Datasets in turn, in the loader's order: step s uses dataset s mod D.

    The classic alternating schedule of multi-task training on separate datasets
    (e.g. Dong et al., ACL 2015, one task's mini-batch after another). Deterministic:
    no draw; its probabilities are uniform.
    """

    def probabilities(self, epoch: int) -> Tensor:
        n = len(self._sizes())
        return torch.full((n,), 1.0 / n, dtype=torch.float64)

    def choose(self, step: int, epoch: int, generator: torch.Generator) -> int:
        return step % len(self._sizes())


@register("dynamic")
class Dynamic(Schedule):
    """Sampling driven by each task's progress (Sharma et al., "Learning to Multi-Task
    by Active Sampling", ICLR 2018; Gottumukkala et al., ACL 2020, dynamic sampling).

    Each dataset is scored by how far its tasks are from their targets, and sampled by
    a softmax of the scores: p_d ∝ exp(m_d / τ) (Sharma et al.'s A5C). With
    ``reference`` (each task's single-task validation loss) the gap of task t is
    m_t = max(0, (L_t − R_t) / R_t), its relative excess over the single-task loss; without
    it, m_t = L_t / L_t⁰, the loss relative to the first one observed (the inverse
    training rate of GradNorm). m_d is the mean of m_t over the dataset's tasks.
    Gottumukkala et al. sample proportionally to the gap instead; polytask follows the
    softmax, which keeps every dataset's probability positive. Before any feedback the
    schedule is uniform.

    Args:
        reference: ``{task: single-task validation loss}`` (optional).
        tau: the softmax temperature τ > 0 (default 0.2, polytask's choice).
    """

    needs_feedback = True

    def __init__(self, reference: Mapping[str, float] | None = None, tau: float = 0.2) -> None:
        super().__init__()
        if not isinstance(tau, (int, float)) or not tau > 0:
            raise PolytaskError(f"dynamic: tau must be > 0, got {tau!r}")
        if reference is not None:
            bad = {k: v for k, v in reference.items() if not (v > 0 and math.isfinite(v))}
            if bad:
                raise PolytaskError(f"dynamic: reference losses must be finite and > 0: {bad}")
        self.reference = dict(reference) if reference is not None else None
        self.tau = float(tau)
        self.first: dict[str, float] | None = None
        self.latest: dict[str, float] | None = None

    def update(self, losses: Mapping[str, float]) -> None:
        clean = {k: float(v) for k, v in losses.items() if math.isfinite(float(v))}
        if self.first is None:
            self.first = clean
        self.latest = clean

    def scores(self) -> Tensor | None:
        """m_d of each dataset, or None before any feedback."""
        if self.latest is None:
            return None
        scores = []
        for name in self.names:
            gaps = []
            for task in self.tasks_of.get(name, ()):
                if task not in self.latest:
                    continue
                loss = self.latest[task]
                if self.reference is not None:
                    if task not in self.reference:
                        raise PolytaskError(
                            f"dynamic: no reference loss for task {task!r} (dataset {name!r}); "
                            f"reference has {sorted(self.reference)}"
                        )
                    ref = self.reference[task]
                    gaps.append(max(0.0, (loss - ref) / ref))
                else:
                    first = self.first.get(task, loss) if self.first else loss
                    gaps.append(loss / first if first > 0 else 1.0)
            scores.append(sum(gaps) / len(gaps) if gaps else 0.0)
        return torch.tensor(scores, dtype=torch.float64)

    def probabilities(self, epoch: int) -> Tensor:
        scores = self.scores()
        n = len(self._sizes())
        if scores is None:
            return torch.full((n,), 1.0 / n, dtype=torch.float64)
        return torch.softmax(scores / self.tau, dim=0)

    def state_dict(self) -> dict[str, Any]:
        return {"first": self.first, "latest": self.latest}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.first = state.get("first")
        self.latest = state.get("latest")

    def __repr__(self) -> str:
        return f"Dynamic(tau={self.tau}, reference={self.reference})"


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"temperature:T=2,cap=1000"`` -> ``("temperature", {"T": 2, "cap": 1000})``
    (the ``name:key=value`` syntax of method specs; values are Python literals where
    they parse as one, else strings)."""
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise PolytaskError(f"schedule spec {spec!r}: {item!r} is not key=value")
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value.strip()
    return name.strip(), kwargs


def get(spec: str | Schedule, **kwargs: Any) -> Schedule:
    """A schedule from a name, a spec ``"name:key=value,..."`` or an instance."""
    if isinstance(spec, Schedule):
        if kwargs:
            raise PolytaskError("give keyword arguments only with a schedule name")
        return spec
    if not isinstance(spec, str):
        raise PolytaskError(
            f"schedule must be a name or a Schedule, got {type(spec).__name__}; "
            f"available: {', '.join(available())}"
        )
    name, parsed = parse_spec(spec)
    parsed.update(kwargs)
    if "T" in parsed and name.lower() == "temperature":
        parsed["temperature"] = parsed.pop("T")
    try:
        return _SCHEDULES.get(name, **parsed)
    except TypeError as error:
        raise PolytaskError(f"schedule {spec!r}: {error}") from None
