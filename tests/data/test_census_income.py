"""Census-Income (KDD) loader, on small files written in the real 42-column format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from polytask.data import (
    CENSUS_COLUMNS,
    DatasetNotFoundError,
    default_data_dir,
    load_census_income,
)
from polytask.data import census_income as ci

# A real record of the training file (its first line), as a column -> value dict.
REAL_LINE = (
    "73, Not in universe, 0, 0, High school graduate, 0, Not in universe, Widowed, "
    "Not in universe or children, Not in universe, White, All other, Female, "
    "Not in universe, Not in universe, Not in labor force, 0, 0, 0, Nonfiler, "
    "Not in universe, Not in universe, Other Rel 18+ ever marr not in subfamily, "
    "Other relative of householder, 1700.09, ?, ?, ?, Not in universe under 1 year old, "
    "?, 0, Not in universe, United-States, United-States, United-States, "
    "Native- Born in the United States, 0, Not in universe, 2, 0, 95, - 50000."
)
BASE = dict(zip(CENSUS_COLUMNS, REAL_LINE.split(", ")))
assert len(BASE) == 42


def row(**changes: object) -> dict[str, str]:
    r = dict(BASE)
    r.update({k: str(v) for k, v in changes.items()})
    return r


def write_csv(path: Path, rows: list[dict[str, str]], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = newline.join(", ".join(r[c] for c in CENSUS_COLUMNS) for r in rows) + newline
    path.write_bytes(text.encode("latin-1"))
    return path


MARITAL = ["Never married", "Married-civilian spouse present", "Divorced", "Widowed"]
EDUCATION = [
    "Bachelors degree(BA AB BS)",
    "High school graduate",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Some college but no degree",
    "Doctorate degree(PhD EdD)",
    "Associates degree-academic program",
    "Prof school degree (MD DDS DVM LLB JD)",
    "Children",
]
WORKER = ["Private", "Self-employed-not incorporated", "Local government"]


def train_rows() -> list[dict[str, str]]:
    rows = []
    for i in range(24):
        rows.append(
            row(
                age=20 + i,
                wage_per_hour=0 if i % 3 else 10 * i,
                marital_stat=MARITAL[i % 4],
                education=EDUCATION[i % 8],
                class_of_worker=WORKER[i % 3],
                income="50000+." if i % 5 == 0 else "- 50000.",
                instance_weight=1000 + i,
                # a real value with a trailing space before the separator
                citizenship="Foreign born- Not a citizen of U S "
                if i % 2
                else "Native- Born in the United States",
            )
        )
    return rows


def holdout_rows() -> list[dict[str, str]]:
    rows = []
    for i in range(10):
        rows.append(
            row(
                age=50 + i,  # distinct ages identify the rows after the shuffle
                marital_stat=MARITAL[(i + 1) % 4],
                education=EDUCATION[(i + 3) % 8],
                class_of_worker="Never worked" if i == 0 else WORKER[i % 3],  # unseen in train
                income="50000+." if i % 2 else "- 50000.",
            )
        )
    return rows


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "census-income"
    write_csv(folder / ci.TRAIN_FILE, train_rows())
    write_csv(folder / ci.TEST_FILE, holdout_rows())
    return tmp_path


def block(data: ci.CensusIncome, column: str) -> list[int]:
    return [i for i, n in enumerate(data.feature_names) if n.startswith(column + "=")]


def test_shapes_dtypes_and_feature_columns(data_dir: Path) -> None:
    d = load_census_income(data_dir, group=1, cache=False)
    assert d.tasks == ("income", "marital")
    assert len(d.train) == 24 and len(d.val) == 5 and len(d.test) == 5
    for split in (d.train, d.val, d.test):
        assert split.x.dtype == np.float32 and split.x.shape[1] == d.num_features
        for y in split.targets.values():
            assert y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    names = d.feature_names
    assert names[:7] == ci.CENSUS_NUMERIC_COLUMNS
    for never in ("marital_stat", "income", "instance_weight"):
        assert not any(n == never or n.startswith(never + "=") for n in names)
    assert block(d, "education")  # group 1 keeps education as a feature
    d2 = load_census_income(data_dir, group=2, cache=False)
    assert d2.tasks == ("education", "marital")
    assert not block(d2, "education") and not block(d2, "marital_stat")
    assert block(d2, "class_of_worker")


def test_targets(data_dir: Path) -> None:
    rows = train_rows()
    d1 = load_census_income(data_dir, group=1, cache=False)
    d2 = load_census_income(data_dir, group=2, cache=False)
    income = [r["income"] == "50000+." for r in rows]
    never = [r["marital_stat"] == "Never married" for r in rows]
    college = [r["education"] in ci.COLLEGE_DEGREES for r in rows]
    np.testing.assert_array_equal(d1.train.targets["income"], income)
    np.testing.assert_array_equal(d1.train.targets["marital"], never)
    np.testing.assert_array_equal(d2.train.targets["education"], college)
    # associates degrees and "some college" are not a college degree
    assert not ci.COLLEGE_DEGREES & {
        "Associates degree-academic program",
        "Some college but no degree",
    }
    assert sum(college) == 12  # bachelors, masters, doctorate, prof school: 4 of 8, 3 times


def test_numeric_standardized_with_train_statistics(data_dir: Path) -> None:
    d = load_census_income(data_dir, cache=False)
    ages = np.arange(20, 44, dtype=np.float64)
    mean, std = ages.mean(), ages.std()
    j = d.feature_names.index("age")
    np.testing.assert_allclose(d.train.x[:, j], (ages - mean) / std, rtol=1e-6)
    test_ages = np.concatenate([d.val.x[:, j], d.test.x[:, j]]) * std + mean
    np.testing.assert_allclose(np.sort(test_ages), np.arange(50, 60), rtol=1e-5)
    # a constant column (capital_gains is 0 everywhere) stays finite: 0
    k = d.feature_names.index("capital_gains")
    assert np.all(d.train.x[:, k] == 0)


def test_one_hot_categories_from_train_only(data_dir: Path) -> None:
    d = load_census_income(data_dir, cache=False)
    cols = block(d, "class_of_worker")
    assert [d.feature_names[c] for c in cols] == [
        "class_of_worker=Local government",
        "class_of_worker=Private",
        "class_of_worker=Self-employed-not incorporated",
    ]
    np.testing.assert_array_equal(d.train.x[:, cols].sum(1), 1.0)
    for i, r in enumerate(train_rows()):
        hot = cols[sorted(WORKER).index(r["class_of_worker"])]
        assert d.train.x[i, hot] == 1.0
    # "Never worked" only occurs in the test file: its block is all zeros
    x_test = np.concatenate([d.val.x, d.test.x])
    sums = x_test[:, cols].sum(1)
    assert sorted(sums.tolist()) == [0.0] + [1.0] * 9
    # every one-hot block of a train row sums to 1; values are stripped of whitespace
    numeric = set(ci.CENSUS_NUMERIC_COLUMNS)
    columns = {n.split("=")[0] for n in d.feature_names if n not in numeric}
    for c in columns:
        np.testing.assert_array_equal(d.train.x[:, block(d, c)].sum(1), 1.0)
    assert "citizenship=Foreign born- Not a citizen of U S" in d.feature_names
    assert "migration_code_change_in_msa=?" in d.feature_names  # unknown: its own category


def test_val_test_halves_are_a_fixed_shuffle(data_dir: Path) -> None:
    a = load_census_income(data_dir, cache=False)
    b = load_census_income(data_dir, cache=False)
    np.testing.assert_array_equal(a.val.x, b.val.x)
    j = a.feature_names.index("age")
    std = np.arange(20, 44).std()
    ages_val = np.rint(a.val.x[:, j] * std + 31.5).astype(int)
    ages_test = np.rint(a.test.x[:, j] * std + 31.5).astype(int)
    assert sorted(ages_val.tolist() + ages_test.tolist()) == list(range(50, 60))
    assert ages_val.tolist() + ages_test.tolist() != list(range(50, 60))  # shuffled
    # targets follow their rows
    income = {50 + i: float(i % 2) for i in range(10)}
    assert a.val.targets["income"].tolist() == [income[x] for x in ages_val]


def test_cache_is_reused_and_invalidated(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_census_income(data_dir, group=2)
    assert (data_dir / "census-income" / "census_income_group2.npz").is_file()

    def boom(path: Path) -> None:
        raise AssertionError("raw file parsed although the cache is valid")

    monkeypatch.setattr(ci, "_read_table", boom)
    second = load_census_income(data_dir, group=2)
    np.testing.assert_array_equal(first.train.x, second.train.x)
    np.testing.assert_array_equal(first.test.targets["education"], second.test.targets["education"])
    assert first.feature_names == second.feature_names
    monkeypatch.undo()
    rows = train_rows()[:12]
    write_csv(data_dir / "census-income" / ci.TRAIN_FILE, rows)  # changed file: rebuilt
    third = load_census_income(data_dir, group=2)
    assert len(third.train) == 12


def test_crlf_and_blank_trailing_lines(tmp_path: Path) -> None:
    folder = tmp_path / "census-income"
    write_csv(folder / ci.TRAIN_FILE, train_rows(), newline="\r\n")
    write_csv(folder / ci.TEST_FILE, holdout_rows())
    with open(folder / ci.TEST_FILE, "a") as f:
        f.write("\n\n")
    d = load_census_income(tmp_path, cache=False)
    assert len(d.train) == 24 and len(d.val) + len(d.test) == 10
    assert d.train.targets["income"].sum() == 5


def test_wrong_column_count_names_file_line_and_counts(data_dir: Path) -> None:
    path = data_dir / "census-income" / ci.TRAIN_FILE
    lines = path.read_text().splitlines()
    lines[2] = lines[2].rsplit(", ", 1)[0]  # drop the label: 41 columns
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as err:
        load_census_income(data_dir, cache=False)
    msg = str(err.value)
    assert str(path) in msg and "line 3" in msg and "41" in msg and "42" in msg


def test_bad_label_and_bad_number(data_dir: Path) -> None:
    rows = train_rows()
    rows[4]["income"] = "50000."
    write_csv(data_dir / "census-income" / ci.TRAIN_FILE, rows)
    with pytest.raises(ValueError, match=r"line 5: income label"):
        load_census_income(data_dir, cache=False)
    rows = train_rows()
    rows[6]["age"] = "old"
    write_csv(data_dir / "census-income" / ci.TRAIN_FILE, rows)
    with pytest.raises(ValueError, match=r"line 7: column 'age' should be a number"):
        load_census_income(data_dir, cache=False)


def test_missing_numeric_value_becomes_train_mean(data_dir: Path) -> None:
    rows = train_rows()
    rows[0]["age"] = "?"
    write_csv(data_dir / "census-income" / ci.TRAIN_FILE, rows)
    d = load_census_income(data_dir, cache=False)
    j = d.feature_names.index("age")
    assert d.train.x[0, j] == 0.0
    assert abs(d.train.x[1:, j].mean()) < 1e-6


def test_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYTASK_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as err:
        load_census_income(tmp_path)
    e = err.value
    assert isinstance(e, FileNotFoundError)
    msg = str(e)
    assert ci.TRAIN_FILE in msg and str(tmp_path / "census-income") in msg
    assert "polytask data get census-income" in msg
    assert f"POLYTASK_DATA={tmp_path}" in msg  # not the default dir: say where to put it
    again = pickle.loads(pickle.dumps(e))
    assert str(again) == msg
    write_csv(tmp_path / "census-income" / ci.TRAIN_FILE, train_rows())
    with pytest.raises(DatasetNotFoundError, match=ci.TEST_FILE):
        load_census_income(tmp_path)


def test_default_data_dir_from_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYTASK_DATA", str(data_dir))
    assert default_data_dir() == data_dir
    assert len(load_census_income(cache=False).train) == 24
    with pytest.raises(DatasetNotFoundError) as err:
        load_census_income(data_dir / "elsewhere")
    assert "POLYTASK_DATA=" in str(err.value)
    monkeypatch.delenv("POLYTASK_DATA")
    assert default_data_dir() == Path.home() / ".cache" / "polytask" / "data"


def test_invalid_group(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="group must be one of"):
        load_census_income(data_dir, group=3)


def many_rows(n: int, offset: int = 0) -> list[dict[str, str]]:
    union = ["Yes", "No", "Not in universe"]
    employment = ["Full-time schedules", "Not in labor force", "Children or Armed Forces"]
    citizenship = ["Native- Born in the United States", "Foreign born- Not a citizen of U S"]
    return [
        row(
            age=20 + i + offset,
            sex="Female" if i % 2 else "Male",
            marital_stat=MARITAL[i % 4],
            education=EDUCATION[i % 8],
            class_of_worker=WORKER[i % 3],
            full_or_part_time_employment_stat=employment[i % 3],
            member_of_a_labor_union=union[i % 3],
            citizenship=citizenship[(i // 2) % 2],
            country_of_birth_self="United-States" if (i // 2) % 2 == 0 else "Mexico",
            income="50000+." if i % 5 == 0 else "- 50000.",
        )
        for i in range(n)
    ]


def test_many_group_targets_missing_labels_and_removed_columns(tmp_path: Path) -> None:
    rows = many_rows(24)
    write_csv(tmp_path / "census-income" / ci.TRAIN_FILE, rows)
    write_csv(tmp_path / "census-income" / ci.TEST_FILE, many_rows(10, offset=40))
    d = load_census_income(tmp_path, group="many", cache=False)
    assert d.tasks == tuple(ci.CENSUS_MANY_TASKS) and len(d.tasks) == 8
    t = d.train.targets
    np.testing.assert_array_equal(t["sex"], [r["sex"] == "Female" for r in rows])
    np.testing.assert_array_equal(t["private"], [r["class_of_worker"] == "Private" for r in rows])
    fulltime = [r["full_or_part_time_employment_stat"] == "Full-time schedules" for r in rows]
    np.testing.assert_array_equal(t["fulltime"], fulltime)
    np.testing.assert_array_equal(
        t["native"], [r["citizenship"].startswith("Native") for r in rows]
    )
    # union: 1 for Yes, 0 for No, missing (NaN) where the survey did not ask
    expected = [{"Yes": 1.0, "No": 0.0}.get(r["member_of_a_labor_union"], np.nan) for r in rows]
    np.testing.assert_array_equal(t["union"], np.array(expected, dtype=np.float32))
    assert np.isnan(t["union"]).sum() == 8
    for column in ("sex", "class_of_worker", "full_or_part_time_employment_stat",
                   "member_of_a_labor_union", "citizenship", "country_of_birth_self",
                   "education", "marital_stat"):
        assert not block(d, column), column
    assert block(d, "race")  # other columns stay


def test_many_group_is_cached_apart(tmp_path: Path) -> None:
    write_csv(tmp_path / "census-income" / ci.TRAIN_FILE, many_rows(24))
    write_csv(tmp_path / "census-income" / ci.TEST_FILE, many_rows(10, offset=40))
    first = load_census_income(tmp_path, group="many")
    assert (tmp_path / "census-income" / "census_income_groupmany.npz").is_file()
    again = load_census_income(tmp_path, group="many")
    np.testing.assert_array_equal(first.test.targets["union"], again.test.targets["union"])
    assert load_census_income(tmp_path, group=1).tasks == ("income", "marital")
