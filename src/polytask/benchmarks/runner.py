"""Running a benchmark: single-task baselines, every method, several seeds, Δm."""

from __future__ import annotations

import ast
import csv
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import balancing, models
from ..errors import PolytaskError
from ..metrics import delta_m
from ..training import MultiTaskDataset, Trainer, batch_loader, seed_everything
from .base import Benchmark, BenchmarkData, Split


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``"cagrad:c=0.4,path=gramian"`` -> ``("cagrad", {"c": 0.4, "path": "gramian"})``.

    Values are Python literals where they parse as one, else strings.
    """
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, _split_top_level(rest)):
        key, eq, value = item.partition("=")
        if not eq:
            raise PolytaskError(f"method spec {spec!r}: {item!r} is not key=value")
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value.strip()
    return name.strip(), kwargs


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


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
    (out_dir / "results.json").write_text(json.dumps(results.to_json(), indent=2))
    columns = ["arch", "method", "seed"]
    columns += [f"{t}/{m}" for t, ms in results.report.items() for m in ms]
    columns += ["delta_m", "val_delta_m", "seconds", "epochs"]
    with (out_dir / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
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
    (out_dir / "results.txt").write_text(format_table(results) + "\n")
    (out_dir / "results.md").write_text(format_markdown(results) + "\n")


def _loader(split: Split, batch_size: int, shuffle: bool):
    return batch_loader(MultiTaskDataset(split.inputs, split.targets), batch_size, shuffle)


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
    _data: BenchmarkData | None = None

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

        trainer = Trainer(
            model, tasks, balancer, optimizer, device=self.device, log_dir=run_dir,
            seed=seed, progress=self.progress,
        )
        data = self.data
        start = time.perf_counter()
        trainer.fit(
            _loader(_select(data.train, tasks), settings["batch_size"], True),
            settings["epochs"],
            val_loader=_loader(_select(data.val, tasks), 4096, False),
        )
        seconds = time.perf_counter() - start
        trainer.load_best()
        metrics = trainer.evaluate(_loader(_select(data.test, tasks), 4096, False))
        val_metrics = trainer.evaluate(_loader(_select(data.val, tasks), 4096, False))
        return RunResult(
            method, arch, seed, metrics, seconds, settings["epochs"], val_metrics=val_metrics
        )

    def baselines(self, seed: int) -> tuple[dict, dict]:
        """Single-task (test, validation) metrics: one hard-sharing model per task, cached
        on disk."""
        tasks = self.benchmark.build_tasks(self.data)
        settings = self._settings()
        cache = self.out_dir / "baselines" / f"seed{seed}.json"
        if self.reuse and cache.exists():
            saved = json.loads(cache.read_text())
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
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(
            {"settings": settings, "metrics": result, "val_metrics": val_result}, indent=2
        ))
        return result, val_result

    def _cached_run(self, run_dir: Path) -> RunResult | None:
        """A finished run with the same settings, when ``reuse`` is on."""
        path = run_dir / "result.json"
        if not self.reuse or not path.exists():
            return None
        saved = json.loads(path.read_text())
        if saved.get("settings") != self._settings():
            return None
        return RunResult(**saved["run"])

    def _save_run(self, run: RunResult, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        payload = {"settings": self._settings(), "run": run.__dict__}
        (run_dir / "result.json").write_text(json.dumps(payload, indent=2))

    def check_method(self, spec: str) -> None:
        """Raise (listing the alternatives) when ``spec`` names no balancing method."""
        name, _ = parse_method(spec)
        balancing.method_class(name)

    def run(
        self, methods: Sequence[str], archs: Sequence[str] = ("hard",), seeds: Sequence[int] = (0,)
    ) -> BenchmarkResults:
        """Every (arch, method) for every seed, with Δm against same-seed baselines."""
        for method in methods:  # fail before training anything
            self.check_method(method)
        for arch in archs:
            models.builder(arch)
        tasks = self.benchmark.build_tasks(self.data)
        directions = {
            name: {m: tasks[name].higher_is_better[m] for m in metrics}
            for name, metrics in self.benchmark.report.items()
        }
        results = BenchmarkResults(self.benchmark.name, dict(self.benchmark.report), directions)
        for seed in seeds:
            results.baselines[seed], results.val_baselines[seed] = self.baselines(seed)
            for arch in archs:
                for method in methods:
                    run_dir = self.out_dir / "runs" / f"{arch}-{method}" / f"seed{seed}"
                    run = self._cached_run(run_dir)
                    reused = run is not None
                    if run is None:
                        run = self.train_one(tasks, arch, method, seed, run_dir)
                        self._save_run(run, run_dir)
                    run.delta_m = delta_m(run.metrics, results.baselines[seed], directions)
                    run.val_delta_m = delta_m(
                        run.val_metrics, results.val_baselines[seed], directions
                    )
                    results.runs.append(run)
                    self.log(
                        f"  {arch}/{method} seed {seed}: {_short(run.metrics, self.benchmark)} "
                        f"Δm {run.delta_m:+.2f}% ({run.seconds:.1f}s{', reused' if reused else ''})"
                    )
        write_results(results, self.out_dir)
        return results


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
