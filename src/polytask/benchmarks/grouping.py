"""Task grouping on a benchmark: affinities from one run, ground truth from trained
groups, and the evaluation harness that trains a grouping and its baselines.

Every trained model goes through :meth:`BenchmarkRunner.train_one` and is cached in
``out_dir/runs/group-<tasks>/seed<N>/result.json`` with the run's settings (like
``polytask bench``), so an interrupted study resumes and groups shared by several
groupings are trained once.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import balancing, models
from ..errors import PolytaskError
from ..metrics import delta_m
from ..relations import Affinity, GroupEntry, Grouping, GroupTable, check_groups
from ..training import AffinityCallback, Trainer, seed_everything
from .runner import BenchmarkRunner, RunResult, _loader, _select, parse_method


def group_name(group: Sequence[str]) -> str:
    """The run-directory name of a group of tasks."""
    return "group-" + "+".join(group)


@dataclass
class GroupingResult:
    """A grouping's test results for one seed: each task's metrics from the group that
    serves it, the total test loss and Δm against the single-task baselines."""

    name: str
    groups: list[tuple[str, ...]]
    seed: int
    metrics: dict[str, dict[str, float]]
    total_loss: float
    delta_m: float
    seconds: float


@dataclass
class GroupingStudy:
    """Ground truth and evaluation of task groupings on one benchmark.

    Args:
        runner: the :class:`BenchmarkRunner` (benchmark, data, settings, ``out_dir``).
        arch, method: the architecture and balancing method of every group's model.
    """

    runner: BenchmarkRunner
    arch: str = "hard"
    method: str = "ew"
    log: Any = print
    _tasks: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        balancing.method_class(parse_method(self.method)[0])
        models.builder(self.arch)
        self._tasks = self.runner.benchmark.tasks()

    @property
    def task_names(self) -> list[str]:
        """The benchmark's non-auxiliary tasks."""
        return [n for n, t in self._tasks.items() if not t.auxiliary]

    # -- one group ------------------------------------------------------------------
    def train_group(self, group: Sequence[str], seed: int) -> RunResult:
        """Train (or reuse) one model on ``group``'s tasks; its test and val metrics."""
        group = tuple(group)
        unknown = [t for t in group if t not in self._tasks]
        if unknown:
            raise PolytaskError(f"group {list(group)} names unknown task(s) {unknown}; "
                                f"benchmark {self.runner.benchmark.name} has {list(self._tasks)}")
        run_dir = self.runner.out_dir / "runs" / group_name(group) / f"seed{seed}"
        run = self.runner._cached_run(run_dir)
        if run is None:
            tasks = {t: self._tasks[t] for t in group}
            run = self.runner.train_one(tasks, self.arch, self.method, seed, run_dir)
            self.runner._save_run(run, run_dir)
        return run

    # -- ground truth -----------------------------------------------------------------
    def ground_truth(
        self, groups: str | Sequence[Sequence[str]] = "pairs", seeds: Sequence[int] = (0,)
    ) -> GroupTable:
        """Train ``groups`` (``"pairs"``: every single task and pair — what Standley's
        higher-order approximation needs; ``"all"``: every subset) for each seed; a
        :class:`GroupTable` of each task's validation loss in each group (mean over
        seeds), with test losses and metrics in each entry's ``info``."""
        names = self.task_names
        if groups == "pairs":
            chosen = [(t,) for t in names] + [
                (a, b) for i, a in enumerate(names) for b in names[i + 1:]
            ]
        elif groups == "all":
            chosen = [tuple(t for b, t in enumerate(names) if m >> b & 1)
                      for m in range(1, 1 << len(names))]
        else:
            chosen = [tuple(g) for g in groups]
        entries = []
        for group in chosen:
            runs = [self.train_group(group, s) for s in seeds]
            scores = {t: statistics.fmean(r.val_metrics[t]["loss"] for r in runs) for t in group}
            info = {
                "test_loss": {t: statistics.fmean(r.metrics[t]["loss"] for r in runs)
                              for t in group},
                "test_metrics": {t: {m: statistics.fmean(r.metrics[t][m] for r in runs)
                                     for m in self.runner.benchmark.report.get(t, ())}
                                 for t in group},
                "seconds": sum(r.seconds for r in runs),
                "seeds": list(seeds),
            }
            entries.append(GroupEntry(group, scores, 1.0, info))
            self.log(f"  {'+'.join(group)}: val loss "
                     + " ".join(f"{t}={v:.4f}" for t, v in scores.items()))
        return GroupTable(names, entries)

    # -- affinity from one run --------------------------------------------------------------
    def measure_affinity(
        self, estimator: str = "tag", every: int = 10, seed: int = 0, lr: float | None = None,
    ) -> tuple[Affinity | None, float]:
        """Train one all-task model with an :class:`AffinityCallback` (``estimator=None``:
        without one); ``(affinity, seconds of training)``."""
        runner = self.runner
        settings = runner._settings()
        seed_everything(seed)
        tasks = {t: self._tasks[t] for t in self.task_names}
        model = models.get(self.arch, tasks=tasks, backbone=runner.benchmark.backbone(runner.data))
        name, kwargs = parse_method(self.method)
        callbacks = [AffinityCallback(estimator, every=every, lr=lr)] if estimator else []

        def optimizer(groups):  # noqa: ANN001, ANN202
            return torch.optim.Adam(groups, lr=settings["lr"],
                                    weight_decay=settings["weight_decay"])

        trainer = Trainer(model, tasks, balancing.get(name, **kwargs), optimizer,
                          device=runner.device, seed=seed, progress=runner.progress,
                          callbacks=callbacks)
        loader = _loader(_select(runner.data.train, tasks), settings["batch_size"], True)
        start = time.perf_counter()
        trainer.fit(loader, settings["epochs"])
        seconds = time.perf_counter() - start
        if not callbacks:
            return None, seconds
        affinity = callbacks[0].affinity
        assert affinity is not None
        affinity.info.update({"benchmark": runner.benchmark.name, "seed": seed,
                              "epochs": settings["epochs"], "seconds": seconds})
        return affinity, seconds

    # -- evaluation harness ---------------------------------------------------------------
    def evaluate(
        self, grouping: Grouping | Sequence[Sequence[str]], seed: int, name: str = "grouping"
    ) -> GroupingResult:
        """Train every group of ``grouping`` (cached) and score it on the test split."""
        names = self.task_names
        if isinstance(grouping, Grouping):
            groups = check_groups(grouping.groups, names)
            served = dict(grouping.served)
        else:
            groups = check_groups(grouping, names)
            served = {}
        runs = {g: self.train_group(g, seed) for g in groups}
        metrics: dict[str, dict[str, float]] = {}
        for task in names:
            if task not in served:  # best validation loss among the groups holding it
                served[task] = min((g for g in groups if task in g),
                                   key=lambda g: runs[g].val_metrics[task]["loss"])
            metrics[task] = runs[served[task]].metrics[task]
        baseline, _ = self.runner.baselines(seed)
        report = self.runner.benchmark.report
        directions = {t: {m: self._tasks[t].higher_is_better[m] for m in ms}
                      for t, ms in report.items()}
        return GroupingResult(
            name, groups, seed, metrics, sum(metrics[t]["loss"] for t in names),
            delta_m(metrics, baseline, directions), sum(r.seconds for r in runs.values()),
        )

    def compare(
        self,
        groupings: dict[str, Grouping | Sequence[Sequence[str]]],
        seeds: Sequence[int] = (0,),
        random_groupings: int = 10,
        random_seed: int = 0,
        random_seeds: Sequence[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Each grouping beside all-together, all-separate and the mean of
        ``random_groupings`` random partitions with the same number of groups (each
        trained for ``random_seeds``, default ``seeds``): one row per grouping, mean ±
        std over seeds (and random partitions) of the total test loss and Δm."""
        names = self.task_names
        rows = []
        base = {"all-together": [tuple(names)], "all-separate": [(t,) for t in names]}
        for label, grouping in {**base, **groupings}.items():
            results = [self.evaluate(grouping, s, label) for s in seeds]
            groups = results[0].groups
            rows.append(_row(label, groups, results))
            self.log(f"  {label}: total loss {rows[-1]['total_loss'][0]:.4f}, "
                     f"Δm {rows[-1]['delta_m'][0]:+.2f}%")
        # random partitions of the sizes compared (1 and T groups have only one)
        sizes = sorted({len(_groups_of(g)) for g in groupings.values()} - {1, len(names)})
        rng = random.Random(random_seed)
        for k in sizes:
            results = []
            for _ in range(random_groupings):
                partition = random_partition(names, k, rng)
                results += [self.evaluate(partition, s, f"random-{k}")
                            for s in (seeds if random_seeds is None else random_seeds)]
            if results:
                rows.append(_row(f"random ({random_groupings}×, {k} groups)", None, results))
                self.log(f"  random k={k}: total loss {rows[-1]['total_loss'][0]:.4f}")
        return rows


def _groups_of(grouping: Grouping | Sequence[Sequence[str]]) -> list:
    return list(grouping.groups) if isinstance(grouping, Grouping) else list(grouping)


def _row(label: str, groups, results: Sequence[GroupingResult]) -> dict[str, Any]:
    def mean_std(values):
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return (math.nan, math.nan)
        return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)

    return {
        "grouping": label,
        "groups": None if groups is None else [list(g) for g in groups],
        "runs": len(results),
        "total_loss": mean_std([r.total_loss for r in results]),
        "delta_m": mean_std([r.delta_m for r in results]),
        "seconds": mean_std([r.seconds for r in results]),
    }


def random_partition(tasks: Sequence[str], k: int, rng: random.Random) -> list[tuple[str, ...]]:
    """A random partition of ``tasks`` into exactly ``k`` non-empty groups (shuffled
    order, k distinct labels, the rest drawn at random)."""
    if not 1 <= k <= len(tasks):
        raise PolytaskError(f"{k} groups for {len(tasks)} tasks")
    order = list(tasks)
    rng.shuffle(order)
    labels = list(range(k)) + [rng.randrange(k) for _ in range(len(tasks) - k)]
    rng.shuffle(labels)
    groups = [tuple(t for t, lab in zip(order, labels) if lab == g) for g in range(k)]
    return [tuple(t for t in tasks if t in g) for g in groups]


def format_rows(rows: Sequence[dict[str, Any]], markdown: bool = True) -> str:
    """The comparison rows as a Markdown table."""
    lines = ["| grouping | groups | total test loss | Δm % | runs |", "|---|---|---|---|---|"]
    for r in rows:
        groups = "-" if r["groups"] is None else " ".join("{" + ",".join(g) + "}"
                                                          for g in r["groups"])
        tl, dm = r["total_loss"], r["delta_m"]
        lines.append(f"| {r['grouping']} | {groups} | {tl[0]:.4f} ± {tl[1]:.4f} | "
                     f"{dm[0]:+.2f} ± {dm[1]:.2f} | {r['runs']} |")
    return "\n".join(lines)


def default_out(benchmark: str) -> Path:
    """Where grouping studies of ``benchmark`` go by default."""
    return Path("runs") / f"grouping-{benchmark}"
