"""Preference vectors: validation, ray sets (uniform, Das–Dennis), Dirichlet sampling.

Convention used across :mod:`polytask.pareto`: a *preference* ``p`` is a non-negative
K-vector, normalised to sum 1, that says how much each task matters: a larger ``p_k``
asks for a smaller loss ``L_k``. Its *target direction* in loss space is the ray on
which ``p_k L_k`` is the same for every task (the "exact Pareto optimal" ray of EPO,
Mahapatra & Rajan, ICML 2020), i.e. ``L ∝ 1/p``; :func:`loss_direction` computes it
without dividing by zero (``d_k ∝ Π_{j≠k} p_j``), and :func:`preference_of` maps a
loss-space direction back (the same formula: the map is its own inverse up to scale).
Pareto MTL states its reference vectors in loss space; polytask converts them with
these two functions so that every method takes the same preference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import PolytaskError

PreferenceLike = Sequence[float] | Mapping[str, float] | Tensor | np.ndarray


class PreferenceError(PolytaskError, ValueError):
    """A preference vector (or a set of rays) is invalid: wrong length, negative, all 0."""


def check_preference(
    pref: PreferenceLike, k: int | Sequence[str], *, normalize: bool = True
) -> Tensor:
    """A valid preference as a float64 K-vector (summing to 1 when ``normalize``).

    ``k`` is the number of tasks or their names (a mapping ``{task: weight}`` must then
    name every task exactly). Raises :class:`PreferenceError` naming the value for a
    wrong length, a negative or non-finite entry, or an all-zero vector.
    """
    names = None if isinstance(k, int) else list(k)
    n = k if isinstance(k, int) else len(names)
    if isinstance(pref, Mapping):
        if names is None:
            raise PreferenceError("a {task: weight} preference needs the task names")
        unknown = sorted(set(pref) - set(names))
        missing = sorted(set(names) - set(pref))
        if unknown or missing:
            raise PreferenceError(
                f"preference {dict(pref)} does not match the tasks {names}"
                + (f": unknown {unknown}" if unknown else "")
                + (f": missing {missing}" if missing else "")
            )
        values = [float(pref[t]) for t in names]
    elif isinstance(pref, Tensor):
        values = pref.detach().reshape(-1).double().cpu().tolist()
    else:
        values = [float(v) for v in np.asarray(pref, dtype=np.float64).reshape(-1)]
    if len(values) != n:
        raise PreferenceError(
            f"preference {values} has {len(values)} entries for {n} tasks"
            + (f" {names}" if names else "")
        )
    if not all(math.isfinite(v) for v in values):
        raise PreferenceError(f"preference {values} has a non-finite entry")
    if any(v < 0 for v in values):
        raise PreferenceError(f"preference {values} has a negative entry")
    total = sum(values)
    if total <= 0:
        raise PreferenceError(f"preference {values} is all zero")
    out = torch.tensor(values, dtype=torch.float64)
    return out / total if normalize else out


def check_rays(rays: Sequence[PreferenceLike] | Tensor | np.ndarray, k: int) -> Tensor:
    """A (N, K) float64 tensor of valid preferences (each row normalised)."""
    rows = list(rays) if not isinstance(rays, (Tensor, np.ndarray)) else list(rays)
    if not rows:
        raise PreferenceError("no preference rays given")
    return torch.stack([check_preference(r, k) for r in rows])


def uniform_rays(n: int, k: int = 2) -> Tensor:
    """``n`` preferences spread evenly: for two tasks, ``(t, 1 - t)`` at ``t = i/(n-1)``
    (ends included); for more, the Das–Dennis lattice with the fewest divisions that
    gives at least ``n`` points, of which ``n`` are kept evenly (lowest index first)."""
    if n < 1:
        raise PreferenceError(f"the number of rays must be at least 1, got {n}")
    if k < 2:
        raise PreferenceError(f"rays need at least two tasks, got {k}")
    if n == 1:
        return torch.full((1, k), 1.0 / k, dtype=torch.float64)
    if k == 2:
        t = torch.linspace(0, 1, n, dtype=torch.float64)
        return torch.stack([t, 1 - t], dim=1)
    h = 1
    while math.comb(h + k - 1, k - 1) < n:
        h += 1
    lattice = das_dennis(h, k)
    pick = np.unique(np.round(np.linspace(0, len(lattice) - 1, n)).astype(int))
    return lattice[torch.as_tensor(pick)]


def das_dennis(divisions: int, k: int) -> Tensor:
    """Das & Dennis (SIAM J. Optim. 1998) points: every point of the simplex whose
    entries are multiples of ``1/divisions``; ``C(divisions + K - 1, K - 1)`` rows."""
    if divisions < 1 or k < 2:
        raise PreferenceError(f"das_dennis needs divisions >= 1 and k >= 2, got {divisions}, {k}")
    rows = []
    for combo in itertools.combinations(range(divisions + k - 1), k - 1):
        # stars and bars: the gaps between the bars are the counts
        bars = (-1, *combo, divisions + k - 1)
        rows.append([bars[i + 1] - bars[i] - 1 for i in range(k)])
    return torch.tensor(rows, dtype=torch.float64).flip(0) / divisions


def circle_rays(n: int) -> Tensor:
    """Pareto MTL's reference rays for two tasks (Lin et al., NeurIPS 2019): ``n``
    directions in loss space at angles evenly spaced over ``[0, π/2]``, returned as
    preferences (:func:`preference_of`)."""
    if n < 1:
        raise PreferenceError(f"the number of rays must be at least 1, got {n}")
    angles = torch.linspace(0, math.pi / 2, n, dtype=torch.float64) if n > 1 else torch.tensor(
        [math.pi / 4], dtype=torch.float64
    )
    directions = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return preference_of(directions)


def _products_of_others(v: Tensor) -> Tensor:
    k = v.shape[-1]
    cols = [torch.prod(torch.cat([v[..., :i], v[..., i + 1 :]], dim=-1), dim=-1) for i in range(k)]
    return torch.stack(cols, dim=-1)


def loss_direction(pref: Tensor) -> Tensor:
    """The unit loss-space direction on which ``p_k L_k`` is equal for every task
    (``d_k ∝ Π_{j≠k} p_j``, i.e. ``∝ 1/p_k``), row-wise for a (N, K) tensor.

    A preference with one zero entry points along that task's axis (that task's loss
    may grow without bound); one with two or more zeros has no such direction and
    raises :class:`PreferenceError`."""
    p = pref.double()
    d = _products_of_others(p)
    norm = d.norm(dim=-1, keepdim=True)
    if bool((norm <= 0).any()):
        raise PreferenceError(
            f"preference {pref.tolist()} has two or more zero entries: no loss direction"
        )
    return d / norm


def preference_of(direction: Tensor) -> Tensor:
    """The preference whose :func:`loss_direction` is ``direction`` (rows summing to 1)."""
    d = direction.double()
    if bool((d < 0).any()):
        raise PreferenceError(f"loss direction {direction.tolist()} has a negative entry")
    p = _products_of_others(d)
    total = p.sum(dim=-1, keepdim=True)
    if bool((total <= 0).any()):
        raise PreferenceError(
            f"loss direction {direction.tolist()} has two or more zero entries"
        )
    return p / total


class DirichletSampler:
    """Draws preferences from ``Dirichlet(alpha)``, with its own seeded generator.

    ``alpha`` is one concentration for every task or one per task. The reference codes
    use 0.2 (Pareto HyperNetworks), 1.2 (COSMOS on MultiMNIST) or 1 (uniform on the
    simplex).
    """

    def __init__(self, k: int, alpha: float | Sequence[float] = 1.0, seed: int = 0) -> None:
        conc = [float(alpha)] * k if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
        if len(conc) != k or any(not (a > 0) for a in conc):
            raise PreferenceError(
                f"Dirichlet concentration must be positive, one per task ({k}); got {alpha}"
            )
        self.k = k
        self.alpha = conc
        self._rng = np.random.default_rng(int(seed))

    def sample(self, n: int | None = None) -> Tensor:
        """One preference (K) or ``n`` of them (n, K), float32."""
        draws = self._rng.dirichlet(self.alpha, size=1 if n is None else n)
        out = torch.as_tensor(draws, dtype=torch.float32)
        return out[0] if n is None else out

    def state_dict(self) -> dict:
        """The generator state (to resume exactly)."""
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self._rng.bit_generator.state = state["rng"]
