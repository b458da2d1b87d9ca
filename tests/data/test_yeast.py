"""Yeast loader, on small gzipped files written in river's real CSV format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _formats import write_yeast

from polytask.data import YEAST_LABELS, DatasetNotFoundError, load_yeast
from polytask.data.yeast import read_yeast_csv


def test_split_sizes_order_and_standardisation(tmp_path: Path) -> None:
    path = write_yeast(tmp_path)
    raw_x, raw_y, _ = read_yeast_csv(path)
    d = load_yeast(tmp_path, num_train=80, num_val=20)
    assert (len(d.train), len(d.val), len(d.test)) == (60, 20, 40)
    assert d.tasks == YEAST_LABELS and d.train.x.dtype == np.float32
    # the test set is the last rows, in file order, standardised with training statistics
    mean, std = raw_x[:80].mean(0), raw_x[:80].std(0)
    np.testing.assert_allclose(d.test.x, (raw_x[80:] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(d.test.targets["Class3"], raw_y[80:, 2])
    # train and validation partition the first 80 rows
    train_val = np.concatenate([d.train.x, d.val.x])
    assert np.allclose(train_val.mean(0), 0, atol=1e-5)
    assert len(np.unique(train_val.round(4), axis=0)) == 80


def test_missing_file_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="polytask data get yeast"):
        load_yeast(tmp_path)


def test_bad_rows_are_named(tmp_path: Path) -> None:
    good = ["0.1"] * 103 + ["0"] * 14
    write_yeast(tmp_path, rows=[good, good[:-1]])
    with pytest.raises(ValueError, match="line 3 has 116 columns"):
        load_yeast(tmp_path)
    write_yeast(tmp_path, rows=[good, good[:-1] + ["2"]])
    with pytest.raises(ValueError, match="line 3: label Class14 should be 0 or 1"):
        load_yeast(tmp_path)


def test_class_without_positives_in_a_split_is_named(tmp_path: Path) -> None:
    path = write_yeast(tmp_path)
    x, y, _ = read_yeast_csv(path)
    y[80:, 4] = 0  # Class5 has no positive test gene
    rows = [[repr(float(v)) for v in x[i]] + [str(int(b)) for b in y[i]] for i in range(len(x))]
    write_yeast(tmp_path, rows=rows)
    with pytest.raises(ValueError, match="'Class5' has only negative labels in the test split"):
        load_yeast(tmp_path, num_train=80, num_val=20)


def test_too_few_rows_for_the_standard_split(tmp_path: Path) -> None:
    write_yeast(tmp_path)
    with pytest.raises(ValueError, match="1,500 training genes"):
        load_yeast(tmp_path)
