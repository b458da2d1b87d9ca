"""Plots of a run's logs: each task's loss and weight over time, and its metrics.

Reads the CSV files the Trainer's :class:`~polytask.training.CSVLogger` writes in a run
directory — ``steps.csv`` (step, epoch, ``loss/<task>``, ``weight/<task>``, extras) and
``epochs.csv`` (epoch, split, losses, weights, ``<task>/<metric>``) — and draws them to
a PNG. Used by ``polytask plot RUN_DIR``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..errors import PolytaskError

Table = list[dict[str, str]]


def read_csv(path: Path) -> Table:
    """The rows of a CSV file as dicts (empty cells kept as "")."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def columns_with(rows: Table, prefix: str) -> list[str]:
    """Column names starting with ``prefix`` (e.g. ``"weight/"``), in file order."""
    if not rows:
        return []
    return [c for c in rows[0] if c.startswith(prefix)]


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` points (NaNs skipped); ``window <= 1`` copies."""
    if window <= 1:
        return list(values)
    out = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1) : i + 1] if not math.isnan(v)]
        out.append(sum(chunk) / len(chunk) if chunk else math.nan)
    return out


def load_run(run_dir: str | Path) -> tuple[Table, Table]:
    """(steps rows, epochs rows) of a run directory; raises naming what is missing."""
    run = Path(run_dir)
    if not run.is_dir():
        raise PolytaskError(f"run directory {str(run)!r} does not exist")
    steps_path, epochs_path = run / "steps.csv", run / "epochs.csv"
    if not steps_path.exists() and not epochs_path.exists():
        raise PolytaskError(
            f"{str(run)!r} holds neither steps.csv nor epochs.csv (train with log_dir=...)"
        )
    steps = read_csv(steps_path) if steps_path.exists() else []
    epochs = read_csv(epochs_path) if epochs_path.exists() else []
    return steps, epochs


def plot_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    smooth: int | None = None,
    log_loss: bool = True,
) -> Path:
    """Draw a run's per-task losses, weights (per step) and validation metrics (per
    epoch) to a PNG; return its path (default ``RUN_DIR/training.png``).

    ``smooth``: moving-average window for the per-step curves (default: about 1% of
    the steps); the raw values are drawn faintly behind.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, epochs = load_run(run_dir)
    loss_cols = columns_with(steps, "loss/")
    weight_cols = columns_with(steps, "weight/")
    val_rows = [r for r in epochs if r.get("split") == "val"]
    metric_cols = [c for c in columns_with(val_rows, "") if "/" in c
                   and not c.startswith(("loss/", "weight/"))]
    panels = []
    if loss_cols:
        panels.append(("loss", loss_cols, steps))
    if weight_cols:
        panels.append(("weight", weight_cols, steps))
    if not panels and epochs:  # no step log: per-epoch train losses and weights
        train_rows = [r for r in epochs if r.get("split") == "train"]
        for kind in ("loss", "weight"):
            cols = columns_with(train_rows, f"{kind}/")
            if cols:
                panels.append((kind, cols, train_rows))
    if metric_cols:
        panels.append(("val metric", metric_cols, val_rows))
    if not panels:
        raise PolytaskError(f"nothing to plot in {str(run_dir)!r}: no loss, weight or metric "
                            "columns")
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.8 * len(panels)), squeeze=False)
    for ax, (kind, cols, rows) in zip(axes[:, 0], panels):
        x_key = "step" if rows is steps else "epoch"
        xs = [_float(r.get(x_key)) for r in rows]
        window = smooth if smooth is not None else max(1, len(rows) // 100)
        for col in cols:
            ys = [_float(r.get(col)) for r in rows]
            label = col.split("/", 1)[1] if kind != "val metric" else col
            if x_key == "step" and window > 1:
                line = ax.plot(xs, ys, alpha=0.25, linewidth=0.8)[0]
                ax.plot(xs, moving_average(ys, window), color=line.get_color(), label=label)
            else:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=label)
        ax.set_xlabel(x_key)
        ax.set_ylabel(kind)
        if kind == "loss" and log_loss and all(
            _float(r.get(c)) > 0 for r in rows for c in cols if not math.isnan(_float(r.get(c)))
        ):
            ax.set_yscale("log")
        ax.legend(fontsize=8, ncol=min(4, len(cols)))
        ax.grid(alpha=0.3)
    run_path = Path(run_dir).resolve()
    axes[0, 0].set_title("/".join(run_path.parts[-2:]))
    fig.tight_layout()
    path = Path(out) if out is not None else Path(run_dir) / "training.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
