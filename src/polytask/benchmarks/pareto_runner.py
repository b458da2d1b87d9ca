"""Train and evaluate Pareto fronts on a benchmark (``polytask pareto BENCH``).

For each method and seed: train (one model per ray, or one preference-conditioned
model), evaluate on the test split (finite fronts at their rays; conditioned models at
``test_rays`` rays: for two tasks COSMOS's evaluation rays, evenly spaced angles
normalised to the simplex), compute the hypervolume with one fixed reference point,
and write every front (CSV, JSON), a summary (JSON, CSV, Markdown) and a PNG plot.
With ``conflict=True`` it also trains one equal-weight model and one single-task model
per task of the same architecture and reports the hypervolume gain of each front over
them (Ruchte & Grabocka's check that the tasks really conflict).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import models
from ..errors import PolytaskError
from ..pareto import (
    CONDITIONED_METHODS,
    FINITE_METHODS,
    FrontResult,
    circle_rays,
    hypervolume,
    method_lr,
    plot_fronts,
    reference_point,
    train_conditioned,
    train_finite_front,
    uniform_rays,
    write_front,
)
from ..pareto.front import evaluate_model
from ..pareto.preferences import PreferenceError
from ..pareto.train import MAX_FINITE_RAYS
from ..training import Trainer, seed_everything
from ..training.batches import MultiTaskDataset, batch_loader
from .base import Benchmark, BenchmarkData, Split
from .runner import parse_method

METHODS = FINITE_METHODS + CONDITIONED_METHODS


#: The angle margin (radians) of the two-task evaluation rays in the COSMOS code
#: (``circle_points(n, min_angle=0.1, max_angle=π/2 − 0.1)`` in ruchtem/cosmos
#: ``multi_objective/utils.py``), the protocol of the published MultiMNIST numbers.
COSMOS_RAY_MARGIN = 0.1


def test_rays(n: int, k: int, margin: float = COSMOS_RAY_MARGIN) -> torch.Tensor:
    """The evaluation preferences. Two tasks: COSMOS's ``circle_points`` rays, angles
    evenly spaced over ``[margin, π/2 − margin]`` (the code's 0.1 by default; 0 for the
    whole quarter circle, whose end rays put all weight on one task), each normalised to
    sum 1. More tasks: evenly spread preferences (the margin does not apply)."""
    check_ray_margin(margin)
    if k == 2:
        t = torch.linspace(margin, math.pi / 2 - margin, n, dtype=torch.float64) if n > 1 \
            else torch.tensor([math.pi / 4], dtype=torch.float64)
        rays = torch.stack([torch.cos(t), torch.sin(t)], dim=1).clamp_min(0)
        return rays / rays.sum(dim=1, keepdim=True)
    return uniform_rays(n, k)


def check_ray_margin(margin: float) -> None:
    """Raise a :class:`PreferenceError` naming ``margin`` unless it is in [0, π/4)."""
    if not 0.0 <= margin < math.pi / 4:
        raise PreferenceError(
            f"the evaluation-ray margin must be in [0, π/4) radians, got {margin}"
        )


def train_rays(method: str, n: int, k: int) -> torch.Tensor:
    """The training rays of a finite front: Pareto MTL's circle rays for ``pmtl`` with two
    tasks, else evenly spread preferences."""
    if method == "pmtl" and k == 2:
        return circle_rays(n)
    return uniform_rays(n, k)


def _loader(split: Split, batch_size: int, shuffle: bool):
    return batch_loader(MultiTaskDataset(split.inputs, split.targets), batch_size, shuffle)


def _subset(split: Split, n: int | None) -> Split:
    if n is None or n >= len(split.inputs):
        return split
    return Split(split.inputs[:n], {t: y[:n] for t, y in split.targets.items()})


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@dataclass
class ParetoRun:
    """One method on one seed: its test front, hypervolume, time and size."""

    method: str
    seed: int
    front: FrontResult
    hypervolume: float
    seconds: float
    parameters: int


@dataclass
class ParetoRunner:
    """Trains fronts on ``benchmark`` (see the module docstring).

    Args:
        benchmark: a benchmark with two or more tasks.
        out_dir: where fronts, summaries and the plot go.
        rays: rays of a finite front (one model each).
        n_test_rays: preferences at which conditioned models are evaluated.
        test_ray_margin: angle margin (radians) of those rays for two tasks
            (:func:`test_rays`; the COSMOS code's 0.1 by default).
        ref: the hypervolume reference point; default the benchmark's
            ``options["pareto_ref"]``, else the nadir policy over every front of the run
            (+10% of the range), printed and saved.
        train_subset, test_subset: keep the first N samples (quick runs).
        reuse: reuse fronts and baselines already in ``out_dir`` for the same settings
            (an interrupted run resumes; seeds or methods may run in separate processes
            sharing ``out_dir``, then one run over all of them writes the summary).
    """

    benchmark: Benchmark
    out_dir: Path
    data_dir: Path | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    device: str | None = None
    rays: int = 5
    n_test_rays: int = 25
    test_ray_margin: float = COSMOS_RAY_MARGIN
    ref: Sequence[float] | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    progress: bool = False
    reuse: bool = True
    log: Callable[[str], None] = print
    _data: BenchmarkData | None = field(default=None, repr=False)

    @property
    def data(self) -> BenchmarkData:
        """The benchmark's data (subsets applied), loaded once."""
        if self._data is None:
            data = self.benchmark.load(self.data_dir, 0)
            data.train = _subset(data.train, self.train_subset)
            data.val = _subset(data.val, self.test_subset)
            data.test = _subset(data.test, self.test_subset)
            self._data = data
        return self._data

    def _settings(self) -> dict[str, Any]:
        b = self.benchmark
        return {
            "epochs": self.epochs or b.epochs,
            "batch_size": self.batch_size or b.batch_size,
            "lr": self.lr or b.lr,
            "weight_decay": b.weight_decay,
        }

    def method_lr(self, method: str) -> float:
        """The learning rate ``method`` trains at unless its spec sets ``lr=``: ``lr``
        when given, else the method's own (:data:`~polytask.pareto.METHOD_LR`: 1e-4
        for PHN, as its authors), else the benchmark's."""
        if self.lr is not None:
            return float(self.lr)
        return float(method_lr(method, self.benchmark.lr))

    def _make_model(self, tasks: dict) -> Callable[[], Any]:
        backbone = self.benchmark.backbone(self.data)
        return lambda: models.get("hard", tasks=tasks, backbone=backbone)

    def _optimizer(self, lr: float):
        wd = self._settings()["weight_decay"]
        return lambda groups: torch.optim.Adam(groups, lr=lr, weight_decay=wd)

    def train_front(self, method_spec: str, seed: int) -> tuple[Any, float, int]:
        """Train one front; (front, seconds, trainable parameters)."""
        method, options = parse_method(method_spec)
        if method not in METHODS:
            raise PolytaskError(
                f"unknown Pareto method {method!r}; available: {', '.join(METHODS)}"
            )
        tasks = self.benchmark.tasks()
        if len(tasks) < 2:
            raise PolytaskError(f"benchmark {self.benchmark.name!r} has one task: no front")
        s = self._settings()
        lr = float(options.pop("lr", self.method_lr(method)))
        model_keys = {"hidden", "layers", "alpha", "embed_init"}
        model_options = {k: options.pop(k) for k in list(options) if k in model_keys}
        train = _loader(self.data.train, s["batch_size"], True)
        make = self._make_model(tasks)
        seed_everything(seed)
        if method in CONDITIONED_METHODS:
            front = train_conditioned(
                make,
                tasks,
                method,
                tuple(self.data.train.inputs.shape[1:]),
                train,
                s["epochs"],
                optimizer=self._optimizer(lr),
                device=self.device,
                seed=seed,
                progress=self.progress,
                model_options=model_options,
                method_options=options,
            )
            return front, front.seconds, _params(front.model)
        rays = train_rays(method, self.rays, len(tasks))
        front = train_finite_front(
            make,
            tasks,
            method,
            rays,
            train,
            s["epochs"],
            optimizer=self._optimizer(lr),
            device=self.device,
            seed=seed,
            progress=self.progress,
            method_options=options,
        )
        return front, front.seconds, sum(_params(m) for m in front.models)

    def _evaluate(self, method_spec: str, front: Any) -> FrontResult:
        test = _loader(self.data.test, 4096, False)
        k = len(self.benchmark.tasks())
        if hasattr(front, "models"):
            result = front.evaluate(test, split="test", device=self.device)
        else:
            result = front.evaluate(
                test, test_rays(self.n_test_rays, k, self.test_ray_margin), split="test",
                device=self.device,
            )
        result.method = method_spec
        return result

    def _fit_equal_weights(self, tasks: dict, loader: Any, seed: int, s: dict) -> Any:
        """A model of ``tasks`` trained with equal weights (the baselines' recipe)."""
        model = self._make_model(tasks)()
        Trainer(
            model,
            tasks,
            "ew",
            self._optimizer(s["lr"]),
            device=self.device,
            seed=seed,
            progress=self.progress,
        ).fit(loader, s["epochs"])
        return model

    def baseline_points(self, seed: int) -> dict[str, Any]:
        """Test losses of one equal-weight model and of one single-task model per task."""
        tasks = self.benchmark.tasks()
        s = self._settings()
        train = _loader(self.data.train, s["batch_size"], True)
        test = _loader(self.data.test, 4096, False)
        out: dict[str, Any] = {}
        seed_everything(seed)
        start = time.perf_counter()
        model = self._fit_equal_weights(tasks, train, seed, s)
        out["ew_seconds"] = time.perf_counter() - start
        out["ew_parameters"] = _params(model)
        m = evaluate_model(model, tasks, test, self.device)
        out["equal_weight"] = [m[t]["loss"] for t in tasks]
        single = []
        for name, task in tasks.items():
            seed_everything(seed)
            one = {name: task}
            model = self._fit_equal_weights(
                one,
                _loader(
                    Split(self.data.train.inputs, {name: self.data.train.targets[name]}),
                    s["batch_size"],
                    True,
                ),
                seed,
                s,
            )
            single.append(
                evaluate_model(
                    model,
                    one,
                    _loader(
                        Split(self.data.test.inputs, {name: self.data.test.targets[name]}),
                        4096,
                        False,
                    ),
                    self.device,
                )[name]["loss"]
            )
        out["single_task"] = single
        return out

    def run(
        self, methods: Sequence[str], seeds: Sequence[int] = (0,), conflict: bool = False
    ) -> dict[str, Any]:
        """Every method on every seed; returns (and writes) the summary."""
        for spec in methods:  # fail before training anything
            name, _ = parse_method(spec)
            if name not in METHODS:
                raise PolytaskError(
                    f"unknown Pareto method {name!r}; available: {', '.join(METHODS)}"
                )
            self._check_rays(name)
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fronts: list[tuple[str, int, FrontResult, float, int]] = []
        for seed in seeds:
            for spec in methods:
                result = self._cached_front(spec, seed)
                reused = result is not None
                if result is None:
                    front, seconds, n_params = self.train_front(spec, seed)
                    result = self._evaluate(spec, front)
                    result.info.update(
                        {
                            "seed": seed,
                            "seconds": seconds,
                            "parameters": n_params,
                            "settings": self._settings(),
                            "lr": self._spec_lr(spec),
                            "benchmark": self.benchmark.name,
                            "train_subset": self.train_subset,
                            "test_subset": self.test_subset,
                        }
                    )
                    write_front(result, out / "fronts", f"{_stem(spec)}_seed{seed}")
                seconds, n_params = result.info["seconds"], result.info["parameters"]
                fronts.append((spec, seed, result, seconds, n_params))
                self.log(
                    f"  {spec} seed {seed}: trained in {seconds:.1f}s, {n_params} parameters"
                    + (" (reused)" if reused else "")
                )
        baselines = {seed: self._cached_baselines(seed) for seed in seeds} if conflict else {}
        ref = self._reference([f[2] for f in fronts], baselines)
        outside = [f"{f[0]} (seed {f[1]})" for f in fronts if not (f[2].losses < ref).all(1).any()]
        if outside:
            self.log(
                f"warning: reference point {ref.tolist()} is dominated by no point of "
                f"{', '.join(outside)}: hypervolume 0 (an untrained front, or a reference "
                "point set too low)"
            )
        runs = []
        for spec, seed, result, seconds, n_params in fronts:
            hv = hypervolume(result.losses, ref, strict=False)
            runs.append(ParetoRun(spec, seed, result, hv, seconds, n_params))
        summary = self._summary(runs, baselines, ref)
        self._write(summary, runs, baselines, ref, out)
        return summary

    def _check_rays(self, method: str) -> None:
        """Refuse, before anything trains, ray counts a method cannot take."""
        if method in CONDITIONED_METHODS:
            if self.n_test_rays < 1:
                raise PreferenceError(f"test_rays must be >= 1, got {self.n_test_rays}")
            check_ray_margin(self.test_ray_margin)
            return
        if not 1 <= self.rays <= MAX_FINITE_RAYS:
            raise PreferenceError(
                f"rays={self.rays} for {method!r}: a finite front trains one model per ray, "
                f"between 1 and {MAX_FINITE_RAYS}; use a preference-conditioned method "
                "for more"
            )
        if method == "pmtl" and self.rays < 2:
            raise PreferenceError(f"rays={self.rays}: pmtl needs at least two rays")

    def _same_run(self, info: dict[str, Any]) -> bool:
        return (
            info.get("settings") == self._settings()
            and info.get("train_subset") == self.train_subset
            and info.get("test_subset") == self.test_subset
        )

    def _spec_lr(self, spec: str) -> float:
        method, options = parse_method(spec)
        return float(options.get("lr", self.method_lr(method)))

    @staticmethod
    def _recorded_lr(spec: str, info: dict[str, Any]) -> float | None:
        """The learning rate a saved front was trained at (fronts saved before ``lr``
        was recorded trained at the spec's ``lr=``, else the run's)."""
        if "lr" in info:
            return float(info["lr"])
        _, options = parse_method(spec)
        given = options.get("lr", (info.get("settings") or {}).get("lr"))
        return None if given is None else float(given)

    def _cached_front(self, spec: str, seed: int) -> FrontResult | None:
        """A front this out_dir already holds for the same settings (``reuse``), so that an
        interrupted run resumes and seeds can run in separate processes."""
        path = Path(self.out_dir) / "fronts" / f"{_stem(spec)}_seed{seed}.json"
        if not self.reuse or not path.exists():
            return None
        result = FrontResult.from_json(json.loads(path.read_text()))
        method, _ = parse_method(spec)
        rays = self.n_test_rays if method in CONDITIONED_METHODS else self.rays
        if (
            not self._same_run(result.info)
            or len(result.prefs) != rays
            or self._recorded_lr(spec, result.info) != self._spec_lr(spec)
        ):
            return None
        if method in CONDITIONED_METHODS:  # evaluated at other rays (e.g. another margin)
            expected = test_rays(rays, result.prefs.shape[1], self.test_ray_margin).numpy()
            if not np.allclose(result.prefs, expected, rtol=0, atol=1e-9):
                return None
        return result

    def _cached_baselines(self, seed: int) -> dict[str, Any]:
        path = Path(self.out_dir) / "baselines" / f"seed{seed}.json"
        if self.reuse and path.exists():
            saved = json.loads(path.read_text())
            if self._same_run(saved):
                return saved["points"]
        points = self.baseline_points(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "settings": self._settings(),
                    "train_subset": self.train_subset,
                    "test_subset": self.test_subset,
                    "points": points,
                },
                indent=2,
            )
        )
        return points

    def _reference(self, results: list[FrontResult], baselines: dict) -> np.ndarray:
        if self.ref is not None:
            return np.asarray(self.ref, dtype=np.float64)
        given = self.benchmark.options.get("pareto_ref")
        if given is not None:
            return np.asarray(given, dtype=np.float64)
        pts = [r.losses for r in results]
        for b in baselines.values():
            pts += [np.asarray([b["equal_weight"]]), np.asarray([b["single_task"]])]
        return reference_point(np.vstack(pts), policy="worst", offset=0.1)

    def _summary(self, runs: list[ParetoRun], baselines: dict, ref: np.ndarray) -> dict[str, Any]:
        rows = []
        for spec in dict.fromkeys(r.method for r in runs):
            mine = [r for r in runs if r.method == spec]
            hv = np.array([r.hypervolume for r in mine])
            fid = np.concatenate([r.front.fidelity() for r in mine])
            row = {
                "method": spec,
                "seeds": len(mine),
                "hv_mean": float(hv.mean()),
                "hv_std": float(hv.std(ddof=1)) if len(hv) > 1 else 0.0,
                "seconds_mean": float(np.mean([r.seconds for r in mine])),
                "parameters": mine[0].parameters,
                "rays": len(mine[0].front.prefs),
                "lr": self._recorded_lr(spec, mine[0].front.info) or math.nan,
                "fidelity_deg_mean": float(np.degrees(np.nanmean(fid)))
                if np.isfinite(fid).any()
                else math.nan,
            }
            if baselines:
                gains_ew, gains_st = [], []
                for r in mine:
                    b = baselines[r.seed]
                    gains_ew.append(r.hypervolume - _point_hv(b["equal_weight"], ref))
                    gains_st.append(r.hypervolume - _point_hv(b["single_task"], ref))
                row["hv_gain_over_ew"] = float(np.mean(gains_ew))
                row["hv_gain_over_single_task"] = float(np.mean(gains_st))
            rows.append(row)
        base_rows = {}
        if baselines:
            base_rows = {
                "equal_weight_hv": float(
                    np.mean([_point_hv(b["equal_weight"], ref) for b in baselines.values()])
                ),
                "single_task_hv": float(
                    np.mean([_point_hv(b["single_task"], ref) for b in baselines.values()])
                ),
                "ew_seconds": float(np.mean([b["ew_seconds"] for b in baselines.values()])),
                "ew_parameters": next(iter(baselines.values()))["ew_parameters"],
            }
        return {
            "benchmark": self.benchmark.name,
            "reference_point": ref.tolist(),
            "settings": self._settings(),
            "train_samples": len(self.data.train.inputs),
            "test_samples": len(self.data.test.inputs),
            "methods": rows,
            "baselines": base_rows,
            "split": "test",
        }

    def _write(
        self, summary: dict, runs: list[ParetoRun], baselines: dict, ref: np.ndarray, out: Path
    ) -> None:
        (out / "summary.json").write_text(
            json.dumps(
                {**summary, "baseline_points": {str(k): v for k, v in baselines.items()}}, indent=2
            )
        )
        keys = list(dict.fromkeys(k for row in summary["methods"] for k in row))
        with (out / "summary.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(summary["methods"])
        (out / "summary.md").write_text(format_summary(summary) + "\n")
        first = min(r.seed for r in runs)
        b = baselines.get(first, {})
        plot_fronts(
            [r.front for r in runs if r.seed == first],
            out / "front.png",
            single_task=b.get("single_task"),
            equal_weight=b.get("equal_weight"),
            ref=ref.tolist(),
            title=f"{self.benchmark.name}, test, seed {first}",
        )


def _point_hv(point: Sequence[float], ref: np.ndarray) -> float:
    return hypervolume([point], ref, strict=False)


def _stem(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    ref = summary["reference_point"]
    lines = [
        f"{summary['benchmark']}: test hypervolume, reference point {[round(v, 4) for v in ref]}, "
        f"{summary['train_samples']} training / {summary['test_samples']} test samples, "
        f"{summary['settings']['epochs']} epochs",
        "",
    ]
    has_gain = any("hv_gain_over_ew" in r for r in summary["methods"])
    head = ["method", "lr", "rays", "seeds", "HV", "time (s)", "parameters", "fidelity (°)"]
    if has_gain:
        head += ["HV − EW", "HV − single-task"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in summary["methods"]:
        cells = [
            r["method"],
            f"{r.get('lr', math.nan):g}",
            str(r["rays"]),
            str(r["seeds"]),
            f"{r['hv_mean']:.4f} ± {r['hv_std']:.4f}",
            f"{r['seconds_mean']:.1f}",
            str(r["parameters"]),
            f"{r['fidelity_deg_mean']:.1f}",
        ]
        if has_gain:
            cells += [
                f"{r.get('hv_gain_over_ew', math.nan):+.4f}",
                f"{r.get('hv_gain_over_single_task', math.nan):+.4f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    b = summary.get("baselines") or {}
    if b:
        lines += [
            "",
            f"equal-weight model: HV {b['equal_weight_hv']:.4f} "
            f"({b['ew_seconds']:.1f}s, {b['ew_parameters']} parameters); single-task point "
            f"(one model per task): HV {b['single_task_hv']:.4f}",
        ]
    return "\n".join(lines)
