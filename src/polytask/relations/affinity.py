"""The :class:`Affinity` result: a T×T table of task relationships and its provenance."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PolytaskError


def check_table(values: Any, tasks: Sequence[str], what: str = "affinity table") -> np.ndarray:
    """``values`` as a float64 T×T array; a clear error for a wrong shape or a NaN."""
    array = np.asarray(values, dtype=np.float64)
    t = len(tasks)
    if len(set(tasks)) != t:
        raise PolytaskError(f"{what}: task names repeat: {list(tasks)}")
    if array.shape != (t, t):
        raise PolytaskError(f"{what}: shape {array.shape} for {t} tasks {list(tasks)}")
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        cells = ", ".join(f"[{tasks[i]!r}, {tasks[j]!r}]" for i, j in bad[:5])
        raise PolytaskError(f"{what}: non-finite value(s) at [recipient, source] {cells}")
    return array


@dataclass
class Affinity:
    """A table of task relationships, indexed ``[recipient, source]``.

    ``values[j, i]`` says how much task ``i`` (the source) helps task ``j`` (the
    recipient): for the lookahead estimator ``Z_{i→j}``, for the gradient estimators
    the (symmetric) cosine or inner product of the two tasks' gradients.

    Attributes:
        tasks: the task names, the order of rows and columns.
        values: the T×T table, averaged over every recorded step.
        estimator: ``"tag"``, ``"cosine"``, ``"inner"`` or a user's name.
        steps: how many steps were recorded; ``every``: one in how many steps.
        lr: the lookahead's learning rate (None: the optimizer's, or not a lookahead).
        history: one T×T table per epoch (the mean over that epoch's recorded steps).
        group_values: higher-order affinities ``{source group: {recipient: value}}``.
        info: free-form provenance (benchmark, seed, optimizer, ...).
    """

    tasks: list[str]
    values: np.ndarray
    estimator: str = "custom"
    steps: int = 0
    every: int = 1
    lr: float | None = None
    history: list[np.ndarray] = field(default_factory=list)
    group_values: dict[tuple[str, ...], dict[str, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tasks = [str(t) for t in self.tasks]
        self.values = check_table(self.values, self.tasks)
        self.history = [check_table(h, self.tasks, "affinity history") for h in self.history]
        for group, row in self.group_values.items():
            unknown = (set(group) | set(row)) - set(self.tasks)
            if unknown:
                raise PolytaskError(
                    f"affinity of group {list(group)} names unknown tasks {sorted(unknown)}"
                )

    # -- access -------------------------------------------------------------------
    def index(self, task: str) -> int:
        """The row/column of ``task``; an error listing the tasks when unknown."""
        try:
            return self.tasks.index(task)
        except ValueError:
            raise PolytaskError(
                f"unknown task {task!r}; the affinity table has tasks {self.tasks}"
            ) from None

    def __getitem__(self, key: tuple[str, str]) -> float:
        """``affinity["recipient", "source"]``."""
        recipient, source = key
        return float(self.values[self.index(recipient), self.index(source)])

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{recipient: {source: value}}``."""
        return {r: {s: float(self.values[i, j]) for j, s in enumerate(self.tasks)}
                for i, r in enumerate(self.tasks)}

    def subset(self, tasks: Sequence[str]) -> Affinity:
        """The table restricted to ``tasks`` (in that order)."""
        idx = [self.index(t) for t in tasks]
        return Affinity(list(tasks), self.values[np.ix_(idx, idx)], self.estimator, self.steps,
                        self.every, self.lr, [h[np.ix_(idx, idx)] for h in self.history],
                        info=dict(self.info))

    def symmetric(self) -> np.ndarray:
        """``(A + Aᵀ) / 2``, e.g. for clustering."""
        return 0.5 * (self.values + self.values.T)

    @classmethod
    def from_dict(
        cls, table: Mapping[str, Mapping[str, float]], estimator: str = "custom", **kwargs: Any
    ) -> Affinity:
        """From ``{recipient: {source: value}}`` (every pair must be present)."""
        tasks = list(table)
        values = np.empty((len(tasks), len(tasks)))
        for i, r in enumerate(tasks):
            missing = [s for s in tasks if s not in table[r]]
            if missing:
                raise PolytaskError(f"affinity table: row {r!r} lacks sources {missing}")
            extra = set(table[r]) - set(tasks)
            if extra:
                raise PolytaskError(f"affinity table: row {r!r} names unknown tasks {extra}")
            values[i] = [float(table[r][s]) for s in tasks]
        return cls(tasks, values, estimator, **kwargs)

    # -- files ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Everything, as JSON-ready data."""
        return {
            "tasks": self.tasks,
            "index": "[recipient, source]",
            "values": self.values.tolist(),
            "estimator": self.estimator,
            "steps": self.steps,
            "every": self.every,
            "lr": self.lr,
            "history": [h.tolist() for h in self.history],
            "group_values": [
                {"sources": list(g), "values": row} for g, row in self.group_values.items()
            ],
            "info": self.info,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Affinity:
        """The inverse of :meth:`to_json`."""
        for key in ("tasks", "values"):
            if key not in data:
                raise PolytaskError(f"affinity JSON lacks key {key!r}")
        groups = {tuple(g["sources"]): dict(g["values"]) for g in data.get("group_values", [])}
        return cls(list(data["tasks"]), np.array(data["values"], dtype=np.float64),
                   data.get("estimator", "custom"), int(data.get("steps", 0)),
                   int(data.get("every", 1)), data.get("lr"),
                   [np.array(h, dtype=np.float64) for h in data.get("history", [])],
                   groups, dict(data.get("info", {})))

    def save(self, path: str | Path) -> Path:
        """Write ``.json`` (everything) or ``.csv`` (the table: a header of sources, one
        row per recipient), by the suffix of ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix == ".csv":
            with tmp.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["recipient\\source", *self.tasks])
                for task, row in zip(self.tasks, self.values):
                    writer.writerow([task, *(repr(float(v)) for v in row)])
        elif path.suffix == ".json":
            tmp.write_text(json.dumps(self.to_json(), indent=1))
        else:
            raise PolytaskError(f"{path}: an affinity table is saved as .json or .csv")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Affinity:
        """Read a table written by :meth:`save` (``.json`` or ``.csv``)."""
        path = Path(path)
        if not path.exists():
            raise PolytaskError(f"no affinity table at {path}")
        if path.suffix == ".json":
            return cls.from_json(json.loads(path.read_text()))
        if path.suffix != ".csv":
            raise PolytaskError(f"{path}: expected a .json or .csv affinity table")
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise PolytaskError(f"{path}: empty file")
        tasks = rows[0][1:]
        names = [r[0] for r in rows[1:]]
        if names != tasks:
            raise PolytaskError(
                f"{path}: row tasks {names} differ from column tasks {tasks}"
            )
        values = []
        for r in rows[1:]:
            try:
                values.append([float(v) for v in r[1:]])
            except ValueError as error:
                raise PolytaskError(f"{path}: row {r[0]!r}: {error}") from None
        return cls(tasks, np.array(values), info={"file": str(path)})


def mean_table(tables: Sequence[np.ndarray], t: int) -> np.ndarray:
    """The mean of ``tables`` (NaN-free), zeros when there is none."""
    if not tables:
        return np.zeros((t, t))
    return np.mean(np.stack(tables), axis=0)


def is_close(a: float, b: float) -> bool:
    """Equal up to float rounding (for totals computed in another order)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
