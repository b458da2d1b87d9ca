"""The Yeast multi-label data set (Elisseeff & Weston, NIPS 2001), as 14 binary tasks.

2,417 yeast genes, 103 features (micro-array expression and phylogenetic profiles),
each gene annotated with a subset of 14 functional classes (``Class1`` .. ``Class14``).
The file is MULAN's ``yeast`` as shipped in the ``river==0.26.1`` wheel
(``river/datasets/yeast.csv.gz``; the same table as OpenML data set 40597): a header
``Att1,...,Att103,Class1,...,Class14`` then one row per gene, labels ``0``/``1``.

Split: the standard one of Elisseeff & Weston (and MULAN's ``yeast-train``/``yeast-test``
files) has 1,500 training and 917 test genes. The river file holds the 2,417 rows in one
table; polytask takes its first 1,500 rows as the training set and the last 917 as the
test set, which is MULAN's split when the table is train followed by test (the order
MULAN's full file uses; both halves have label cardinality 4.24, as published). A
validation set of 300 genes is held out from the 1,500 training genes with a fixed seed.
Features are standardised with the training rows' mean and standard deviation.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polytask.data.paths import DatasetNotFoundError, resolve_data_dir
from polytask.data.splits import Split

__all__ = ["YEAST_LABELS", "Yeast", "load_yeast"]

SUBDIR = "yeast"
FILE = "yeast.csv.gz"
FETCH_NAME = "yeast"
NUM_FEATURES = 103
#: The 14 label columns, in file order; they are the task names.
YEAST_LABELS: tuple[str, ...] = tuple(f"Class{i}" for i in range(1, 15))
#: Rows of the standard training set (the rest is the test set).
NUM_TRAIN = 1500
NUM_VAL = 300
#: Seed of the permutation that holds the validation genes out of the training rows.
VAL_SEED = 0


@dataclass(frozen=True)
class Yeast:
    """Yeast arrays: ``x`` float32 (N, 103) standardised, one float32 0/1 target per class."""

    train: Split
    val: Split
    test: Split
    feature_names: tuple[str, ...]

    @property
    def tasks(self) -> tuple[str, ...]:
        """The 14 task names, ``Class1`` .. ``Class14``."""
        return self.train.tasks


def read_yeast_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Parse the (optionally gzipped) CSV: features (N, 103), labels (N, 14), feature names.

    Raises ValueError naming the file and line for a wrong header, a row of the wrong
    width, a feature that is not a number or a label that is not 0/1.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file")
        features = [f"Att{i}" for i in range(1, NUM_FEATURES + 1)]
        if header != features + list(YEAST_LABELS):
            raise ValueError(
                f"{path}: header should be Att1..Att{NUM_FEATURES} then Class1..Class14 "
                f"({NUM_FEATURES + len(YEAST_LABELS)} columns), got {len(header)} columns "
                f"starting {header[:3]}"
            )
        xs, ys = [], []
        width = len(header)
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != width:
                raise ValueError(f"{path}: line {lineno} has {len(row)} columns, expected {width}")
            try:
                xs.append([float(v) for v in row[:NUM_FEATURES]])
            except ValueError as e:
                raise ValueError(f"{path}: line {lineno}: a feature is not a number ({e})") \
                    from None
            labels = row[NUM_FEATURES:]
            bad = [(YEAST_LABELS[j], v) for j, v in enumerate(labels) if v not in ("0", "1")]
            if bad:
                raise ValueError(
                    f"{path}: line {lineno}: label {bad[0][0]} should be 0 or 1, got {bad[0][1]!r}"
                )
            ys.append([v == "1" for v in labels])
    if not xs:
        raise ValueError(f"{path}: no data rows")
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float32), features


def load_yeast(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    num_train: int = NUM_TRAIN,
    num_val: int = NUM_VAL,
) -> Yeast:
    """Load Yeast with its standard split: the first ``num_train`` (1,500) rows train,
    the rest (917) test, ``num_val`` (300) training genes held out for validation.

    Reads ``<data_dir>/yeast/yeast.csv.gz`` (``polytask data get yeast``). A class with
    no positive or no negative gene in a split is named in a ValueError (its AUC would
    be undefined).
    """
    root = resolve_data_dir(data_dir)
    path = root / SUBDIR / FILE
    if not path.is_file():
        raise DatasetNotFoundError("Yeast", path, fetch_name=FETCH_NAME, data_dir=root)
    x, y, names = read_yeast_csv(path)
    if not 0 < num_val < num_train < len(x):
        raise ValueError(
            f"{path}: {len(x)} rows; need 0 < num_val ({num_val}) < num_train ({num_train}) "
            f"< rows (the standard split: 1,500 training genes, then the test genes)"
        )
    n_train = num_train
    mean = x[:n_train].mean(axis=0)
    std = x[:n_train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x = ((x - mean) / std).astype(np.float32)
    perm = np.random.default_rng(VAL_SEED).permutation(n_train)
    val_rows, train_rows = np.sort(perm[:num_val]), np.sort(perm[num_val:])

    def split(rows: np.ndarray | slice, name: str) -> Split:
        labels = y[rows]
        for j, task in enumerate(YEAST_LABELS):
            positives = int(labels[:, j].sum())
            if positives in (0, len(labels)):
                raise ValueError(
                    f"{path}: task {task!r} has only {'negative' if positives == 0 else 'positive'}"
                    f" labels in the {name} split ({len(labels)} genes)"
                )
        return Split(x=x[rows], targets={t: labels[:, j] for j, t in enumerate(YEAST_LABELS)})

    return Yeast(
        train=split(train_rows, "train"),
        val=split(val_rows, "validation"),
        test=split(slice(n_train, None), "test"),
        feature_names=tuple(names),
    )
