"""Tables of trained groups: each task's validation loss in each trained group of tasks.

The ground truth of task grouping (Standley, Zamir, Chen, Guibas, Malik & Savarese,
"Which Tasks Should Be Learned Together in Multi-task Learning?", ICML 2020): train a
network for a set of task groups, note every task's loss in every group, then choose
networks. :meth:`GroupTable.hoa` is that paper's higher-order approximation: a group of
three or more tasks is predicted from the pairs it contains.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PolytaskError
from .affinity import Affinity


@dataclass
class GroupEntry:
    """One trained (or predicted) network: its tasks, each task's score, its cost.

    ``scores[task]`` is the task's validation loss (or metric) in this network;
    ``cost`` its inference cost in units of one full network (Standley's half-size
    single-task networks cost 0.5).
    """

    tasks: tuple[str, ...]
    scores: dict[str, float]
    cost: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise PolytaskError(f"a group needs distinct tasks, got {list(self.tasks)}")
        missing = [t for t in self.tasks if t not in self.scores]
        if missing:
            raise PolytaskError(f"group {list(self.tasks)} has no score for task(s) {missing}")
        extra = [t for t in self.scores if t not in self.tasks]
        if extra:
            raise PolytaskError(f"group {list(self.tasks)} scores tasks outside it: {extra}")
        for t, v in self.scores.items():
            if not math.isfinite(float(v)):
                raise PolytaskError(f"group {list(self.tasks)}: score of {t!r} is {v}")
        if not (self.cost > 0 and math.isfinite(self.cost)):
            raise PolytaskError(f"group {list(self.tasks)}: cost must be positive, got {self.cost}")


class GroupTable:
    """Scores of tasks in groups of tasks; lower is better unless ``higher_is_better``.

    Args:
        tasks: every task, in order.
        entries: the networks (at most one per (tasks, cost)).
        higher_is_better: whether the scores are metrics to maximize.
    """

    def __init__(
        self, tasks: Sequence[str], entries: Iterable[GroupEntry], higher_is_better: bool = False
    ) -> None:
        self.tasks = [str(t) for t in tasks]
        if len(set(self.tasks)) != len(self.tasks):
            raise PolytaskError(f"task names repeat: {self.tasks}")
        self.higher_is_better = bool(higher_is_better)
        self.entries: list[GroupEntry] = []
        seen: set[tuple[frozenset, float]] = set()
        for entry in entries:
            unknown = [t for t in entry.tasks if t not in self.tasks]
            if unknown:
                raise PolytaskError(f"group {list(entry.tasks)} names unknown tasks {unknown}; "
                                    f"tasks are {self.tasks}")
            key = (frozenset(entry.tasks), float(entry.cost))
            if key in seen:
                raise PolytaskError(f"group {list(entry.tasks)} (cost {entry.cost}) appears twice")
            seen.add(key)
            self.entries.append(entry)
        covered = {t for e in self.entries for t in e.tasks}
        lacking = [t for t in self.tasks if t not in covered]
        if lacking:
            raise PolytaskError(f"no group in the table holds task(s) {lacking}")

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, tasks: Iterable[str], cost: float | None = None) -> GroupEntry:
        """The entry of exactly ``tasks`` (and ``cost`` when given)."""
        key = frozenset(tasks)
        for e in self.entries:
            if frozenset(e.tasks) == key and (cost is None or e.cost == cost):
                return e
        raise PolytaskError(f"the table has no group {sorted(key)}"
                            + (f" of cost {cost}" if cost is not None else ""))

    def has(self, tasks: Iterable[str]) -> bool:
        """Whether a group of exactly ``tasks`` is in the table."""
        key = frozenset(tasks)
        return any(frozenset(e.tasks) == key for e in self.entries)

    # -- Standley's higher-order approximation ------------------------------------
    def hoa(self) -> GroupTable:
        """Standley et al.'s higher-order approximation: every group of three or more
        tasks (all of them, not only those in the table) gets, for each task ``j``, the
        mean of ``j``'s score over the trained pairs ``{j, i}`` with ``i`` in the
        group. Singles and pairs are kept; a group containing an untrained pair is
        left out (so is every larger entry of the original table)."""
        keep = [e for e in self.entries if len(e.tasks) <= 2]
        pairs = {frozenset(e.tasks): e for e in keep if len(e.tasks) == 2 and e.cost == 1.0}
        if not pairs:
            raise PolytaskError("the higher-order approximation needs trained pairs of tasks")
        new = list(keep)
        for size in range(3, len(self.tasks) + 1):
            for group in combinations(self.tasks, size):
                scores = {}
                for j in group:
                    found = [pairs[frozenset((j, i))].scores[j] for i in group if i != j
                             and frozenset((j, i)) in pairs]
                    if len(found) != size - 1:
                        break
                    scores[j] = float(np.mean(found))
                else:
                    new.append(GroupEntry(group, scores, 1.0, {"hoa": True}))
        return GroupTable(self.tasks, new, self.higher_is_better)

    def pair_gains(self) -> Affinity:
        """Relative gain of each task from each partner, from singles and pairs:
        ``gain[j, i] = s · (L_{j} − L_{ij,j}) / |L_{j}|`` (``s = −1`` for metrics to
        maximize), indexed ``[recipient, source]``, 0 on the diagonal."""
        t = len(self.tasks)
        gains = np.zeros((t, t))
        sign = -1.0 if self.higher_is_better else 1.0
        for j, task in enumerate(self.tasks):
            single = self.get((task,), 1.0).scores[task]
            for i, other in enumerate(self.tasks):
                if i == j:
                    continue
                pair = self.get((task, other)).scores[task]
                gains[j, i] = sign * (single - pair) / abs(single) if single else 0.0
        return Affinity(self.tasks, gains, "pair-gain")

    # -- files ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "tasks": self.tasks,
            "higher_is_better": self.higher_is_better,
            "entries": [{"tasks": list(e.tasks), "scores": e.scores, "cost": e.cost,
                         "info": e.info} for e in self.entries],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupTable:
        """The inverse of :meth:`to_json`."""
        if "tasks" not in data or "entries" not in data:
            raise PolytaskError("a group table JSON needs keys 'tasks' and 'entries'")
        entries = [GroupEntry(tuple(e["tasks"]), {k: float(v) for k, v in e["scores"].items()},
                              float(e.get("cost", 1.0)), dict(e.get("info", {})))
                   for e in data["entries"]]
        return cls(data["tasks"], entries, bool(data.get("higher_is_better", False)))

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GroupTable:
        """Read a table written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise PolytaskError(f"no group table at {path}")
        return cls.from_json(json.loads(path.read_text()))

    @classmethod
    def read_standley(cls, path: str | Path, tasks: Sequence[str]) -> GroupTable:
        """Read a results table in the format of Standley et al.'s repository
        (``tstandley/taskgrouping``, ``network_selection/results*.txt``): tab-separated,
        one column per task, an empty cell where the network lacks the task; the first
        line holds the half-size (cost 0.5) single-task networks, every later line one
        full-size (cost 1) network."""
        path = Path(path)
        if not path.exists():
            raise PolytaskError(f"no results table at {path}")
        entries: list[GroupEntry] = []
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        for number, line in enumerate(lines, start=1):
            cells = line.split("\t")
            if len(cells) > len(tasks):
                if any(c.strip() for c in cells[len(tasks):]):
                    raise PolytaskError(f"{path}:{number}: {len(cells)} columns for "
                                        f"{len(tasks)} tasks")
                cells = cells[: len(tasks)]
            cells += [""] * (len(tasks) - len(cells))
            try:
                values = {t: float(c) for t, c in zip(tasks, cells) if c.strip()}
            except ValueError as error:
                raise PolytaskError(f"{path}:{number}: {error}") from None
            if number == 1:
                entries += [GroupEntry((t,), {t: v}, 0.5) for t, v in values.items()]
            else:
                group = tuple(t for t in tasks if t in values)
                entries.append(GroupEntry(group, values, 1.0))
        return cls(tasks, entries, higher_is_better=False)
