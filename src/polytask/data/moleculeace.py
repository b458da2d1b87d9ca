"""MoleculeACE: 30 ChEMBL bioactivity regression tasks joined into one molecule × task table.

van Tilborg, Alenicheva & Grisoni, "Exposing the Limitations of Molecular Machine
Learning with Activity Cliffs", J. Chem. Inf. Model. 2022. The ``MoleculeACE==3.0.0``
wheel ships one CSV per target (``MoleculeACE/Data/benchmark_data/CHEMBL*_{Ki,EC50}.csv``)
with the columns ``smiles, exp_mean [nM], y, cliff_mol, split``; ``y`` is the
package's regression target (minus the log10 of the activity in nM) and ``split`` is
``train`` or ``test`` (the authors' activity-cliff-stratified split).

polytask joins the 30 files on the molecule (RDKit canonical SMILES): 35,633 molecules,
48,714 labels, so about 95% of the molecule × task entries are missing (NaN). Each
file's own split is kept per label: a label is in the training table when its file
says ``train`` and in the test table when it says ``test``. A molecule can therefore be
a training input for one task and a test input for another (3,545 molecules are); it
is never seen with the label it is tested on. A validation table is held out from the
training labels: a fixed-seed 10% of the training molecules, all their training labels.
Inputs are Morgan (ECFP4-like) fingerprints, radius 2, 1,024 bits (the setting of the
paper's ECFP models), from RDKit (``pip install rdkit``, the ``chem`` extra).
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polytask.data import _cache
from polytask.data.paths import DatasetNotFoundError, resolve_data_dir
from polytask.data.splits import Split
from polytask.errors import MissingExtraError

__all__ = [
    "MOLECULEACE_TASKS",
    "MoleculeACE",
    "load_moleculeace",
    "morgan_fingerprints",
    "read_moleculeace_csv",
]

SUBDIR = "moleculeace"
FETCH_NAME = "moleculeace"
#: The 30 targets (file names without ``.csv``), in file-name order: the task names.
MOLECULEACE_TASKS: tuple[str, ...] = (
    "CHEMBL1862_Ki", "CHEMBL1871_Ki", "CHEMBL2034_Ki", "CHEMBL2047_EC50", "CHEMBL204_Ki",
    "CHEMBL2147_Ki", "CHEMBL214_Ki", "CHEMBL218_EC50", "CHEMBL219_Ki", "CHEMBL228_Ki",
    "CHEMBL231_Ki", "CHEMBL233_Ki", "CHEMBL234_Ki", "CHEMBL235_EC50", "CHEMBL236_Ki",
    "CHEMBL237_EC50", "CHEMBL237_Ki", "CHEMBL238_Ki", "CHEMBL239_EC50", "CHEMBL244_Ki",
    "CHEMBL262_Ki", "CHEMBL264_Ki", "CHEMBL2835_Ki", "CHEMBL287_Ki", "CHEMBL2971_Ki",
    "CHEMBL3979_EC50", "CHEMBL4005_Ki", "CHEMBL4203_Ki", "CHEMBL4616_EC50", "CHEMBL4792_Ki",
)  # fmt: skip
FILES: tuple[str, ...] = tuple(f"{t}.csv" for t in MOLECULEACE_TASKS)
COLUMNS = ("smiles", "exp_mean [nM]", "y", "cliff_mol", "split")
VAL_FRACTION = 0.1
VAL_SEED = 0
_CACHE_VERSION = 1
RDKIT_INSTALL = "python -m pip install rdkit  (or: pip install 'polytask[chem]')"

#: SHA-256 of the 30 files of MoleculeACE 3.0.0, checked after a download.
SHA256 = {
    "CHEMBL1862_Ki.csv": "72a750426976bf5c17ca9129e86dff20962332f92a8ce16028d9fbcf152ca412",
    "CHEMBL1871_Ki.csv": "62d05aa76d096fd5bd3575dcfd30dcab24873dc010de47b478b6617fbd95985e",
    "CHEMBL2034_Ki.csv": "476668f39aae0e29a1ab8fa83a7087b179dc705b68cdc060c9958a0eed2048d4",
    "CHEMBL2047_EC50.csv": "ea1bacf43377aac288840f2d2e37df7705a0d2d1f93bb52b0ce85e499e311f6e",
    "CHEMBL204_Ki.csv": "6ccf17a5f1aa6322f2d68f24b923f2efb5779ff73d33035bb889bb922b18dba5",
    "CHEMBL2147_Ki.csv": "5cbf4deba3e6312aff3a77ac3c70eb39a3cd58c9d8686a19a8b56c4a73377d02",
    "CHEMBL214_Ki.csv": "68bffa3069340c51204ba23395626622559a10c3d39b1111cb9c47f9d9960962",
    "CHEMBL218_EC50.csv": "9133aefc69efa92403107f78f747d4acbd370255ac0a2949cc5f86a30b5ebd11",
    "CHEMBL219_Ki.csv": "f0d13b1bd8086e3fed746215b0ff8c4399518547bbba2146a0f235f1a9a59fa8",
    "CHEMBL228_Ki.csv": "17158facfdc5788e22e020e398acd3bbf99edc9d66f7b323da778cd551d9796f",
    "CHEMBL231_Ki.csv": "9e1c0a22c37e446d37d63e7b39d92cb022774333b4fa430e9f948b748215afb0",
    "CHEMBL233_Ki.csv": "4d8aff053b3d1c12e8cc13102958bb4f3dce4ac7715452265231e5b68d1c9362",
    "CHEMBL234_Ki.csv": "7a86fc3552953bb1ea727f4119b844ff3eadb33d7a79413b1f417cf236f5615a",
    "CHEMBL235_EC50.csv": "a99b1d18870cc4d83da5fbedfee4504f8c46bb96e71ea7964b84ae7682d4963f",
    "CHEMBL236_Ki.csv": "28227a570694a24325a3206bee2a1623e14949d54abe13e490402fb2f5a8c74e",
    "CHEMBL237_EC50.csv": "37dce21b9ef158ac7d3075997e58896bb0083162c9c820d1996d898dfb0701f5",
    "CHEMBL237_Ki.csv": "8bc5f0f4e512923d7878390f9c6336682dfd638e90d8110f44bfd3af77d605c3",
    "CHEMBL238_Ki.csv": "5ca1bb99ea9123dc0369f19c1269fec3f9fc3eae3bf9a2b781419b268913761a",
    "CHEMBL239_EC50.csv": "1985b2137bd64396ec980e8c6e1f234f6f9aa989c49a20aef71dd22bda68ed9c",
    "CHEMBL244_Ki.csv": "aafc2e81810767397c8b5b3161b9eed3b33b6e9a827ed176336f388bef274a36",
    "CHEMBL262_Ki.csv": "c438e8e18bc444890246607be107d9afb8c64012608a8a73838acad3eacfce21",
    "CHEMBL264_Ki.csv": "6b380b5cf61b6985179779a9b9d0d1d3b197773fc3df5079d8932108f75e2bbf",
    "CHEMBL2835_Ki.csv": "a6ff0b8c3df2c452a9210af5c3d57495846ed16978c339b463c7a4b90c73c66c",
    "CHEMBL287_Ki.csv": "7f448c29138242dd64ec2a07742e33a1e186129ca4e794e287b67e5ffaea171e",
    "CHEMBL2971_Ki.csv": "2fe0c20bab93c58f824fdb7f35b1c327e987b76e8403ededb0075cb7649651d3",
    "CHEMBL3979_EC50.csv": "7e455ec476c0683414404b527d0bb98bf76671f7bd3748507aad505c21a6b44b",
    "CHEMBL4005_Ki.csv": "183b163b6820d2c0db3190500e3a58cdda1f72d148f36605d7c2e2071d69c03e",
    "CHEMBL4203_Ki.csv": "28d7139fdba99657584430ef793bf2850aaf806651930fc062d50f3f847f032d",
    "CHEMBL4616_EC50.csv": "7b79538464cf4a811a9bd593d867d985b3f19d65302f241a7fba409b16230b0a",
    "CHEMBL4792_Ki.csv": "088219b5b08fa90962f00e80d7ed66fe7a71e223b18b874fb000d0babc343659",
}


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdFingerprintGenerator
    except ImportError as e:
        raise MissingExtraError(
            f"this needs RDKit, which is not installed ({e}). Install it with: {RDKIT_INSTALL}"
        ) from None
    RDLogger.DisableLog("rdApp.*")  # parse failures are reported by polytask, by index
    return Chem, rdFingerprintGenerator


def _rdkit_version() -> str:
    """RDKit's version, part of the cache key (canonical SMILES and fingerprints may
    change between releases); ``"none"`` without RDKit (the cache then cannot be built)."""
    try:
        import rdkit
    except ImportError:
        return "none"
    return str(getattr(rdkit, "__version__", "unknown"))


@dataclass(frozen=True)
class MoleculeACE:
    """The joined molecule × task tables.

    ``x`` of each split is float32 (N, n_bits) 0/1 fingerprints; every task's target is
    float32 (N,), NaN where the molecule has no label for that task in that split.
    ``smiles`` holds each split's molecules (canonical SMILES), row for row.
    """

    train: Split
    val: Split
    test: Split
    smiles: dict[str, tuple[str, ...]]
    skipped: tuple[tuple[str, int, str], ...] = ()

    @property
    def tasks(self) -> tuple[str, ...]:
        """The 30 task names (``CHEMBL1862_Ki`` ...)."""
        return self.train.tasks

    def task_split(self, task: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of the molecules labelled for ``task`` in ``split`` (one data set
        per target, as the original benchmark trains them)."""
        data = {"train": self.train, "val": self.val, "test": self.test}[split]
        if task not in data.targets:
            raise KeyError(f"MoleculeACE has no task {task!r}; tasks: {', '.join(self.tasks)}")
        y = data.targets[task]
        rows = ~np.isnan(y)
        return data.x[rows], y[rows]


def read_moleculeace_csv(path: str | os.PathLike[str]) -> list[tuple[str, float, str]]:
    """Rows of one MoleculeACE file as ``(smiles, y, split)``.

    Raises ValueError naming the file and line for a wrong header, a ``y`` that is not
    a finite number or a ``split`` other than ``train``/``test``.
    """
    path = Path(path)
    rows: list[tuple[str, float, str]] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != list(COLUMNS):
            raise ValueError(f"{path}: header should be {','.join(COLUMNS)}, got {header}")
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != len(COLUMNS):
                raise ValueError(
                    f"{path}: line {lineno} has {len(row)} columns, expected {len(COLUMNS)}"
                )
            smiles, _, y, _, split = row
            try:
                value = float(y)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                raise ValueError(f"{path}: line {lineno}: y should be a finite number, got {y!r}")
            if split not in ("train", "test"):
                raise ValueError(
                    f"{path}: line {lineno}: split should be 'train' or 'test', got {split!r}"
                )
            rows.append((smiles, value, split))
    return rows


def morgan_fingerprints(smiles: list[str], radius: int = 2, n_bits: int = 1024) -> np.ndarray:
    """Morgan fingerprints (RDKit), uint8 (N, n_bits); every SMILES must parse."""
    Chem, gen_module = _rdkit()
    gen = gen_module.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            raise ValueError(f"RDKit cannot parse SMILES {i}: {s!r}")
        out[i] = gen.GetFingerprintAsNumPy(mol)
    return out


def _join(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[str, int, str]]]:
    """Canonical SMILES, (M, T) targets and (M, T) split codes (0 none, 1 train, 2 test)."""
    Chem, _ = _rdkit()
    index: dict[str, int] = {}
    entries: list[tuple[int, int, float, int]] = []
    skipped: list[tuple[str, int, str]] = []
    for t, name in enumerate(FILES):
        for i, (smiles, y, split) in enumerate(read_moleculeace_csv(folder / name)):
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                skipped.append((name, i, smiles))
                continue
            key = Chem.MolToSmiles(mol)
            m = index.setdefault(key, len(index))
            entries.append((m, t, y, 1 if split == "train" else 2))
    n_mol, n_task = len(index), len(FILES)
    sums = np.zeros((n_mol, n_task))
    counts = np.zeros((n_mol, n_task), dtype=np.int64)
    splits = np.zeros((n_mol, n_task), dtype=np.int8)
    for m, t, y, s in entries:
        if counts[m, t] and splits[m, t] != s:
            raise ValueError(
                f"{folder / FILES[t]}: molecule {list(index)[m]!r} appears in both the train "
                f"and the test split"
            )
        sums[m, t] += y
        counts[m, t] += 1
        splits[m, t] = s
    merged = int((counts > 1).sum())
    if merged:
        warnings.warn(
            f"MoleculeACE: {merged} (molecule, task) labels were given more than once under "
            f"different SMILES of the same molecule; their mean is used",
            stacklevel=3,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
    return list(index), y, splits, skipped


def load_moleculeace(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    radius: int = 2,
    n_bits: int = 1024,
    val_fraction: float = VAL_FRACTION,
    cache: bool = True,
) -> MoleculeACE:
    """Load the 30 MoleculeACE targets as one molecule × task table per split.

    Reads ``<data_dir>/moleculeace/CHEMBL*.csv`` (``polytask data get moleculeace``).
    A SMILES RDKit cannot parse is skipped and reported (file, row index, SMILES) in a
    warning with the count, and kept in :attr:`MoleculeACE.skipped`. A task left with no
    label in a split raises ValueError naming it. ``val_fraction`` of the training
    molecules (fixed seed) form the validation table. With ``cache=True`` the joined
    arrays and fingerprints (the bulk of the loading time: about 45 s of RDKit work on one
    core) are stored next to the files, ``moleculeace_r{radius}_b{n_bits}.npz``, written
    atomically and keyed by a SHA-256 of the 30 files' bytes, the fingerprint settings
    and the RDKit version, so a changed file, setting or RDKit rebuilds it.
    """
    root = resolve_data_dir(data_dir)
    folder = root / SUBDIR
    paths = [folder / f for f in FILES]
    for p in paths:
        if not p.is_file():
            raise DatasetNotFoundError("MoleculeACE", p, fetch_name=FETCH_NAME, data_dir=root)
    sig = _cache.content_signature(
        paths, f"moleculeace-v{_CACHE_VERSION}", radius, n_bits, _rdkit_version()
    )
    cache_path = folder / f"moleculeace_r{radius}_b{n_bits}.npz"
    arrays = _cache.load(cache_path, sig) if cache else None
    if arrays is None:
        smiles, y, splits, skipped = _join(folder)
        arrays = {
            "smiles": np.array(smiles),
            "y": y,
            "splits": splits,
            "fingerprints": morgan_fingerprints(smiles, radius, n_bits),
            "skipped": np.array([f"{f}\t{i}\t{s}" for f, i, s in skipped], dtype=str),
        }
        if cache:
            _cache.save(cache_path, {"signature": np.array(sig), **arrays}, compress=True)
    skipped = tuple(
        (f, int(i), s) for f, i, s in (line.split("\t") for line in arrays["skipped"].tolist())
    )
    if skipped:
        shown = "; ".join(f"{f} row {i}: {s!r}" for f, i, s in skipped[:5])
        warnings.warn(
            f"MoleculeACE: skipped {len(skipped)} molecule(s) RDKit cannot parse: {shown}"
            + (" ..." if len(skipped) > 5 else ""),
            stacklevel=2,
        )
    return _split(arrays, skipped, folder, val_fraction)


def _split(
    arrays: dict[str, np.ndarray], skipped: tuple, folder: Path, val_fraction: float
) -> MoleculeACE:
    smiles = arrays["smiles"].tolist()
    y, splits = arrays["y"], arrays["splits"]
    x = arrays["fingerprints"].astype(np.float32)
    train_mol = np.flatnonzero((splits == 1).any(axis=1))
    rng = np.random.default_rng(VAL_SEED)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n_val = max(1, int(round(val_fraction * len(train_mol))))
    val_mol = np.sort(rng.choice(train_mol, size=n_val, replace=False))
    is_val = np.zeros(len(smiles), dtype=bool)
    is_val[val_mol] = True
    train_mask = (splits == 1) & ~is_val[:, None]
    val_mask = (splits == 1) & is_val[:, None]
    test_mask = splits == 2

    def table(mask: np.ndarray, name: str) -> tuple[Split, tuple[str, ...]]:
        rows = np.flatnonzero(mask.any(axis=1))
        targets = {}
        for t, task in enumerate(MOLECULEACE_TASKS):
            column = np.where(mask[rows, t], y[rows, t], np.nan).astype(np.float32)
            if not np.isfinite(column).any():
                raise ValueError(
                    f"{folder / FILES[t]}: task {task!r} has no label in the {name} split"
                )
            targets[task] = column
        return Split(x=x[rows], targets=targets), tuple(smiles[i] for i in rows)

    train, s_train = table(train_mask, "train")
    val, s_val = table(val_mask, "validation")
    test, s_test = table(test_mask, "test")
    return MoleculeACE(
        train=train,
        val=val,
        test=test,
        smiles={"train": s_train, "val": s_val, "test": s_test},
        skipped=skipped,
    )
