"""The two-task toy problem of the CAGrad (Liu et al., NeurIPS 2021) and Nash-MTL
(Navon et al., ICML 2022) papers: trajectories of balancing methods on its contours.

Two losses of a 2-D parameter ``x`` with conflicting valleys: above the ``x2 = 0`` line
each is a log-valley that sends plain gradient descent along one task's valley; below
it both are wide quadratic bowls. The Pareto set is the curve joining the two tasks'
minima; methods that ignore conflicts stall or end at one task's end of it.

>>> from polytask.toy import run_toy
>>> result = run_toy(["ew", "mgda", "cagrad"], steps=2000)
>>> result.plot("toy.png")
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import PolytaskError

#: the starting points used by the papers' figures
STARTS: tuple[tuple[float, float], ...] = (
    (-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0),
)
_LOWER = 5e-6


def toy_losses(x: Tensor) -> tuple[Tensor, Tensor]:
    """The two losses at ``x`` (shape ``(..., 2)``), as in the papers' code."""
    x1, x2 = x[..., 0], x[..., 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), _LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), _LOWER).log() + 6
    c1 = torch.clamp(torch.tanh(x2 * 0.5), 0)
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return f1 * c1 + f1_sq * c2, f2 * c1 + f2_sq * c2


def pareto_front(resolution: int = 400, bound: float = 10.0) -> np.ndarray:
    """Non-dominated ``(f1, f2)`` pairs on a dense grid of ``[-bound, bound]²``, sorted
    by ``f1``; with the matching parameters in columns 2 and 3."""
    axis = torch.linspace(-bound, bound, resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    f1, f2 = toy_losses(grid)
    order = torch.argsort(f1)
    f1, f2, pts = f1[order], f2[order], grid[order]
    best = torch.cummin(f2, 0).values
    keep = torch.ones_like(f2, dtype=torch.bool)
    keep[1:] = f2[1:] < best[:-1]
    return torch.cat([f1[keep, None], f2[keep, None], pts[keep]], 1).numpy()


def _balancer(name: str):
    from . import balancing

    cls = balancing.method_class(name)
    if issubclass(cls, balancing.GradientAggregator):
        return balancing.get(name, path="jacobian")  # the toy has no representation
    return balancing.get(name)


@dataclass
class Trajectory:
    """One method's path from one start."""

    method: str
    start: tuple[float, float]
    points: np.ndarray  # (steps + 1) × 2
    losses: tuple[float, float]
    stationarity: float  # ‖min-norm element of the hull of the two gradients‖
    front_distance: float  # distance of the final (f1, f2) to the computed Pareto front


def run_trajectory(method: str, start: Sequence[float], steps: int = 2000,
                   lr: float = 0.01, record_every: int = 10) -> Trajectory:
    """Optimise the toy from ``start`` with Adam and the balancer ``method``."""
    x = torch.nn.Parameter(torch.tensor([float(v) for v in start], dtype=torch.float64))
    balancer = _balancer(method)
    opt = torch.optim.Adam([x], lr=lr)
    points = [x.detach().numpy().copy()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for step in range(steps):
            opt.zero_grad()
            f1, f2 = toy_losses(x)
            balancer.backward({"f1": f1, "f2": f2}, shared_params=[x])
            opt.step()
            if (step + 1) % record_every == 0 or step + 1 == steps:
                points.append(x.detach().numpy().copy())
    f1, f2 = toy_losses(x)
    g1, = torch.autograd.grad(f1, x, retain_graph=True)
    g2, = torch.autograd.grad(f2, x)
    from .balancing.aggregation._solvers import min_norm_two

    gram = torch.stack([g1, g2]) @ torch.stack([g1, g2]).T
    w = min_norm_two(gram.numpy())
    stationarity = float(np.sqrt(max(w @ gram.numpy() @ w, 0.0)))
    front = pareto_front(200)
    value = np.array([float(f1.detach()), float(f2.detach())])
    dist = float(np.min(np.linalg.norm(front[:, :2] - value, axis=1)))
    return Trajectory(method, (float(start[0]), float(start[1])), np.array(points),
                      (float(f1.detach()), float(f2.detach())), stationarity, dist)


@dataclass
class ToyResult:
    """Trajectories of several methods from several starts."""

    trajectories: list[Trajectory] = field(default_factory=list)

    def table(self) -> str:
        """A Markdown table of where each run ends."""
        lines = ["| method | start | end x | f1 | f2 | stationarity | distance to front |",
                 "|---|---|---|---:|---:|---:|---:|"]
        for t in self.trajectories:
            end = t.points[-1]
            lines.append(
                f"| {t.method} | ({t.start[0]:g}, {t.start[1]:g}) | "
                f"({end[0]:.2f}, {end[1]:.2f}) | {t.losses[0]:.3f} | {t.losses[1]:.3f} | "
                f"{t.stationarity:.2e} | {t.front_distance:.3f} |"
            )
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Draw each method's trajectories on the contours of ``f1 + f2`` to a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        methods = list(dict.fromkeys(t.method for t in self.trajectories))
        cols = min(4, len(methods))
        rows = (len(methods) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
        axis = torch.linspace(-10, 10, 300, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1)
        f1, f2 = toy_losses(grid)
        total = (f1 + f2).numpy()
        front = pareto_front(400)
        for ax, method in zip(axes.flat, methods):
            ax.contour(axis.numpy(), axis.numpy(), total, levels=25, cmap="Greys", linewidths=0.6)
            ax.plot(front[:, 2], front[:, 3], ".", color="tab:green", ms=1.5, label="Pareto set")
            for t in (t for t in self.trajectories if t.method == method):
                ax.plot(t.points[:, 0], t.points[:, 1], "-", lw=1.4)
                ax.plot(*t.points[0], "o", color="black", ms=3)
                ax.plot(*t.points[-1], "*", color="tab:red", ms=8)
            ax.set_title(method)
            ax.set_xlim(-10, 10)
            ax.set_ylim(-10, 10)
        for ax in list(axes.flat)[len(methods):]:
            ax.axis("off")
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


def run_toy(methods: Sequence[str], starts: Sequence[Sequence[float]] = STARTS,
            steps: int = 2000, lr: float = 0.01) -> ToyResult:
    """Run every method from every start."""
    from . import balancing

    unknown = [m for m in methods if m not in balancing.available()]
    if unknown:
        raise PolytaskError(
            f"unknown method(s) {unknown}; available: {', '.join(balancing.available())}"
        )
    result = ToyResult()
    for method in methods:
        for start in starts:
            result.trajectories.append(run_trajectory(method, start, steps, lr))
    return result
