"""QM9 reader and graphs, on small files in qm9pack's CSV format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _formats import METHANE, QM9_HEADER, write_qm9

from polytask.data import QM9_TARGETS, DatasetNotFoundError, GraphSet, load_qm9
from polytask.data.qm9 import ATOMREF, HARTREE_TO_EV, read_qm9_csv


def test_reader_converts_units_and_atomization_energies(tmp_path: Path) -> None:
    path = tmp_path / "part.csv"
    path.write_text(QM9_HEADER + "\n" + METHANE + "\n")
    raw = read_qm9_csv(path)
    assert raw.index.tolist() == [1] and raw.smiles == ["C"]
    assert raw.atoms.tolist() == [6, 1, 1, 1, 1] and raw.positions.shape == (5, 3)
    t = dict(zip(QM9_TARGETS, raw.targets[0]))
    assert t["mu"] == 0.0 and t["alpha"] == 13.21 and t["cv"] == 6.469
    assert t["homo"] == pytest.approx(-0.3877 * HARTREE_TO_EV)
    free_atoms = ATOMREF["u0"]["C"] + 4 * ATOMREF["u0"]["H"]
    assert t["u0_atom"] == pytest.approx((-40.47893 - free_atoms) * HARTREE_TO_EV)
    assert t["u0_atom"] == pytest.approx(-17.17, abs=0.01)  # methane's atomization energy


def test_reader_names_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "part.csv"
    path.write_text(QM9_HEADER + "\n" + METHANE.replace("'H','H','H','H'", "'H','H','H'") + "\n")
    with pytest.raises(ValueError, match="line 2: 15 coordinates for 4 atoms"):
        read_qm9_csv(path)
    path.write_text(QM9_HEADER + "\n" + METHANE.replace("'C','H'", "'Xe','H'") + "\n")
    with pytest.raises(ValueError, match="line 2: unknown element 'Xe'"):
        read_qm9_csv(path)


def test_missing_files_name_the_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="polytask data get qm9"):
        load_qm9(tmp_path)


def test_methane_graph_is_complete_with_bond_types_and_distances(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    from polytask.data.qm9 import _complete_edges, molecule_graph

    path = tmp_path / "part.csv"
    path.write_text(QM9_HEADER + "\n" + METHANE + "\n")
    raw = read_qm9_csv(path)
    xyz, atoms = raw.positions, raw.atoms
    x, bonds = molecule_graph(atoms, xyz)
    assert x.shape == (5, 11)
    assert x[0, 1] == 1 and x[0, 5] == 6 and x[0, 9] == 1 and x[0, 10] == 4  # sp3 C, 4 H
    assert (x[1:, 0] == 1).all() and (x[1:, 10] == 0).all()
    assert (bonds[0, 1:] == 1).all() and (bonds[1:, 1:] == 0).all()  # four C-H single bonds
    ei, ea = _complete_edges(bonds, xyz)
    assert ei.shape == (2, 20) and ea.shape == (20, 5)
    for k in range(20):
        i, j = ei[:, k]
        assert ea[k, 4] == pytest.approx(np.linalg.norm(xyz[i] - xyz[j]), rel=1e-5)
        assert ea[k, 0] == (1.0 if 0 in (i, j) else 0.0)


def test_load_split_sizes_and_batches(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    write_qm9(tmp_path, n=40)
    d = load_qm9(tmp_path, n_train=20, n_val=8, n_test=8, cache=False)
    assert (len(d.train), len(d.val), len(d.test)) == (20, 8, 8) and not d.skipped
    assert isinstance(d.train.x, GraphSet) and set(d.train.targets) == set(QM9_TARGETS)
    batch = d.train.x[[3, 0]]
    n3 = int(d.train.x.node_offsets[4] - d.train.x.node_offsets[3])
    assert batch["batch"].tolist() == [0] * n3 + [1] * (len(batch["x"]) - n3)
    assert int(batch["edge_index"].max()) == len(batch["x"]) - 1
    # edges of the second molecule point at its own nodes only
    second = batch["edge_index"][:, batch["batch"][batch["edge_index"][0]] == 1]
    assert int(second.min()) == n3
    with pytest.raises(ValueError, match="cannot take n_test=35"):
        load_qm9(tmp_path, n_test=35, n_val=8, cache=False)


def test_graphs_are_cached(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    write_qm9(tmp_path, n=20)
    first = load_qm9(tmp_path, n_train=10, n_val=4, n_test=4)
    again = load_qm9(tmp_path, n_train=10, n_val=4, n_test=4)
    assert torch.equal(first.test.x.edge_attr, again.test.x.edge_attr)
    assert (tmp_path / "qm9" / "qm9_graphs_10_4_4.npz").is_file()
