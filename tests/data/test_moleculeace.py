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


def _cache_sig(tmp_path: Path) -> str:
    with np.load(tmp_path / "moleculeace" / "moleculeace_r2_b128.npz") as z:
        return str(z["signature"])


def test_cache_is_rebuilt_when_a_file_changes_with_the_same_size_and_mtime(
    tmp_path: Path,
) -> None:
    pytest.importorskip("rdkit")
    import os

    from polytask.data import load_moleculeace

    write_moleculeace(tmp_path)
    first = load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4)
    before = _cache_sig(tmp_path)
    path = tmp_path / "moleculeace" / "CHEMBL1862_Ki.csv"
    st = path.stat()
    rows = path.read_text().splitlines()
    i = next(k for k, r in enumerate(rows) if r.endswith(",train") and k > 0)
    smiles, exp, y, cliff, split = rows[i].split(",")
    digit = next(k for k, c in enumerate(y) if c.isdigit() and c != "0")
    new_y = y[:digit] + ("1" if y[digit] != "1" else "2") + y[digit + 1 :]
    assert new_y != y and len(new_y) == len(y)  # same size, different label
    rows[i] = ",".join((smiles, exp, new_y, cliff, split))
    path.write_text("\n".join(rows) + "\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored, as cp -p does
    assert path.stat().st_size == st.st_size
    again = load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4)
    assert _cache_sig(tmp_path) != before  # rebuilt, not the stale arrays
    fresh = load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4, cache=False)
    for split_name in ("train", "val"):
        a = getattr(again, split_name).targets["CHEMBL1862_Ki"]
        b = getattr(fresh, split_name).targets["CHEMBL1862_Ki"]
        np.testing.assert_array_equal(a, b)
    changed = [
        not np.array_equal(
            getattr(first, s).targets["CHEMBL1862_Ki"],
            getattr(again, s).targets["CHEMBL1862_Ki"],
            equal_nan=True,
        )
        for s in ("train", "val")
    ]
    assert any(changed)


def test_cache_is_keyed_by_the_fingerprint_settings(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    from polytask.data import load_moleculeace

    write_moleculeace(tmp_path)
    small = load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4)
    wide = load_moleculeace(tmp_path, n_bits=256, val_fraction=0.4)
    r3 = load_moleculeace(tmp_path, n_bits=128, radius=3, val_fraction=0.4)
    assert small.train.x.shape[1] == 128 and wide.train.x.shape[1] == 256
    folder = tmp_path / "moleculeace"
    assert {p.name for p in folder.glob("*.npz")} == {
        "moleculeace_r2_b128.npz",
        "moleculeace_r2_b256.npz",
        "moleculeace_r3_b128.npz",
    }
    fresh = load_moleculeace(tmp_path, n_bits=128, radius=3, val_fraction=0.4, cache=False)
    np.testing.assert_array_equal(r3.train.x, fresh.train.x)
    # a cache file renamed over another setting's is refused (its key says r2), not read
    (folder / "moleculeace_r2_b128.npz").replace(folder / "moleculeace_r3_b128.npz")
    again = load_moleculeace(tmp_path, n_bits=128, radius=3, val_fraction=0.4)
    np.testing.assert_array_equal(again.train.x, fresh.train.x)


def test_cache_key_includes_the_rdkit_version(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("rdkit")
    from polytask.data import load_moleculeace
    from polytask.data import moleculeace as mod

    write_moleculeace(tmp_path)
    load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4)
    before = _cache_sig(tmp_path)
    monkeypatch.setattr(mod, "_rdkit_version", lambda: "0.0.0-other")
    load_moleculeace(tmp_path, n_bits=128, val_fraction=0.4)
    assert _cache_sig(tmp_path) != before
