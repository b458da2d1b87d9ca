"""Choosing groups of tasks: from a table of trained groups or from an affinity table.

Every exact selector here solves the same problem: choose networks (groups of tasks,
each with a per-task score and a cost) of total cost within a budget, each task served
by the chosen network that is best for it, to optimize the sum of the served scores.
An optimal choice splits the tasks into disjoint *served sets*, each served by one
network that contains it (a network may hold more tasks than it serves: that is the
overlap Standley's and TAG's selections allow). So a dynamic programme over subsets
solves it exactly: ``best(B)`` = the best network for served set ``B``, then
``f(S) = opt over B ∋ min(S), B ⊆ S of best(B) ⊕ f(S \\ B)``, keeping for each ``S``
the cost/score Pareto front. Time ``O(3^T · front²)``, memory ``O(2^T · front)``:
instant for T ≤ 10 (the authors' exhaustive search takes about a minute and a half
for T = 9 and k = 3 on their machine), slow past T ≈ 12 — use :func:`select_beam` there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import PolytaskError
from .affinity import Affinity
from .table import GroupTable

#: exact selection refuses more tasks than this (3^T work); use select_beam
MAX_EXACT_TASKS = 12
#: TAG's notebook gives a task alone this affinity (it is never preferred to a group)
TAG_SINGLETON = -1e6


@dataclass
class Grouping:
    """A choice of networks: which groups to train and which group serves each task.

    Attributes:
        groups: the groups of tasks to train (one network each).
        served: ``{task: the group whose prediction is used for it}``.
        predicted: the selector's objective: the sum of served scores (a table of
            losses: predicted total loss; TAG: mean affinity over tasks, see ``method``).
        cost: the total inference cost of the networks.
        method: the selector that produced it.
        costs: the cost of each group (same order as ``groups``).
    """

    groups: list[tuple[str, ...]]
    served: dict[str, tuple[str, ...]]
    predicted: float
    cost: float
    method: str
    costs: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_partition(self) -> bool:
        """Whether every task is in exactly one group."""
        names = [t for g in self.groups for t in g]
        return len(names) == len(set(names))

    def partition(self) -> list[tuple[str, ...]]:
        """The served sets: the tasks each group serves (a partition of the tasks)."""
        return [tuple(t for t in g if self.served[t] == g) for g in self.groups]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"groups": [list(g) for g in self.groups],
                "served": {t: list(g) for t, g in self.served.items()},
                "predicted": self.predicted, "cost": self.cost, "method": self.method,
                "costs": self.costs, "info": self.info}

    def __str__(self) -> str:
        parts = []
        for g, c in zip(self.groups, self.costs or [1.0] * len(self.groups)):
            serves = [t for t in g if self.served[t] == g]
            extra = [t for t in g if t not in serves]
            text = "{" + ", ".join(serves) + "}"
            if extra:
                text += " (also trains " + ", ".join(extra) + ")"
            if c != 1.0:
                text += f" [cost {c:g}]"
            parts.append(text)
        return " + ".join(parts)


def check_groups(groups: Sequence[Sequence[str]], tasks: Sequence[str]) -> list[tuple[str, ...]]:
    """Groups as tuples; an error naming a task left out, unknown or empty groups."""
    result = []
    for g in groups:
        group = (g,) if isinstance(g, str) else tuple(g)
        if not group:
            raise PolytaskError("a grouping has an empty group")
        unknown = [t for t in group if t not in tasks]
        if unknown:
            raise PolytaskError(f"group {list(group)} names unknown task(s) {unknown}; "
                                f"tasks are {list(tasks)}")
        if len(set(group)) != len(group):
            raise PolytaskError(f"group {list(group)} repeats a task")
        result.append(group)
    covered = {t for g in result for t in g}
    left = [t for t in tasks if t not in covered]
    if left:
        raise PolytaskError(f"the grouping leaves out task(s) {left}")
    return result


def _submasks(mask: int):
    sub = mask
    while sub:
        yield sub
        sub = (sub - 1) & mask


@functools.lru_cache(maxsize=4)
def _pairs(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (set, block) with block ⊆ set holding the set's lowest task, sorted by set."""
    sets: list[int] = []
    blocks: list[int] = []
    for s in range(1, 1 << t):
        low = s & -s
        rest = s ^ low
        sub = rest
        while True:
            sets.append(s)
            blocks.append(sub | low)
            if sub == 0:
                break
            sub = (sub - 1) & rest
    return np.array(sets, dtype=np.int64), np.array(blocks, dtype=np.int64)


def _cost_unit(costs: Sequence[float]) -> float:
    for unit in (1.0, 0.5, 0.25, 0.1, 0.05, 0.01):
        if all(abs(c / unit - round(c / unit)) < 1e-9 for c in costs):
            return unit
    raise PolytaskError(f"network costs {sorted(set(costs))} must be multiples of 0.01")


def exact_selection(
    tasks: Sequence[str],
    networks: Sequence[tuple[tuple[str, ...], dict[str, float], float]],
    budget: float,
) -> tuple[list[tuple[int, tuple[str, ...]]], float, float]:
    """Minimize ``Σ_task score(served network, task)`` over choices of ``networks``
    (``(tasks, scores, cost)``) of total cost at most ``budget``.

    Returns ``([(network index, served tasks)], total, cost)``; raises when no choice
    covers every task within the budget. Ties go to the cheaper choice.
    """
    t = len(tasks)
    if t > MAX_EXACT_TASKS:
        raise PolytaskError(f"exact selection over {t} tasks (> {MAX_EXACT_TASKS}) is too "
                            "slow; use select_beam (method='beam')")
    pos = {name: i for i, name in enumerate(tasks)}
    full = (1 << t) - 1
    usable = [n for n, net in enumerate(networks) if net[2] <= budget + 1e-9]
    if not usable:
        raise PolytaskError(f"no network fits budget {budget:g} (cheapest costs "
                            f"{min((c for _, _, c in networks), default=math.inf):g})")
    unit = _cost_unit([networks[n][2] for n in usable])
    units = {n: int(round(networks[n][2] / unit)) for n in usable}
    limit = min(int(math.floor(budget / unit + 1e-9)), t * max(units.values()))
    # best[u]: for each served set, the best network of cost u units holding it
    best: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    bits_all = ((np.arange(full + 1)[:, None] >> np.arange(t)) & 1).astype(np.float64)
    for u in sorted(set(units.values())):
        nets = [n for n in usable if units[n] == u]
        masks = np.zeros(len(nets), dtype=np.int64)
        scores_matrix = np.zeros((len(nets), t))
        for row, n in enumerate(nets):
            group, scores, _ = networks[n]
            for name in group:
                masks[row] |= 1 << pos[name]
                scores_matrix[row, pos[name]] = scores[name]
        values = np.full(full + 1, np.inf)
        owner = np.full(full + 1, -1, dtype=np.int64)
        everything = np.arange(full + 1)
        step = max(1, 2_000_000 // (full + 1))
        for lo in range(0, len(nets), step):  # chunks of networks bound the memory
            m = masks[lo: lo + step]
            sums = bits_all @ scores_matrix[lo: lo + step].T  # (sets, networks)
            sums[(everything[:, None] & m[None, :]) != everything[:, None]] = np.inf
            arg = np.argmin(sums, axis=1)
            got = sums[everything, arg]
            better = got < values
            values[better] = got[better]
            owner[better] = np.asarray(nets)[lo + arg[better]]
        values[0] = np.inf
        best[u] = (values, owner)
    sets, blocks = _pairs(t)
    rests = sets ^ blocks
    starts = np.flatnonzero(np.r_[True, sets[1:] != sets[:-1]])
    # front[c][s]: best total serving set s at cost <= c units; back: block, net, cost
    front = np.full((limit + 1, full + 1), np.inf)
    front[:, 0] = 0.0
    back_block = np.zeros((limit + 1, full + 1), dtype=np.int64)
    back_net = np.full((limit + 1, full + 1), -1, dtype=np.int64)
    back_cost = np.zeros((limit + 1, full + 1), dtype=np.int64)
    positions = np.arange(len(sets))
    for c in range(1, limit + 1):
        front[c] = front[c - 1]
        back_block[c], back_net[c], back_cost[c] = back_block[c - 1], back_net[c - 1], \
            back_cost[c - 1]
        for u, (values, owner) in best.items():
            if u > c:
                continue
            candidates = values[blocks] + front[c - u][rests]
            seg_min = np.minimum.reduceat(candidates, starts)
            targets = sets[starts]
            better = seg_min < front[c][targets]
            if not better.any():
                continue
            hit = candidates <= np.repeat(seg_min, np.diff(np.r_[starts, len(sets)]))
            first = np.minimum.reduceat(np.where(hit, positions, len(sets)), starts)
            chosen_sets = targets[better]
            pick = first[better]  # the first block reaching each set's minimum
            front[c][chosen_sets] = candidates[pick]
            back_block[c][chosen_sets] = blocks[pick]
            back_net[c][chosen_sets] = owner[blocks[pick]]
            back_cost[c][chosen_sets] = c - u
    total = float(front[limit][full])
    if total == math.inf:
        raise PolytaskError(f"no choice of networks covers every task within budget {budget:g} "
                            f"(tasks {list(tasks)})")
    tol = 1e-12 * max(1.0, abs(total))
    c = next(c for c in range(limit + 1) if front[c][full] <= total + tol)
    total = float(front[c][full])
    chosen: list[tuple[int, tuple[str, ...]]] = []
    s, spent = full, 0
    while s:
        block, n, c_prev = int(back_block[c][s]), int(back_net[c][s]), int(back_cost[c][s])
        chosen.append((n, tuple(name for name in tasks if block & (1 << pos[name]))))
        spent += units[n]
        s, c = s ^ block, c_prev
    return chosen, total, spent * unit


def _grouping(
    tasks: Sequence[str], networks, chosen, total: float, cost: float, method: str
) -> Grouping:
    groups: list[tuple[str, ...]] = []
    costs: list[float] = []
    served: dict[str, tuple[str, ...]] = {}
    keys: list[tuple[int, ...]] = []
    for n, block in sorted(chosen, key=lambda c: min(tasks.index(x) for x in c[1])):
        group = tuple(networks[n][0])
        if n not in keys:
            keys.append(n)
            groups.append(group)
            costs.append(float(networks[n][2]))
        for name in block:
            served[name] = group
    return Grouping(groups, served, total, float(sum(costs)), method, costs)


def select_from_table(
    table: GroupTable, budget: float | None = None, groups: int | None = None,
    hoa: bool = False,
) -> Grouping:
    """Standley et al.'s network selection (ICML 2020): the networks of ``table`` with
    total inference cost at most ``budget`` (or, with ``groups=k``, at most ``k``
    full-size networks) minimizing the sum over tasks of each task's best loss among
    them; with ``hoa`` the table's groups of three or more are replaced by the
    higher-order approximation first.

    Exact (the subset dynamic programme of this module); the authors' branch and bound
    (``network_selection/main.cpp``) is exact too, so both return the same total (and
    the same networks up to ties). Scores where higher is better are negated.
    """
    if (budget is None) == (groups is None):
        raise PolytaskError("give exactly one of budget=... or groups=...")
    if groups is not None:
        _check_k(groups, len(table.tasks))
        networks = [(e.tasks, e.scores, 1.0) for e in (table.hoa() if hoa else table).entries
                    if e.cost == 1.0]
        budget = float(groups)
    else:
        if not budget > 0:
            raise PolytaskError(f"budget must be positive, got {budget}")
        source = table.hoa() if hoa else table
        networks = [(e.tasks, e.scores, e.cost) for e in source.entries]
    sign = -1.0 if table.higher_is_better else 1.0
    signed = [(g, {k: sign * v for k, v in s.items()}, c) for g, s, c in networks]
    chosen, total, cost = exact_selection(table.tasks, signed, float(budget))
    return _grouping(table.tasks, networks, chosen, sign * total, cost,
                     "standley-hoa" if hoa else "standley")


def evaluate_selection(grouping: Grouping, table: GroupTable) -> float:
    """The total of ``grouping``'s networks in another table (e.g. test losses): each
    task's best score among the chosen networks that hold it (as the authors' code
    scores a selection made on validation data)."""
    pick = min if not table.higher_is_better else max
    total = 0.0
    for task in table.tasks:
        values = []
        for g, c in zip(grouping.groups, grouping.costs or [1.0] * len(grouping.groups)):
            if task in g:
                values.append(table.get(g, c).scores[task])
        if not values:
            raise PolytaskError(f"the grouping has no network for task {task!r}")
        total += pick(values)
    return total


def _check_k(k: int, t: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise PolytaskError(f"the number of groups must be a positive integer, got {k!r}")
    if k > t:
        raise PolytaskError(f"{k} groups for {t} tasks: K cannot exceed the number of tasks")


def tag_group_scores(
    affinity: Affinity, group: Sequence[str], singleton: float = TAG_SINGLETON
) -> dict[str, float]:
    """TAG's score of each task in a group: the mean affinity it receives from the
    other members (``mean_{i∈G, i≠j} A[j, i]``); ``singleton`` for a task alone."""
    if len(group) == 1:
        return {group[0]: singleton}
    idx = [affinity.index(t) for t in group]
    values = affinity.values
    return {
        t: float(sum(values[j, i] for i in idx if i != j) / (len(idx) - 1))
        for t, j in zip(group, idx)
    }


def select_tag(
    affinity: Affinity, groups: int, singleton: float = TAG_SINGLETON,
    max_group_size: int | None = None,
) -> Grouping:
    """TAG's network selection (Fifty et al., NeurIPS 2021): at most ``groups`` groups
    (overlap allowed) maximizing the mean over tasks of each task's best group score
    (:func:`tag_group_scores`).

    The authors' notebook (``tag/network_selection/TAG_network_selection.ipynb``)
    enumerates every combination of up to k of the 2^T − 1 groups; here the same
    optimum comes from the exact subset programme (:func:`exact_selection`), in
    milliseconds. Differences: the notebook may report a group that serves no task
    (added by its depth-first search when it ties); polytask returns only groups that
    serve a task. ``predicted`` is the notebook's objective (mean over tasks).
    """
    tasks = affinity.tasks
    _check_k(groups, len(tasks))
    limit = max_group_size or len(tasks)
    t = len(tasks)
    masks = np.arange(1, 1 << t)
    member = ((masks[:, None] >> np.arange(t)) & 1).astype(np.float64)  # (groups, T)
    size = member.sum(axis=1)
    keep = size <= limit
    member, size = member[keep], size[keep]
    values = affinity.values
    received = member @ values.T - member * np.diag(values)  # Σ_{i∈G, i≠j} A[j, i]
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(size[:, None] > 1, received / np.maximum(size - 1, 1)[:, None],
                          singleton)
    networks = []
    for row, inside in zip(scores, member.astype(bool)):
        group = tuple(name for name, flag in zip(tasks, inside) if flag)
        networks.append((group, {name: float(v) for name, v, f in zip(tasks, row, inside) if f},
                         1.0))
    signed = [(g, {k: -v for k, v in s.items()}, c) for g, s, c in networks]
    chosen, total, cost = exact_selection(tasks, signed, float(groups))
    return _grouping(tasks, networks, chosen, -total / len(tasks), cost, "tag")


def partition_score(
    affinity: Affinity, blocks: Sequence[Sequence[str]], singleton: float = TAG_SINGLETON
) -> float:
    """TAG's objective (mean over tasks of the group score) for disjoint groups."""
    total = 0.0
    for block in blocks:
        total += sum(tag_group_scores(affinity, tuple(block), singleton).values())
    return total / len(affinity.tasks)


def select_beam(
    affinity: Affinity, groups: int, width: int = 64, singleton: float = TAG_SINGLETON,
    refine: bool = True,
) -> Grouping:
    """A scalable selector for many tasks: beam search over partitions into at most
    ``groups`` disjoint groups maximizing TAG's objective, then moves of single tasks
    between groups while they improve it.

    Why a beam: the exact programme costs 3^T (hours past T ≈ 16) and a MIP over the
    2^T candidate groups has as many variables; spectral clustering needs a
    symmetric, non-negative similarity and ignores TAG's asymmetric, signed
    affinities. The beam adds tasks one at a time (most-connected first), keeping the
    ``width`` best partial partitions: ``O(T · width · groups · T)`` work. It returns
    partitions only (no overlap), so its optimum can be below the exact overlap one.
    """
    tasks = affinity.tasks
    _check_k(groups, len(tasks))
    if width < 1:
        raise PolytaskError(f"beam width must be positive, got {width}")
    strength = np.abs(affinity.symmetric()).sum(axis=1) - np.abs(np.diag(affinity.values))
    order = [tasks[i] for i in np.argsort(-strength, kind="stable")]

    def key(state: tuple[tuple[str, ...], ...]) -> tuple:
        return tuple(sorted(state))

    beam: list[tuple[tuple[str, ...], ...]] = [()]
    for name in order:
        seen: dict[tuple, tuple[float, tuple[tuple[str, ...], ...]]] = {}
        for state in beam:
            options = [state[:b] + (state[b] + (name,),) + state[b + 1:] for b in range(len(state))]
            if len(state) < groups:
                options.append(state + ((name,),))
            for option in options:
                k = key(option)
                if k not in seen:
                    seen[k] = (_partial_score(affinity, option, singleton), option)
        ranked = sorted(seen.values(), key=lambda p: -p[0])
        beam = [state for _, state in ranked[:width]]
    best = max(beam, key=lambda s: _partial_score(affinity, s, singleton))
    blocks = [list(b) for b in best]
    if refine:
        blocks = _local_moves(affinity, blocks, groups, singleton)
    blocks_t = [tuple(t for t in tasks if t in b) for b in blocks if b]
    blocks_t.sort(key=lambda b: tasks.index(b[0]))
    served = {t: b for b in blocks_t for t in b}
    return Grouping(blocks_t, served, partition_score(affinity, blocks_t, singleton),
                    float(len(blocks_t)), "beam", [1.0] * len(blocks_t), {"width": width})


def _partial_score(affinity: Affinity, state, singleton: float) -> float:
    return sum(sum(tag_group_scores(affinity, b, singleton).values()) for b in state)


def _local_moves(affinity: Affinity, blocks: list[list[str]], k: int, singleton: float):
    current = partition_score(affinity, blocks, singleton)
    improved = True
    while improved:
        improved = False
        for b, block in enumerate(blocks):
            for name in list(block):
                for target in range(len(blocks) + (1 if len(blocks) < k else 0)):
                    if target == b:
                        continue
                    trial = [list(x) for x in blocks] + ([[]] if target == len(blocks) else [])
                    trial[b].remove(name)
                    trial[target].append(name)
                    trial = [x for x in trial if x]
                    score = partition_score(affinity, trial, singleton)
                    if score > current + 1e-12:
                        blocks, current, improved = trial, score, True
                        break
                if improved:
                    break
            if improved:
                break
    return blocks


def select(
    source: Affinity | GroupTable, groups: int | None = None, budget: float | None = None,
    method: str = "auto", **kwargs: Any,
) -> Grouping:
    """Choose groups from an affinity table (TAG's selection, or the beam for many
    tasks) or from a table of trained groups (Standley's selection, ``method="hoa"``
    for the higher-order approximation). ``method="auto"``: exact TAG up to
    :data:`MAX_EXACT_TASKS` tasks, the beam above."""
    if isinstance(source, GroupTable):
        if method not in ("auto", "standley", "hoa"):
            raise PolytaskError(f"method {method!r} for a group table; use standley or hoa")
        return select_from_table(source, budget=budget, groups=groups, hoa=method == "hoa")
    if budget is not None:
        if groups is not None:
            raise PolytaskError("give --groups or --budget, not both, for an affinity table")
        if budget < 1 or budget != int(budget):
            raise PolytaskError(f"budget {budget:g}: with an affinity table every group "
                                "costs one network, so the budget is a whole number ≥ 1")
        groups = int(budget)
    if groups is None:
        raise PolytaskError("give the number of groups (groups=K)")
    if method == "auto":
        method = "tag" if len(source.tasks) <= MAX_EXACT_TASKS else "beam"
    if method == "tag":
        return select_tag(source, groups, **kwargs)
    if method == "beam":
        return select_beam(source, groups, **kwargs)
    raise PolytaskError(f"unknown selection method {method!r}; available: auto, tag, beam, "
                        "standley, hoa")
