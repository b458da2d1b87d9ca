"""A heatmap of an affinity table (needs matplotlib, the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PolytaskError
from .affinity import Affinity


def plot_affinity(affinity: Affinity, path: str | Path, title: str | None = None) -> Path:
    """Draw ``affinity`` as a heatmap (rows: recipients, columns: sources; the diagonal
    is masked when it dominates) to the PNG ``path``; returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise PolytaskError("plotting an affinity needs matplotlib (pip install "
                            "'polytask[bench]')") from error
    values = affinity.values.copy()
    t = len(affinity.tasks)
    off = values[~np.eye(t, dtype=bool)]
    if off.size:
        np.fill_diagonal(values, np.nan)
    bound = float(np.nanmax(np.abs(values))) if off.size and np.isfinite(values).any() else 1.0
    size = max(4.0, 0.45 * t + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, cmap="RdBu", vmin=-bound or -1, vmax=bound or 1)
    ax.set_xticks(range(t), affinity.tasks, rotation=60, ha="right")
    ax.set_yticks(range(t), affinity.tasks)
    ax.set_xlabel("source task")
    ax.set_ylabel("recipient task")
    if t <= 12:
        for i in range(t):
            for j in range(t):
                if i != j:
                    ax.text(j, i, f"{values[i, j]:.2g}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title or f"{affinity.estimator} affinity ({affinity.steps} steps)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
