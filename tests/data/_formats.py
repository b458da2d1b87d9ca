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


def molecule_pool() -> list[str]:
    """60 distinct valid SMILES (alcohols, amines, alkylbenzenes)."""
    return (
        ["C" * i + "O" for i in range(1, 21)]
        + ["C" * i + "N" for i in range(1, 21)]
        + ["c1ccccc1" + "C" * i for i in range(20)]
    )


def write_moleculeace(root: Path, per_file: int = 24, seed: int = 0, extra: dict | None = None):
    """The 30 MoleculeACE CSV files, each with ``per_file`` molecules drawn from one pool
    (so molecules are shared across targets); ``extra`` maps a file name to more rows."""
    from polytask.data.moleculeace import FILES

    rng = np.random.default_rng(seed)
    pool = molecule_pool()
    folder = root / "moleculeace"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        picks = rng.choice(len(pool), size=per_file, replace=False)
        lines = ["smiles,exp_mean [nM],y,cliff_mol,split"]
        for k, m in enumerate(picks):
            nm = float(10 ** rng.uniform(0, 4))
            split = "test" if k % 4 == 0 else "train"
            lines.append(f"{pool[m]},{nm},{-np.log10(nm)},{int(k % 7 == 0)},{split}")
        lines += (extra or {}).get(name, [])
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder
