"""Benchmarks whose tasks come from different datasets, and their runner.

A multi-dataset benchmark's ``load`` returns :class:`MultiDatasetData`: for each split,
``{task or (task, ...): Split}``, one dataset per task (or task group).
:class:`MultiDatasetRunner` is the :class:`~polytask.benchmarks.BenchmarkRunner` with
:mod:`polytask.multidataset` loaders: single-task baselines train on their own dataset,
multi-task runs draw batches under a sampling schedule, every task is evaluated on its
own dataset's validation and test split, and Δm is computed as for every benchmark.

A run is named by a composite spec ``METHOD[@SCHEDULE][@distill]``:

- ``METHOD``: a balancing method spec (``ew``, ``pcgrad``, ``cagrad:c=0.4``);
- ``SCHEDULE``: a sampling schedule spec (``uniform``, ``temperature:T=2``, ...) used
  with the runner's ``mode`` (single-dataset batches by default), or ``grouped``
  (every dataset in every step — what gradient methods need); default
  ``proportional``. ``annealed`` gets the run's epochs, and ``dynamic`` the
  same-seed single-task validation losses as its reference, unless given;
- ``distill``: the student of BAM's teacher-annealed distillation from the same-seed
  single-task models (Clark et al., ACL 2019).

Every model, single- or multi-task, trains for the same number of optimizer steps
(``epochs × steps_per_epoch``); validation runs after each epoch, and the runner
records the first step at which every task's validation loss is within
each of ``target_margins`` of its single-task model's (``steps_to_target.md``).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import balancing, models
from ..errors import PolytaskError
from ..multidataset import (
    Distillation,
    MultiDatasetLoader,
    PerDatasetLoader,
    schedules,
    student_tasks,
    teacher_outputs,
)
from ..training import Trainer, seed_everything
from .base import Split
from .runner import BenchmarkResults, BenchmarkRunner, RunResult, parse_method

Sources = dict[Any, Split]


@dataclass
class MultiDatasetData:
    """Per split, ``{task or (task, ...): Split}``: each task's own dataset."""

    train: Sources
    val: Sources
    test: Sources


def parse_run(spec: str) -> tuple[str, str | None, bool]:
    """``"pcgrad@grouped@distill"`` -> ``("pcgrad", "grouped", True)``."""
    parts = [p.strip() for p in spec.split("@")]
    method = parts[0]
    schedule = parts[1] if len(parts) > 1 and parts[1] != "distill" else None
    flags = parts[2:] if schedule is not None else parts[1:]
    unknown = [f for f in flags if f != "distill"]
    if unknown or not method:
        raise PolytaskError(
            f"run spec {spec!r}: expected METHOD[@SCHEDULE][@distill], got extra {unknown}"
        )
    return method, schedule, "distill" in flags


def _keys_for(sources: Sources, tasks: Sequence[str]) -> Sources:
    """The datasets of ``tasks``, each restricted to those tasks."""
    out: Sources = {}
    for key, split in sources.items():
        group = (key,) if isinstance(key, str) else tuple(key)
        keep = tuple(t for t in group if t in tasks)
        if not keep:
            continue
        new_key: Any = keep[0] if len(keep) == 1 else keep
        out[new_key] = Split(split.inputs, {t: split.targets[t] for t in keep})
    missing = [t for t in tasks if not any(
        t == k or (isinstance(k, tuple) and t in k) for k in out
    )]
    if missing:
        raise PolytaskError(f"the benchmark has no dataset for task(s) {missing}")
    return out


@dataclass
class MultiDatasetRunner(BenchmarkRunner):
    """:class:`BenchmarkRunner` for multi-dataset benchmarks (see the module docstring).

    Extra args:
        mode: batch composition for schedule specs (``"single"`` or ``"mixed"``).
        steps_per_epoch: optimizer steps per epoch (default: the benchmark's option,
            else one pass over the largest training dataset).
        target_margins: the steps-to-target thresholds, relative to each task's
            single-task validation loss (default within 10% and within 25%).
    """

    mode: str = "single"
    steps_per_epoch: int | None = None
    target_margins: tuple[float, ...] = (0.10, 0.25)
    max_samples: dict[str, int | dict[str, int]] | None = None
    _baseline_memo: dict[int, tuple[dict, dict]] = field(default_factory=dict, repr=False)

    def baselines(self, seed: int) -> tuple[dict, dict]:
        """As :meth:`BenchmarkRunner.baselines`, computed once per seed and runner."""
        if seed not in self._baseline_memo:
            self._baseline_memo[seed] = super().baselines(seed)
        return self._baseline_memo[seed]

    @property
    def data(self) -> MultiDatasetData:  # type: ignore[override]
        """The benchmark's datasets, loaded once; with ``max_samples`` (``{split: n}`` or
        ``{split: {dataset: n}}``) each dataset of a split keeps its first n samples
        (quick runs)."""
        if self._data is None:
            data = self.benchmark.load(self.data_dir, 0)
            if not isinstance(data, MultiDatasetData):
                raise PolytaskError(
                    f"benchmark {self.benchmark.name!r} is not a multi-dataset benchmark"
                )
            for split, limit in (self.max_samples or {}).items():
                sources = getattr(data, split)
                for key, part in sources.items():
                    name = key if isinstance(key, str) else "+".join(key)
                    n = limit.get(name) if isinstance(limit, dict) else limit
                    if n is None:
                        continue
                    sources[key] = Split(
                        part.inputs[:n], {t: y[:n] for t, y in part.targets.items()}
                    )
            self._data = data  # type: ignore[assignment]
        return self._data  # type: ignore[return-value]

    def _settings(self) -> dict[str, Any]:
        settings = super()._settings()
        settings.update(
            mode=self.mode, steps_per_epoch=self._steps(), max_samples=self.max_samples
        )
        return settings

    def _steps(self) -> int | None:
        """Steps per epoch, or None: the loader's default epoch (one pass over every
        dataset of the run; grouped: over its largest), so that a single-task model
        and a multi-task one see each of their samples about once per epoch."""
        steps = self.steps_per_epoch or self.benchmark.options.get("steps_per_epoch")
        return int(steps) if steps else None

    def method_spec(self, spec: str) -> str:
        """The balancing method of ``METHOD[@SCHEDULE][@distill]``."""
        return parse_run(spec)[0]

    def check_method(self, spec: str) -> None:
        """Raise on an unknown balancing method or schedule in a run spec."""
        method, schedule, _ = parse_run(spec)
        balancing.method_class(parse_method(method)[0])
        if schedule is not None and schedule != "grouped":
            schedules.available()  # the registry is loaded
            name = schedules.parse_spec(schedule)[0]
            if name not in schedules._SCHEDULES:  # noqa: SLF001
                raise PolytaskError(
                    f"run {spec!r}: unknown schedule {name!r}; available: "
                    f"{', '.join(schedules.available())}, grouped"
                )

    # -- building one run -------------------------------------------------------------
    def _schedule(self, spec: str | None, seed: int, tasks: dict) -> schedules.Schedule | None:
        if spec is None:
            return None
        name, kwargs = schedules.parse_spec(spec)
        if name == "annealed":
            kwargs.setdefault("epochs", self._settings()["epochs"])
        if name == "dynamic" and "reference" not in kwargs:
            _, val = self.baselines(seed)
            kwargs["reference"] = {t: val[t]["loss"] for t in tasks if t in val}
        return schedules.get(name, **kwargs)

    def _teachers(self, tasks: dict, seed: int) -> dict[str, torch.nn.Module]:
        self.baselines(seed)  # trains them if needed
        teachers = {}
        for name, task in tasks.items():
            path = self.out_dir / "runs" / f"single-{name}" / f"seed{seed}" / "best.pt"
            if not path.exists():
                raise PolytaskError(f"distillation: no single-task model of {name!r} at {path}")
            model = models.get("hard", tasks={name: task}, backbone=self.benchmark.backbone(
                self.data))
            state = torch.load(path, map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"])
            teachers[name] = model
        return teachers

    def train_one(
        self, tasks: dict, arch: str, method: str, seed: int, run_dir: Path
    ) -> RunResult:
        """Train one model on the datasets of ``tasks``; test metrics per dataset."""
        settings = self._settings()
        method_spec, schedule_spec, distill = parse_run(method)
        names = list(tasks)
        train = _keys_for(self.data.train, names)
        if len(train) == 1:  # a single-task baseline: its own dataset only
            mode, schedule_spec = "single", None
        elif schedule_spec == "grouped":
            mode = "grouped"
        else:
            mode = self.mode
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        distillation = None
        train_tasks = tasks
        if distill:
            teachers = self._teachers(tasks, seed)
            probe = MultiDatasetLoader(train, settings["batch_size"], epoch=1)
            outputs = teacher_outputs(teachers, probe, tasks, device=device)
            distillation = Distillation(tasks, outputs, settings["epochs"])
            train_tasks = student_tasks(tasks)
        seed_everything(seed)
        schedule = self._schedule(
            schedule_spec if schedule_spec != "grouped" else None, seed, tasks
        )
        loader = MultiDatasetLoader(
            train, settings["batch_size"], schedule=schedule, mode=mode,
            epoch=settings["steps_per_epoch"], tasks=train_tasks, distillation=distillation,
        )
        backbone = self.benchmark.backbone(self.data)
        model = models.get(arch, tasks=train_tasks, backbone=backbone)
        name, kwargs = parse_method(method_spec)
        balancer = balancing.get(name, **kwargs)

        def optimizer(groups):
            return torch.optim.Adam(
                groups, lr=settings["lr"], weight_decay=settings["weight_decay"]
            )

        trainer = Trainer(
            model, train_tasks, balancer, optimizer, device=device, log_dir=run_dir,
            seed=seed, progress=self.progress,
        )
        val = PerDatasetLoader(_keys_for(self.data.val, names), 2048, inputs=loader.inputs_mode)
        test = PerDatasetLoader(_keys_for(self.data.test, names), 2048,
                                inputs=loader.inputs_mode)
        start = time.perf_counter()
        history = trainer.fit(
            loader, settings["epochs"], val_loader=val,
            overwrite=True,  # the runner decides reuse itself (settings in result.json)
        )
        seconds = time.perf_counter() - start
        trainer.load_best()
        metrics = trainer.evaluate(test)
        val_metrics = trainer.evaluate(val)
        curve = [
            {t: entry["val"][f"loss/{t}"] for t in names} for entry in history
        ]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "val_curve.json").write_text(json.dumps(
            {"steps_per_epoch": loader.steps_per_epoch, "val_loss": curve}
        ))
        return RunResult(
            method, arch, seed, metrics, seconds, settings["epochs"], val_metrics=val_metrics
        )

    # -- steps to a target validation loss ---------------------------------------------
    def steps_to_target(
        self, results: BenchmarkResults, margin: float = 0.10
    ) -> list[dict[str, Any]]:
        """Per run label: the mean over seeds of the first step at which every task's
        validation loss is ≤ (1 + margin) × its same-seed single-task one."""
        rows: dict[tuple[str, str], list[float | None]] = {}
        for run in results.runs:
            path = self.out_dir / "runs" / f"{run.arch}-{run.method}" / f"seed{run.seed}"
            curve_file = path / "val_curve.json"
            base = results.val_baselines.get(run.seed, {})
            step = None
            if curve_file.exists() and base:
                saved = json.loads(curve_file.read_text())
                for epoch, losses in enumerate(saved["val_loss"]):
                    if all(v <= (1 + margin) * base[t]["loss"]
                           for t, v in losses.items() if t in base):
                        step = (epoch + 1) * saved["steps_per_epoch"]
                        break
            rows.setdefault((run.arch, run.method), []).append(step)
        table = []
        for (arch, method), steps in rows.items():
            reached = [s for s in steps if s is not None]
            table.append({
                "arch": arch, "method": method, "reached": f"{len(reached)}/{len(steps)}",
                "steps": statistics.fmean(reached) if reached else None,
            })
        return table

    def run(
        self, methods: Sequence[str], archs: Sequence[str] = ("hard",), seeds: Sequence[int] = (0,)
    ) -> BenchmarkResults:
        """As :meth:`BenchmarkRunner.run`, plus ``steps_to_target.md`` in ``out_dir``."""
        results = super().run(methods, archs, seeds)
        lines = [
            "Steps until every task's validation loss is within the margin of its "
            "single-task model's (validation after every epoch of "
            f"{self._steps() or 'one pass (per run)'} steps; mean over the seeds that "
            "reach it).",
        ]
        for margin in self.target_margins:
            lines += [
                "",
                f"Within {100 * margin:.0f}%:",
                "",
                "| run | arch | reached | steps |",
                "|---|---|---|---|",
            ]
            for row in self.steps_to_target(results, margin):
                steps = "-" if row["steps"] is None else f"{row['steps']:.0f}"
                lines.append(
                    f"| {row['method']} | {row['arch']} | {row['reached']} | {steps} |"
                )
        (self.out_dir / "steps_to_target.md").write_text("\n".join(lines) + "\n")
        return results
