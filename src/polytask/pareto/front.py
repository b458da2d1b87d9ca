"""One front interface for finite fronts and preference-conditioned models.

``front.evaluate(loader, prefs, split="test")`` runs the model(s) at each preference on
a named split and returns a :class:`FrontResult`: per-ray losses and metrics, with the
hypervolume, preference fidelity, CSV/JSON and a PNG plot. The split must be named,
and ``"train"`` is refused unless ``allow_train=True``: a front is judged on held-out
data (several reference codes evaluate on the training set by mistake).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Task, as_task_dict
from .conditioned import PreferenceConditioned
from .indicators import hypervolume, non_dominated, preference_fidelity
from .preferences import PreferenceError, check_rays

EVAL_SPLITS = ("val", "validation", "test")


def _check_split(split: str, allow_train: bool) -> str:
    if split in EVAL_SPLITS or (allow_train and split == "train"):
        return split
    if split == "train":
        raise PolytaskError(
            "evaluating a front on the training split: pass allow_train=True if you mean it "
            "(hypervolumes are reported on 'val' or 'test')"
        )
    raise PolytaskError(f"unknown split {split!r}; use one of {EVAL_SPLITS}")


@dataclass
class FrontResult:
    """Per-ray results of a front on one split.

    Attributes:
        method: the method's name.
        split: the split evaluated (``val``/``test``).
        task_names: the objectives, in order.
        prefs: (N, K) preferences.
        losses: (N, K) mean losses per ray.
        metrics: one ``{task: {metric: value}}`` per ray.
        ray: how the method reads a preference in loss space: ``"inverse"`` (its target
            direction is ``∝ 1/p``: EPO, Pareto MTL, Tchebycheff) or ``"preference"``
            (``∝ p``: COSMOS's cosine term); used by :meth:`fidelity`.
        info: free-form extras (training time, parameter count, seed, ...).
    """

    method: str
    split: str
    task_names: list[str]
    prefs: np.ndarray
    losses: np.ndarray
    metrics: list[dict[str, dict[str, float]]]
    ray: str = "inverse"
    info: dict[str, Any] = field(default_factory=dict)

    def hypervolume(self, ref: Sequence[float], **options: Any) -> float:
        """The hypervolume of the per-ray losses with reference point ``ref``."""
        return hypervolume(self.losses, ref, **options)

    def fidelity(self) -> np.ndarray:
        """Per ray, the angle (radians) between the method's target direction and the
        loss vector (see :func:`~polytask.pareto.indicators.preference_fidelity`)."""
        if self.ray == "preference":
            from .preferences import preference_of

            p = preference_of(torch.as_tensor(self.prefs)).numpy()
            return preference_fidelity(p, self.losses)
        return preference_fidelity(self.prefs, self.losses)

    def non_dominated(self) -> np.ndarray:
        """Mask of the rays whose losses no other ray dominates."""
        return non_dominated(self.losses)

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per ray (preferences, losses, metrics, fidelity)."""
        fid = self.fidelity()
        keep = self.non_dominated()
        out = []
        for i in range(len(self.prefs)):
            row: dict[str, Any] = {"method": self.method, "split": self.split, "ray": i}
            for j, t in enumerate(self.task_names):
                row[f"pref/{t}"] = float(self.prefs[i, j])
            for j, t in enumerate(self.task_names):
                row[f"loss/{t}"] = float(self.losses[i, j])
            for task, ms in self.metrics[i].items():
                row.update({f"{task}/{m}": float(v) for m, v in ms.items() if m != "loss"})
            row["fidelity_deg"] = float(np.degrees(fid[i])) if not math.isnan(fid[i]) else math.nan
            row["non_dominated"] = bool(keep[i])
            out.append(row)
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "method": self.method, "split": self.split, "task_names": self.task_names,
            "prefs": self.prefs.tolist(), "losses": self.losses.tolist(),
            "metrics": self.metrics, "ray": self.ray, "info": self.info,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FrontResult:
        """Inverse of :meth:`to_json`."""
        return cls(data["method"], data["split"], list(data["task_names"]),
                   np.asarray(data["prefs"]), np.asarray(data["losses"]),
                   list(data["metrics"]), data.get("ray", "inverse"), dict(data.get("info", {})))

    def write_csv(self, path: str | Path) -> None:
        """One row per ray."""
        rows = self.rows()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)


def plot_fronts(
    fronts: Sequence[FrontResult],
    path: str | Path,
    *,
    single_task: Sequence[float] | None = None,
    equal_weight: Sequence[float] | None = None,
    ref: Sequence[float] | None = None,
    title: str | None = None,
) -> Path:
    """Plot the first two objectives' losses of each front (its non-dominated points
    joined), the single-task point and the equal-weight model, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not fronts:
        raise PolytaskError("plot_fronts needs at least one front")
    names = fronts[0].task_names
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for front in fronts:
        pts = front.losses[:, :2]
        keep = front.non_dominated()
        order = np.argsort(pts[keep, 0])
        line = ax.plot(pts[keep][order, 0], pts[keep][order, 1], "-o", ms=3, label=front.method)
        if (~keep).any():
            ax.plot(pts[~keep, 0], pts[~keep, 1], "x", color=line[0].get_color(), alpha=0.6)
    if single_task is not None:
        ax.plot([single_task[0]], [single_task[1]], "k*", ms=12, label="single-task")
    if equal_weight is not None:
        ax.plot([equal_weight[0]], [equal_weight[1]], "ks", ms=6, mfc="none", label="equal weights")
    if ref is not None:
        ax.set_title((title + "\n" if title else "") + f"reference point {list(ref)}", fontsize=9)
    elif title:
        ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"loss {names[0]}")
    ax.set_ylabel(f"loss {names[1]}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluate_model(
    model: nn.Module, tasks: Mapping[str, Task] | Iterable[Task], loader: Iterable,
    device: str | torch.device | None = None,
) -> dict[str, dict[str, float]]:
    """``{task: {metric: value, "loss": mean loss}}`` of ``model`` on ``loader`` (the
    Trainer's evaluation)."""
    from ..training import Trainer

    trainer = Trainer(model, tasks, "ew", device=device, progress=False,
                      shared_params=[p for p in model.parameters()][:1])
    return trainer.evaluate(loader)


class FiniteFront:
    """One trained model per preference ray (Pareto MTL, EPO, scalarizations, MGDA)."""

    def __init__(self, models: Sequence[nn.Module], prefs: Tensor | Sequence, tasks: Any,
                 method: str = "finite", ray: str = "inverse") -> None:
        self.tasks = as_task_dict(tasks)
        self.prefs = check_rays(prefs, len(self.tasks))
        if len(models) != len(self.prefs):
            raise PreferenceError(f"{len(models)} models for {len(self.prefs)} rays")
        self.models = list(models)
        self.method = method
        self.ray = ray

    def model_for(self, pref: Sequence[float] | Tensor) -> nn.Module:
        """The model trained for ``pref`` (one of the front's rays)."""
        p = check_rays([pref], len(self.tasks))[0]
        hit = torch.nonzero(torch.isclose(self.prefs, p, atol=1e-6).all(dim=1)).flatten()
        if len(hit) == 0:
            raise PreferenceError(
                f"this finite front has no model for preference {p.tolist()}; its rays are "
                f"{self.prefs.tolist()} (a preference-conditioned model answers any ray)"
            )
        return self.models[int(hit[0])]

    def evaluate(self, loader: Iterable, prefs: Any = None, *, split: str,
                 allow_train: bool = False, device: Any = None) -> FrontResult:
        """Each model on ``loader`` (``prefs`` default: every ray of the front)."""
        split = _check_split(split, allow_train)
        rays = self.prefs if prefs is None else check_rays(prefs, len(self.tasks))
        metrics = [evaluate_model(self.model_for(p), self.tasks, loader, device) for p in rays]
        return _result(self.method, split, list(self.tasks), rays, metrics, self.ray)


class ConditionedFront:
    """A preference-conditioned model seen as a front (COSMOS, PHN, Pareto manifold)."""

    def __init__(self, model: PreferenceConditioned, tasks: Any, method: str = "conditioned",
                 ray: str = "inverse") -> None:
        if not isinstance(model, PreferenceConditioned):
            raise PolytaskError(f"ConditionedFront needs a PreferenceConditioned model, got "
                                f"{type(model).__name__}")
        self.model = model
        self.tasks = as_task_dict(tasks)
        self.method = method
        self.ray = ray

    def evaluate(self, loader: Iterable, prefs: Any, *, split: str,
                 allow_train: bool = False, device: Any = None) -> FrontResult:
        """The model at each preference of ``prefs`` on ``loader``."""
        split = _check_split(split, allow_train)
        rays = check_rays(prefs, len(self.tasks))
        saved = self.model.eval_preference
        metrics = []
        try:
            for p in rays:
                self.model.eval_preference = p.float()
                metrics.append(evaluate_model(self.model, self.tasks, loader, device))
        finally:
            self.model.eval_preference = saved
        return _result(self.method, split, list(self.tasks), rays, metrics, self.ray)


def _result(method: str, split: str, names: list[str], rays: Tensor,
            metrics: list[dict[str, dict[str, float]]], ray: str) -> FrontResult:
    losses = np.array([[m[t]["loss"] for t in names] for m in metrics], dtype=np.float64)
    return FrontResult(method, split, names, rays.numpy(), losses, metrics, ray)


def write_front(result: FrontResult, out_dir: str | Path, stem: str = "front") -> dict[str, Path]:
    """Write ``<stem>.csv`` and ``<stem>.json`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.write_csv(out / f"{stem}.csv")
    (out / f"{stem}.json").write_text(json.dumps(result.to_json(), indent=2))
    return {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
