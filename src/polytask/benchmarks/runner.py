"""Running a benchmark: single-task baselines, every method, several seeds, Δm."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import balancing, models
from ..atomic import write_text
from ..errors import InvalidParameterError, PolytaskError
from ..metrics import delta_m
from ..params import check_settings, check_task_settings, parse_spec
from ..training import MultiTaskDataset, Trainer, batch_loader, seed_everything
from .base import Benchmark, BenchmarkData, Split
from .protocol import BestByDeltaM, SchedulerStep, TransformedLoader


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``"cagrad:c=0.4,path=gramian"`` -> ``("cagrad", {"c": 0.4, "path": "gramian"})``
    (:func:`polytask.params.parse_spec`, the one parser of such specs)."""
    return parse_spec(spec)


@dataclass
class RunResult:
    """Test (and validation) metrics of one trained model, at its best epoch."""

    method: str
    arch: str
    seed: int
    metrics: dict[str, dict[str, float]]
    seconds: float
    epochs: int
    delta_m: float | None = None
    val_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    val_delta_m: float | None = None


@dataclass
class BenchmarkResults:
    """Every run of a benchmark invocation, with the baselines Δm is measured against."""

    benchmark: str
    report: dict[str, tuple[str, ...]]
    higher_is_better: dict[str, dict[str, bool]]
    baselines: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    val_baselines: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    runs: list[RunResult] = field(default_factory=list)
    convention: str = "metric"

    def summary(self) -> list[dict[str, Any]]:
        """One row per (arch, method): mean and std over seeds of each reported metric,
        Δm and seconds per run."""
        rows = []
        keys: list[tuple[str, str]] = []
        for run in self.runs:
            if (run.arch, run.method) not in keys:
                keys.append((run.arch, run.method))
        baseline_row = {"method": "single-task", "arch": "hard", "seeds": len(self.baselines)}
        for task, metrics in self.report.items():
            for metric in metrics:
                values = [b[task][metric] for b in self.baselines.values() if task in b]
                baseline_row[f"{task}/{metric}"] = _mean_std(values)
        baseline_row["delta_m"] = (0.0, 0.0) if self.baselines else None
        baseline_row["val_delta_m"] = baseline_row["delta_m"]
        rows.append(baseline_row)
        for arch, method in keys:
            runs = [r for r in self.runs if r.arch == arch and r.method == method]
            row: dict[str, Any] = {"method": method, "arch": arch, "seeds": len(runs)}
            for task, metrics in self.report.items():
                for metric in metrics:
                    row[f"{task}/{metric}"] = _mean_std([r.metrics[task][metric] for r in runs])
            deltas = [r.delta_m for r in runs if r.delta_m is not None]
            row["delta_m"] = _mean_std(deltas) if deltas else None
            val_deltas = [r.val_delta_m for r in runs if r.val_delta_m is not None]
            row["val_delta_m"] = _mean_std(val_deltas) if val_deltas else None
            row["seconds"] = _mean_std([r.seconds for r in runs])
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        """Everything, as JSON-ready data."""
        return {
            "benchmark": self.benchmark,
            "delta_m_convention": self.convention,
            "report": {k: list(v) for k, v in self.report.items()},
            "baselines": {str(s): b for s, b in self.baselines.items()},
            "val_baselines": {str(s): b for s, b in self.val_baselines.items()},
            "runs": [run.__dict__ for run in self.runs],
            "summary": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}
                for row in self.summary()
            ],
        }


def _mean_std(values: Sequence[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def _table_cells(results: BenchmarkResults) -> list[list[str]]:
    """Header and rows of the summary, as strings (mean ± std over seeds)."""
    columns = ["method", "arch"]
    columns += [f"{t}/{m}" for t, ms in results.report.items() for m in ms]
    columns += ["delta_m", "val_delta_m", "seconds"]
    names = {"delta_m": "Δm % (test)", "val_delta_m": "Δm % (val)", "seconds": "s/run"}

    def cell(row: dict[str, Any], col: str) -> str:
        value = row.get(col)
        if value is None:
            return "-"
        if isinstance(value, tuple):
            mean, std = value
            digits = 2 if col in ("delta_m", "val_delta_m", "seconds") else 4
            sign = "+" if col in ("delta_m", "val_delta_m") and mean > 0 else ""
            return f"{sign}{mean:.{digits}f} ± {std:.{digits}f}"
        return str(value)

    header = [names.get(c, c) for c in columns]
    return [header] + [[cell(row, c) for c in columns] for row in results.summary()]


def format_table(results: BenchmarkResults) -> str:
    """The summary as an aligned text table (mean ± std over seeds)."""
    table = _table_cells(results)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(results: BenchmarkResults) -> str:
    """The summary as a Markdown table (mean ± std over seeds)."""
    table = _table_cells(results)
    lines = ["| " + " | ".join(row) + " |" for row in table]
    lines.insert(1, "|" + "---|" * len(table[0]))
    return "\n".join(lines)


def write_results(results: BenchmarkResults, out_dir: Path) -> None:
    """Write ``results.json`` and ``results.csv`` (one row per run) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "results.json", json.dumps(results.to_json(), indent=2))
    columns = ["arch", "method", "seed"]
    columns += [f"{t}/{m}" for t, ms in results.report.items() for m in ms]
    columns += ["delta_m", "val_delta_m", "seconds", "epochs"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for seed, base in results.baselines.items():
        writer.writerow(
            ["hard", "single-task", seed]
            + [base[t][m] for t, ms in results.report.items() for m in ms]
            + [0.0, 0.0, "", ""]
        )
    for run in results.runs:
        writer.writerow(
            [run.arch, run.method, run.seed]
            + [run.metrics[t][m] for t, ms in results.report.items() for m in ms]
            + [run.delta_m, run.val_delta_m, round(run.seconds, 3), run.epochs]
        )
    write_text(out_dir / "results.csv", buffer.getvalue())
    write_text(out_dir / "results.txt", format_table(results) + "\n")
    write_text(out_dir / "results.md", format_markdown(results) + "\n")


def _loader(split: Split, batch_size: int, shuffle: bool, drop_last: bool = False):
    return batch_loader(MultiTaskDataset(split.inputs, split.targets), batch_size, shuffle,
                        drop_last)


@dataclass
class BenchmarkRunner:
    """Trains and evaluates models on one benchmark.

    Args:
        benchmark: the benchmark spec.
        data_dir: where its files are (default: polytask's data directory).
        out_dir: where runs, baselines and results go.
        epochs, batch_size, lr: override the benchmark's defaults.
        device: torch device (default: CUDA if available).
        progress: show progress bars.
        log: where to print one line per finished run (default: print).
        reuse: reuse runs and baselines already finished in ``out_dir`` with the same
            settings (an interrupted benchmark picks up where it stopped).
    """

    benchmark: Benchmark
    out_dir: Path
    data_dir: Path | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    device: str | None = None
    progress: bool = True
    log: Callable[[str], None] = print
    reuse: bool = True
    delta_m_convention: str | None = None
    _data: BenchmarkData | None = None
    _val_baselines: dict[int, dict] = field(default_factory=dict)

    @property
    def convention(self) -> str:
        """The Δm convention: this runner's, else the benchmark's, else ``"metric"``."""
        return (self.delta_m_convention or self.benchmark.options.get("delta_m")
                or "metric")

    @property
    def data(self) -> BenchmarkData:
        """The benchmark's data, loaded once."""
        if self._data is None:
            self._data = self.benchmark.load(self.data_dir, 0)
        return self._data

    def _settings(self) -> dict[str, Any]:
        b = self.benchmark
        return {
            "epochs": self.epochs or b.epochs,
            "batch_size": self.batch_size or b.batch_size,
            "lr": self.lr or b.lr,
            "weight_decay": b.weight_decay,
        }

    def train_one(
        self, tasks: dict, arch: str, method: str, seed: int, run_dir: Path
    ) -> RunResult:
        """Train one model with ``arch`` and balancing ``method``; test metrics."""
        settings = self._settings()
        seed_everything(seed)
        backbone = self.benchmark.backbone(self.data)
        model = models.get(arch, tasks=tasks, backbone=backbone)
        name, kwargs = parse_method(method)
        balancer = balancing.get(name, **kwargs)

        def optimizer(groups):
            return torch.optim.Adam(
                groups, lr=settings["lr"], weight_decay=settings["weight_decay"]
            )

        options = self.benchmark.options
        callbacks, selector = self._protocol_callbacks(tasks, seed)
        trainer = Trainer(
            model, tasks, balancer, optimizer, device=self.device, log_dir=run_dir,
            seed=seed, progress=self.progress, callbacks=callbacks,
        )
        data = self.data
        eval_bs = int(options.get("eval_batch_size", 4096))
        train_loader = _loader(_select(data.train, tasks), settings["batch_size"], True,
                               options.get("drop_last", False))
        if options.get("train_transform") is not None:
            train_loader = TransformedLoader(train_loader, options["train_transform"])
        start = time.perf_counter()
        trainer.fit(
            train_loader,
            settings["epochs"],
            val_loader=_loader(_select(data.val, tasks), eval_bs, False),
            overwrite=True,  # the runner decides reuse itself (settings in result.json)
        )
        seconds = time.perf_counter() - start
        if selector is not None:
            selector.restore(trainer.model)
        elif options.get("select", "loss") != "last":  # single-task runs: lowest val loss
            trainer.load_best()
        metrics = trainer.evaluate(_loader(_select(data.test, tasks), eval_bs, False))
        val_metrics = trainer.evaluate(_loader(_select(data.val, tasks), eval_bs, False))
        return RunResult(
            method, arch, seed, metrics, seconds, settings["epochs"], val_metrics=val_metrics
        )

    def _protocol_callbacks(self, tasks: dict, seed: int) -> tuple[list, Any]:
        """The benchmark's schedule (``options["scheduler"]``) and epoch selection
        (``options["select"]``: ``"loss"``, ``"last"``, or ``"delta_m"`` — the epoch of best
        validation Δm against the same seed's single-task baselines, as LibMTL)."""
        callbacks: list = []
        options = self.benchmark.options
        if options.get("scheduler") is not None:
            callbacks.append(SchedulerStep(options["scheduler"]))
        selector = None
        select = options.get("select", "loss")
        if select not in ("loss", "last", "delta_m"):
            raise PolytaskError(f"benchmark option select={select!r}: loss, last or delta_m")
        main = [n for n, t in tasks.items() if not t.auxiliary]
        if select == "delta_m" and len(main) > 1 and seed in self._val_baselines:
            report = {t: self.benchmark.report[t] for t in main if t in self.benchmark.report}
            directions = {t: {m: tasks[t].higher_is_better[m] for m in ms}
                          for t, ms in report.items()}
            selector = BestByDeltaM(self._val_baselines[seed], directions, self.convention)
            callbacks.append(selector)
        return callbacks, selector

    def baselines(self, seed: int) -> tuple[dict, dict]:
        """Single-task (test, validation) metrics: one hard-sharing model per task, cached
        on disk."""
        tasks = self.benchmark.build_tasks(self.data)
        settings = self._settings()
        cache = self.out_dir / "baselines" / f"seed{seed}.json"
        if self.reuse and cache.exists():
            saved = _read_json(cache) or {}
            if saved.get("settings") == settings:
                return saved["metrics"], saved["val_metrics"]
        result, val_result = {}, {}
        for name, task in tasks.items():
            if task.auxiliary:
                continue
            run = self.train_one(
                {name: task}, "hard", "ew", seed, self.out_dir / "runs" / f"single-{name}" /
                f"seed{seed}"
            )
            result[name] = run.metrics[name]
            val_result[name] = run.val_metrics[name]
            self.log(f"  single-task {name} seed {seed}: {_short(run.metrics, self.benchmark)}")
        write_text(cache, json.dumps(
            {"settings": settings, "metrics": result, "val_metrics": val_result}, indent=2
        ))
        return result, val_result

    def _cached_run(self, run_dir: Path) -> RunResult | None:
        """A finished run with the same settings, when ``reuse`` is on."""
        path = run_dir / "result.json"
        if not self.reuse or not path.exists():
            return None
        saved = _read_json(path)
        if saved is None or saved.get("settings") != self._settings():
            return None
        return RunResult(**saved["run"])

    def _save_run(self, run: RunResult, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        payload = {"settings": self._settings(), "run": run.__dict__}
        write_text(run_dir / "result.json", json.dumps(payload, indent=2))

    def check(self, methods: Sequence[str], archs: Sequence[str], tasks: dict) -> None:
        """Every method, architecture and setting, checked before anything trains:
        names, settings and their values, per-task values against the task names; each
        method and architecture is built once (the data is loaded for that)."""
        if not methods or not archs:
            raise InvalidParameterError("give at least one method and one architecture")
        names = list(tasks)
        for method in methods:
            self.check_method(method)
            name, kwargs = parse_method(self.method_spec(method))
            factory = balancing.method_class(name)
            check_settings(factory, kwargs, f"method {method!r}")
            check_task_settings(factory, kwargs, names, f"method {method!r}")
            balancing.get(name, **kwargs)
        backbone = self.benchmark.backbone(self.data)
        for arch in archs:
            models.get(arch, tasks=tasks, backbone=backbone)

    def method_spec(self, spec: str) -> str:
        """The balancing-method part of a run spec (here the whole spec)."""
        return spec

    def check_method(self, spec: str) -> None:
        """Raise (listing the alternatives) when ``spec`` names no balancing method."""
        name, _ = parse_method(spec)
        balancing.method_class(name)

    def run(
        self, methods: Sequence[str], archs: Sequence[str] = ("hard",), seeds: Sequence[int] = (0,)
    ) -> BenchmarkResults:
        """Every (arch, method) for every seed, with Δm against same-seed baselines."""
        tasks = self.benchmark.build_tasks(self.data)
        self.check(methods, archs, tasks)  # fail before training anything
        directions = {
            name: {m: tasks[name].higher_is_better[m] for m in metrics}
            for name, metrics in self.benchmark.report.items()
        }
        results = BenchmarkResults(self.benchmark.name, dict(self.benchmark.report), directions)
        results.convention = self.convention
        for seed in seeds:
            results.baselines[seed], results.val_baselines[seed] = self.baselines(seed)
            self._val_baselines[seed] = results.val_baselines[seed]
            for arch in archs:
                for method in methods:
                    run_dir = self.out_dir / "runs" / f"{arch}-{method}" / f"seed{seed}"
                    run = self._cached_run(run_dir)
                    reused = run is not None
                    if run is None:
                        run = self.train_one(tasks, arch, method, seed, run_dir)
                        self._save_run(run, run_dir)
                    run.delta_m = delta_m(run.metrics, results.baselines[seed], directions,
                                          self.convention)
                    run.val_delta_m = delta_m(
                        run.val_metrics, results.val_baselines[seed], directions,
                        self.convention,
                    )
                    results.runs.append(run)
                    self.log(
                        f"  {arch}/{method} seed {seed}: {_short(run.metrics, self.benchmark)} "
                        f"Δm {run.delta_m:+.2f}% ({run.seconds:.1f}s{', reused' if reused else ''})"
                    )
        write_results(results, self.out_dir)
        return results


def _read_json(path: Path) -> dict | None:
    """A cached JSON file, or None (with a warning naming it) when it cannot be read:
    the run is then redone rather than the benchmark stopped."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        warnings.warn(f"ignoring unreadable cache {path} ({error}); redoing it", stacklevel=3)
        return None
    return data if isinstance(data, dict) else None


def _select(split: Split, tasks: dict) -> Split:
    """The targets of ``tasks``, and only the rows labelled (not NaN) for at least one of
    them: a single-task baseline of a benchmark with missing labels trains and is
    evaluated on its task's molecules only, not on batches that are mostly unlabelled."""
    missing = [n for n in tasks if n not in split.targets]
    if missing:
        raise PolytaskError(f"the data has no targets for task(s) {missing}")
    targets = {n: split.targets[n] for n in tasks}
    labelled = None
    for y in targets.values():
        if not torch.is_floating_point(y):
            return Split(split.inputs, targets)
        row = ~torch.isnan(y.reshape(len(y), -1)).all(dim=1)
        labelled = row if labelled is None else labelled | row
    if labelled is None or bool(labelled.all()):
        return Split(split.inputs, targets)
    return Split(split.inputs[labelled], {n: y[labelled] for n, y in targets.items()})


def _short(metrics: dict[str, dict[str, float]], benchmark: Benchmark) -> str:
    parts = []
    for task, names in benchmark.report.items():
        if task in metrics:
            parts += [f"{task}/{m}={metrics[task][m]:.4f}" for m in names]
    return " ".join(parts)
