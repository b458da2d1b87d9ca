"""Writers of small files in the real formats of the many-task data sets (for tests)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from polytask.data import YEAST_LABELS

YEAST_HEADER = [f"Att{i}" for i in range(1, 104)] + list(YEAST_LABELS)


def write_yeast(root: Path, n: int = 120, seed: int = 0, rows: list[list[str]] | None = None):
    rng = np.random.default_rng(seed)
    if rows is None:
        x = rng.normal(size=(n, 103)).round(6)
        y = rng.random((n, 14)) < 0.3
        y[:4] = True  # every class has positives and negatives in every split
        y[-4:] = False
        y[[0, 50], :] = True
        y[[1, 51], :] = False
        rows = [[repr(float(v)) for v in x[i]] + [str(int(b)) for b in y[i]] for i in range(n)]
    path = root / "yeast" / "yeast.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(",".join(r) for r in [YEAST_HEADER, *rows]) + "\n"
    with gzip.open(path, "wt") as f:
        f.write(text)
    return path
