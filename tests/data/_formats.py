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


QM9_HEADER = (
    "XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,"
    "Harmonic_Freq_cmi,RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,"
    "LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,"
    "Enthalphy_298K_au,GibbsFreeEnergy_298K_au,Heatcapacity_Cv_cal_mol_K"
)
#: The first record of qm9pack's qm9_part1.csv (methane).
METHANE = (
    '"dsgdb9nsd_000001.xyz",1,"C","InChI=1S/CH4/h1H4",5,"[4,1,0,0,0]",'
    "\"['C','H','H','H','H']\","
    '"[[-0.0126981359,1.0858041578,0.0080009958],[0.002150416,-0.0060313176,0.0019761204],'
    "[1.0117308433,1.4637511618,0.0002765748],[-0.540815069,1.4475266138,-0.8766437152],"
    '[-0.5238136345,1.4379326443,0.9063972942]]",'
    '"[-0.535689,0.133921,0.133922,0.133923,0.133923]",'
    '"[1341.307,1341.3284,1341.365,1562.6731,1562.7453,3038.3205,3151.6034,3151.6788,3151.7078]",'
    "157.7118,157.70997,157.70699,0.,13.21,-0.3877,0.1171,0.5048,35.3641,0.044749,-40.47893,"
    "-40.476062,-40.475117,-40.498597,6.469"
)


def qm9_row(index: int, smiles: str, elements: list[str], xyz: np.ndarray, values: list[float]):
    """One qm9pack CSV line (``values``: the 12 property columns from Dipole_debye on)."""
    els = "[" + ",".join(f"'{e}'" for e in elements) + "]"
    coords = "[" + ",".join("[" + ",".join(f"{v:.10f}" for v in p) + "]" for p in xyz) + "]"
    return (
        f'"dsgdb9nsd_{index:06d}.xyz",{index},"{smiles}","InChI=x",{len(elements)},"[0]",'
        f'"{els}","{coords}","[0]","[0]",1.,1.,1.,' + ",".join(repr(float(v)) for v in values)
    )


def write_qm9(root: Path, n: int = 40, seed: int = 0) -> Path:
    """Three qm9pack CSV parts of small molecules embedded in 3-D by RDKit (needs RDKit)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    rng = np.random.default_rng(seed)
    pool = ["C" * i + "O" for i in range(1, 7)] + ["C" * i + "N" for i in range(1, 7)] + [
        "C" * i for i in range(1, 7)
    ]
    rows = [METHANE]
    for i in range(1, n):
        smiles = pool[i % len(pool)]
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=i)
        xyz = mol.GetConformer().GetPositions()
        elements = [a.GetSymbol() for a in mol.GetAtoms()]
        values = list(rng.normal(size=12) + [2, 60, -0.25, 0.05, 0.3, 800, 0.1, -300, -300,
                                            -300, -300, 25])
        rows.append(qm9_row(i + 1, smiles, elements, xyz, values))
    folder = root / "qm9"
    folder.mkdir(parents=True, exist_ok=True)
    thirds = np.array_split(np.arange(len(rows)), 3)
    for name, part in zip(("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"), thirds):
        (folder / name).write_text("\n".join([QM9_HEADER] + [rows[j] for j in part]) + "\n")
    return folder
