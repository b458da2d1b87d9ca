"""MoleculeACE loader on 30 small files in the package's CSV format."""

from __future__ import annotations

import builtins
import csv
from pathlib import Path

import numpy as np
import pytest
from _formats import write_moleculeace

from polytask.data import MOLECULEACE_TASKS, DatasetNotFoundError, read_moleculeace_csv
from polytask.errors import MissingExtraError


def test_missing_files_name_the_command(tmp_path: Path) -> None:
    from polytask.data import load_moleculeace

    with pytest.raises(DatasetNotFoundError, match="polytask data get moleculeace"):
        load_moleculeace(tmp_path)


def test_missing_rdkit_names_the_install_command(tmp_path, monkeypatch) -> None:
    from polytask.data import load_moleculeace

    write_moleculeace(tmp_path)
    real_import = builtins.__import__

    def no_rdkit(name, *args, **kwargs):
        if name == "rdkit" or name.startswith("rdkit."):
            raise ImportError("No module named 'rdkit'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rdkit)
    with pytest.raises(MissingExtraError, match="pip install rdkit"):
        load_moleculeace(tmp_path, cache=False)


def test_reader_names_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "CHEMBL1_Ki.csv"
    path.write_text("smiles,exp_mean [nM],y,cliff_mol,split\nCO,10,-1,0,valid\n")
    with pytest.raises(ValueError, match="line 2: split should be 'train' or 'test'"):
        read_moleculeace_csv(path)
    path.write_text("smiles,exp_mean [nM],y,cliff_mol,split\nCO,10,nan,0,train\n")
    with pytest.raises(ValueError, match="line 2: y should be a finite number"):
        read_moleculeace_csv(path)


def test_join_keeps_each_files_split_and_masks_the_rest(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    from polytask.data import load_moleculeace

    folder = write_moleculeace(tmp_path)
    with pytest.raises(ValueError, match="task 'CHEMBL218_EC50' has no label in the validation"):
        load_moleculeace(tmp_path, n_bits=256, cache=False)  # 10% of 60 molecules: too few
    d = load_moleculeace(tmp_path, n_bits=256, val_fraction=0.4, cache=False)
    assert d.tasks == MOLECULEACE_TASKS and d.train.x.shape[1] == 256
    assert set(np.unique(d.train.x)) <= {0.0, 1.0}
    # every label of every file lands exactly once, in its file's split (train = train+val)
    for task in MOLECULEACE_TASKS[:5]:
        rows = list(csv.DictReader(open(folder / f"{task}.csv")))
        want_test = sorted(float(np.float32(r["y"])) for r in rows if r["split"] == "test")
        want_train = sorted(float(np.float32(r["y"])) for r in rows if r["split"] == "train")
        got_test = sorted(d.task_split(task, "test")[1].tolist())
        got_train = sorted(
            d.task_split(task, "train")[1].tolist() + d.task_split(task, "val")[1].tolist()
        )
        assert got_test == pytest.approx(want_test) and got_train == pytest.approx(want_train)
    # most entries are missing; no molecule is both a validation and a training row
    y = np.stack([d.train.targets[t] for t in d.tasks], axis=1)
    assert 0.5 < np.isnan(y).mean() < 1 and (~np.isnan(y)).any(axis=1).all()
    assert not set(d.smiles["train"]) & set(d.smiles["val"])
    assert len(d.smiles["test"]) == len(d.test)


def test_unparsable_smiles_reported_and_same_molecule_merged(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    from polytask.data import load_moleculeace

    reversed_alcohol = "O" + "C" * 24  # canonical: 'CCC...CO'
    extra = {"CHEMBL1862_Ki.csv": ["C1CC(,5.0,-0.7,0,train", f"{reversed_alcohol},3,-0.5,0,test"]}
    write_moleculeace(tmp_path, extra=extra)
    with pytest.warns(UserWarning, match=r"skipped 1 molecule.*CHEMBL1862_Ki.csv row 24: 'C1CC\('"):
        d = load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4, cache=False)
    assert d.skipped == (("CHEMBL1862_Ki.csv", 24, "C1CC("),)
    # 'OCC...C' is written the other way round; it joins with its canonical form
    assert "CCCCCCCCCCCCCCCCCCCCCCCCO" in d.smiles["test"]


def test_cache_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    from polytask.data import load_moleculeace

    write_moleculeace(tmp_path)
    first = load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4)
    assert (tmp_path / "moleculeace" / "moleculeace_r2_b128.npz").is_file()
    again = load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4)
    np.testing.assert_array_equal(first.test.x, again.test.x)
    assert first.smiles == again.smiles
