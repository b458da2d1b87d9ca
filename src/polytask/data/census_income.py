"""UCI Census-Income (KDD) as the multi-task benchmark of the MMoE paper.

Ma, Zhao, Yi, Chen, Hong, Chi: "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018, section 5.2. The data is the 1994/1995 Current
Population Survey extract from the UCI repository (199,523 training and 99,762 test
records, 40 usable attributes). Two groups of two binary tasks are defined:

* group 1: ``income`` (income above $50K) and ``marital`` (marital status "Never married");
* group 2: ``education`` (at least a college degree) and ``marital``.

polytask adds a third group, ``"many"`` (benchmark ``census-income-many``; our
construction, not the paper's): eight binary tasks derived from columns of the same
files, each task's columns removed from the inputs (see :data:`CENSUS_MANY_TASKS`).

The paper does not say which education levels count as "college"; here it means a
Bachelor's degree or higher (Bachelors, Masters, Prof school, Doctorate), so associate
degrees and "Some college but no degree" are negatives (about 15% of records are positive).

As in the paper, the test file is split in half, at random with a fixed seed, into a
validation and a test set.
"""

from __future__ import annotations

import array
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from operator import getitem
from pathlib import Path

import numpy as np

from polytask.data import _cache
from polytask.data.paths import DatasetNotFoundError, resolve_data_dir
from polytask.data.splits import Split

__all__ = [
    "CENSUS_COLUMNS",
    "CENSUS_MANY_TASKS",
    "CENSUS_NUMERIC_COLUMNS",
    "CENSUS_TASK_GROUPS",
    "COLLEGE_DEGREES",
    "CensusIncome",
    "load_census_income",
]

SUBDIR = "census-income"
TRAIN_FILE = "census_income_1994_1995_train.csv"
TEST_FILE = "census_income_1994_1995_test.csv"
FETCH_NAME = "census-income"
#: Seed of the permutation that splits the test file into validation and test halves.
VAL_TEST_SEED = 0
_CACHE_VERSION = 1

#: The 42 columns of the files, in order (the 41 UCI attributes and the income label).
CENSUS_COLUMNS: tuple[str, ...] = (
    "age",
    "class_of_worker",
    "detailed_industry_recode",
    "detailed_occupation_recode",
    "education",
    "wage_per_hour",
    "enroll_in_edu_inst_last_wk",
    "marital_stat",
    "major_industry_code",
    "major_occupation_code",
    "race",
    "hispanic_origin",
    "sex",
    "member_of_a_labor_union",
    "reason_for_unemployment",
    "full_or_part_time_employment_stat",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "tax_filer_stat",
    "region_of_previous_residence",
    "state_of_previous_residence",
    "detailed_household_and_family_stat",
    "detailed_household_summary_in_household",
    "instance_weight",
    "migration_code_change_in_msa",
    "migration_code_change_in_reg",
    "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt",
    "num_persons_worked_for_employer",
    "family_members_under_18",
    "country_of_birth_father",
    "country_of_birth_mother",
    "country_of_birth_self",
    "citizenship",
    "own_business_or_self_employed",
    "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits",
    "weeks_worked_in_year",
    "year",
    "income",
)

#: Columns used as standardized numbers; every other feature column is one-hot encoded.
CENSUS_NUMERIC_COLUMNS: tuple[str, ...] = (
    "age",
    "wage_per_hour",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "num_persons_worked_for_employer",
    "weeks_worked_in_year",
)

#: Columns that are never features: the survey's sampling weight and the income label.
_NEVER_FEATURES = ("instance_weight", "income")

#: Education values counted as "at least a college degree" (group 2's ``education`` task).
COLLEGE_DEGREES: frozenset[str] = frozenset(
    {
        "Bachelors degree(BA AB BS)",
        "Masters degree(MA MS MEng MEd MSW MBA)",
        "Prof school degree (MD DDS DVM LLB JD)",
        "Doctorate degree(PhD EdD)",
    }
)

_INCOME_LABELS = {"- 50000.": 0.0, "50000+.": 1.0}

#: The ``"many"`` group's tasks: what each predicts, from which column. Where the
#: column says "Not in universe" for ``union`` (the question was not asked), the label
#: is missing (NaN), so that task is labelled for about 10% of the records.
CENSUS_MANY_TASKS: dict[str, str] = {
    "income": "income above $50K (income)",
    "marital": "never married (marital_stat)",
    "education": "Bachelor's degree or higher (education)",
    "sex": "female (sex)",
    "fulltime": "full-time schedule (full_or_part_time_employment_stat)",
    "private": "works in the private sector (class_of_worker)",
    "union": "labour-union member, where asked (member_of_a_labor_union)",
    "native": "born a US native (citizenship; country_of_birth_self also removed)",
}

#: Task names of each group, and the column each task is derived from.
CENSUS_TASK_GROUPS: dict[int | str, dict[str, str]] = {
    1: {"income": "income", "marital": "marital_stat"},
    2: {"education": "education", "marital": "marital_stat"},
    "many": {
        "income": "income",
        "marital": "marital_stat",
        "education": "education",
        "sex": "sex",
        "fulltime": "full_or_part_time_employment_stat",
        "private": "class_of_worker",
        "union": "member_of_a_labor_union",
        "native": "citizenship",
    },
}
#: Further columns a task removes from the inputs (they give its label away).
_ALSO_EXCLUDED: dict[str, tuple[str, ...]] = {"native": ("country_of_birth_self",)}


@dataclass(frozen=True)
class CensusIncome:
    """Census-Income (KDD) arrays for one task group.

    ``x`` of every split is float32 (N, D): one-hot categorical columns (categories
    learned on the training file; a category unseen in training encodes as all zeros,
    and the unknown marker ``'?'`` is a category of its own) and numeric columns
    standardized with the training mean and standard deviation. Targets are float32
    arrays of 0/1, one per task.
    """

    train: Split
    val: Split
    test: Split
    feature_names: tuple[str, ...]
    group: int | str
    numeric_features: tuple[str, ...] = field(default=CENSUS_NUMERIC_COLUMNS)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names of this group, e.g. ``("income", "marital")``."""
        return self.train.tasks

    @property
    def num_features(self) -> int:
        """D, the width of ``x``."""
        return len(self.feature_names)


# --------------------------------------------------------------------------- parsing


@dataclass
class _Table:
    """A parsed file: every column as integer codes into that column's value list."""

    path: Path
    codes: np.ndarray  # (N, 42) int32
    values: list[list[str]]  # per column, the distinct values (whitespace stripped)
    blank_lines: list[int]  # 1-based numbers of skipped empty lines

    def column(self, name: str) -> tuple[np.ndarray, list[str]]:
        j = CENSUS_COLUMNS.index(name)
        return self.codes[:, j], self.values[j]

    def line_of(self, row: int) -> int:
        line = row + 1
        for b in self.blank_lines:
            if b <= line:
                line += 1
        return line

    def first_line_with(self, name: str, code: int) -> int:
        codes, _ = self.column(name)
        return self.line_of(int(np.argmax(codes == code)))


def _read_table(path: Path) -> _Table:
    """Parse one Census-Income file (42 fields separated by ``', '``) into codes."""
    ncol = len(CENSUS_COLUMNS)
    # One dict per column maps each raw field string to its code; a missing key gets the
    # next code (default_factory is the dict's own __len__), so the inner loop runs in C.
    vocabs: list[defaultdict[str, int]] = []
    for _ in range(ncol):
        d: defaultdict[str, int] = defaultdict()
        d.default_factory = d.__len__
        vocabs.append(d)
    flat = array.array("i")
    extend = flat.extend
    blank: list[int] = []
    with open(path, encoding="latin-1", newline=None) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split(",")
            if len(fields) != ncol:
                if not line.strip():
                    blank.append(lineno)
                    continue
                raise ValueError(
                    f"{path}: line {lineno} has {len(fields)} comma-separated columns, "
                    f"expected {ncol} (41 Census-Income attributes and the income label)"
                )
            extend(map(getitem, vocabs, fields))
    if not flat:
        raise ValueError(f"{path}: no data rows")
    codes = np.frombuffer(flat, dtype=np.int32).reshape(-1, ncol).copy()
    del flat
    values: list[list[str]] = []
    for j, vocab in enumerate(vocabs):
        raw = [v.strip() for v in vocab]  # dicts keep insertion order = code order
        uniq = sorted(set(raw))
        if len(uniq) != len(raw):  # values that differed only by whitespace: merge them
            index = {v: i for i, v in enumerate(uniq)}
            remap = np.array([index[v] for v in raw], dtype=np.int32)
            codes[:, j] = remap[codes[:, j]]
            raw = uniq
        values.append(raw)
    return _Table(path=path, codes=codes, values=values, blank_lines=blank)


def _numeric(table: _Table, name: str) -> np.ndarray:
    codes, values = table.column(name)
    lut = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v in ("?", ""):
            lut[i] = np.nan
            continue
        try:
            lut[i] = float(v)
        except ValueError:
            line = table.first_line_with(name, i)
            raise ValueError(
                f"{table.path}: line {line}: column {name!r} should be a number, got {v!r}"
            ) from None
    return lut[codes]


def _income(table: _Table) -> np.ndarray:
    codes, values = table.column("income")
    lut = np.empty(len(values), dtype=np.float32)
    for i, v in enumerate(values):
        if v not in _INCOME_LABELS:
            line = table.first_line_with("income", i)
            raise ValueError(
                f"{table.path}: line {line}: income label should be one of "
                f"{sorted(_INCOME_LABELS)}, got {v!r}"
            )
        lut[i] = _INCOME_LABELS[v]
    return lut[codes]


def _target(table: _Table, task: str) -> np.ndarray:
    if task == "income":
        return _income(table)
    if task == "marital":
        codes, values = table.column("marital_stat")
        lut = np.array([v == "Never married" for v in values], dtype=np.float32)
        return lut[codes]
    if task == "education":
        codes, values = table.column("education")
        lut = np.array([v in COLLEGE_DEGREES for v in values], dtype=np.float32)
        return lut[codes]
    if task in _INDICATORS:
        column, positive = _INDICATORS[task]
        codes, values = table.column(column)
        lut = np.array([positive(v) for v in values], dtype=np.float32)
        return lut[codes]
    if task == "union":
        codes, values = table.column("member_of_a_labor_union")
        lut = np.array(
            [1.0 if v == "Yes" else 0.0 if v == "No" else np.nan for v in values],
            dtype=np.float32,
        )
        return lut[codes]
    raise AssertionError(task)


#: The ``"many"`` group's plain indicator tasks: (column, value -> is positive).
_INDICATORS = {
    "sex": ("sex", lambda v: v == "Female"),
    "fulltime": ("full_or_part_time_employment_stat", lambda v: v == "Full-time schedules"),
    "private": ("class_of_worker", lambda v: v == "Private"),
    "native": ("citizenship", lambda v: v.startswith("Native")),
}


# ------------------------------------------------------------------------ encoding


@dataclass
class _Encoded:
    """Features before one-hot expansion: compact enough to cache."""

    numeric: np.ndarray  # (N, n_numeric) float32, standardized
    categories: np.ndarray  # (N, n_categorical) int16/int32 category index, -1 if unseen
    targets: dict[str, np.ndarray]


def _feature_columns(group: int | str) -> tuple[list[str], list[str]]:
    excluded = set(_NEVER_FEATURES) | set(CENSUS_TASK_GROUPS[group].values())
    for task in CENSUS_TASK_GROUPS[group]:
        excluded.update(_ALSO_EXCLUDED.get(task, ()))
    numeric = [c for c in CENSUS_NUMERIC_COLUMNS if c not in excluded]
    categorical = [
        c for c in CENSUS_COLUMNS if c not in excluded and c not in CENSUS_NUMERIC_COLUMNS
    ]
    return numeric, categorical


def _encode(
    train: _Table, test: _Table, group: int | str
) -> tuple[_Encoded, _Encoded, list[str], list[list[str]]]:
    numeric_cols, categorical_cols = _feature_columns(group)
    tasks = list(CENSUS_TASK_GROUPS[group])

    num_train = np.stack([_numeric(train, c) for c in numeric_cols], axis=1)
    num_test = np.stack([_numeric(test, c) for c in numeric_cols], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column
        mean = np.nanmean(num_train, axis=0)
        std = np.nanstd(num_train, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)

    def standardize(a: np.ndarray) -> np.ndarray:
        z = (a - mean) / std
        return np.nan_to_num(z, nan=0.0).astype(np.float32)  # missing -> the train mean

    cats_train, cats_test, categories = [], [], []
    for c in categorical_cols:
        codes_tr, values_tr = train.column(c)
        present = np.unique(codes_tr)
        cats = sorted(values_tr[i] for i in present)
        index = {v: i for i, v in enumerate(cats)}
        lut_tr = np.array([index.get(v, -1) for v in values_tr], dtype=np.int32)
        codes_te, values_te = test.column(c)
        lut_te = np.array([index.get(v, -1) for v in values_te], dtype=np.int32)
        cats_train.append(lut_tr[codes_tr])
        cats_test.append(lut_te[codes_te])
        categories.append(cats)

    widest = max((len(c) for c in categories), default=0)
    index_dtype = np.int16 if widest < 2**15 else np.int32

    def stack(cols: list[np.ndarray], n: int) -> np.ndarray:
        if not cols:
            return np.zeros((n, 0), dtype=index_dtype)
        return np.stack(cols, axis=1).astype(index_dtype)

    enc_train = _Encoded(
        numeric=standardize(num_train),
        categories=stack(cats_train, len(train.codes)),
        targets={t: _target(train, t) for t in tasks},
    )
    enc_test = _Encoded(
        numeric=standardize(num_test),
        categories=stack(cats_test, len(test.codes)),
        targets={t: _target(test, t) for t in tasks},
    )
    names = list(numeric_cols)
    for c, cats in zip(categorical_cols, categories):
        names.extend(f"{c}={v}" for v in cats)
    return enc_train, enc_test, names, categories


def _expand(enc: _Encoded, sizes: list[int], rows: np.ndarray | None = None) -> Split:
    """One-hot expand the categorical indices (optionally of a subset of rows)."""
    numeric = enc.numeric if rows is None else enc.numeric[rows]
    cats = enc.categories if rows is None else enc.categories[rows]
    n, n_num = numeric.shape
    width = n_num + int(sum(sizes))
    x = np.zeros((n, width), dtype=np.float32)
    x[:, :n_num] = numeric
    flat = x.reshape(-1)
    base = np.arange(n, dtype=np.int64) * width + n_num
    offset = 0
    for j, size in enumerate(sizes):
        c = cats[:, j]
        seen = c >= 0  # -1: a category absent from the training file -> all zeros
        flat[(base + offset + c)[seen]] = 1.0
        offset += size
    targets = {t: (y if rows is None else y[rows]) for t, y in enc.targets.items()}
    return Split(x=x, targets=targets)


# ----------------------------------------------------------------------------- API


def load_census_income(
    data_dir: str | os.PathLike[str] | None = None, group: int | str = 1, *, cache: bool = True
) -> CensusIncome:
    """Load Census-Income (KDD) for MMoE task group 1 or 2 as float32 arrays.

    Reads ``<data_dir>/census-income/census_income_1994_1995_{train,test}.csv``
    (``polytask data get census-income`` downloads them). Group 1's tasks are
    ``income`` (> $50K) and ``marital`` (never married); group 2's are ``education``
    (Bachelor's degree or higher) and ``marital``. The columns a task is derived from,
    the income label and the sampling weight ``instance_weight`` are not features.
    The test file is shuffled with a fixed seed and split in half into ``val`` and
    ``test``. With ``cache=True`` the encoded arrays are stored next to the raw files
    (``census_income_group{group}.npz``) and reused while the raw files are unchanged.
    ``group="many"`` gives the eight tasks of :data:`CENSUS_MANY_TASKS` (``union`` NaN
    where the record was not asked).
    """
    if group not in CENSUS_TASK_GROUPS:
        raise ValueError(f"group must be one of {list(CENSUS_TASK_GROUPS)}, got {group!r}")
    root = resolve_data_dir(data_dir)
    folder = root / SUBDIR
    paths = [folder / TRAIN_FILE, folder / TEST_FILE]
    for p in paths:
        if not p.is_file():
            raise DatasetNotFoundError(
                "Census-Income (KDD)", p, fetch_name=FETCH_NAME, data_dir=root
            )
    sig = _cache.signature(paths, f"census-v{_CACHE_VERSION}", f"group{group}")
    cache_path = folder / f"census_income_group{group}.npz"
    arrays = _cache.load(cache_path, sig) if cache else None
    if arrays is None:
        arrays = _build_arrays(paths[0], paths[1], group)
        if cache:
            _cache.save(cache_path, {"signature": np.array(sig), **arrays})
    return _from_arrays(arrays, group)


def _build_arrays(
    train_path: Path, test_path: Path, group: int | str
) -> dict[str, np.ndarray]:
    train, test = _read_table(train_path), _read_table(test_path)
    enc_tr, enc_te, names, categories = _encode(train, test, group)
    arrays: dict[str, np.ndarray] = {
        "feature_names": np.array(names),
        "category_sizes": np.array([len(c) for c in categories], dtype=np.int64),
        "train_numeric": enc_tr.numeric,
        "train_categories": enc_tr.categories,
        "test_numeric": enc_te.numeric,
        "test_categories": enc_te.categories,
    }
    for t in CENSUS_TASK_GROUPS[group]:
        arrays[f"train_target_{t}"] = enc_tr.targets[t]
        arrays[f"test_target_{t}"] = enc_te.targets[t]
    return arrays


def _from_arrays(arrays: dict[str, np.ndarray], group: int | str) -> CensusIncome:
    tasks = list(CENSUS_TASK_GROUPS[group])
    sizes = [int(s) for s in arrays["category_sizes"]]

    def encoded(split: str) -> _Encoded:
        return _Encoded(
            numeric=arrays[f"{split}_numeric"],
            categories=arrays[f"{split}_categories"],
            targets={t: arrays[f"{split}_target_{t}"] for t in tasks},
        )

    enc_tr, enc_te = encoded("train"), encoded("test")
    n_test = len(enc_te.numeric)
    perm = np.random.default_rng(VAL_TEST_SEED).permutation(n_test)
    half = n_test // 2
    numeric_cols, _ = _feature_columns(group)
    return CensusIncome(
        train=_expand(enc_tr, sizes),
        val=_expand(enc_te, sizes, perm[:half]),
        test=_expand(enc_te, sizes, perm[half:]),
        feature_names=tuple(str(s) for s in arrays["feature_names"]),
        group=group,
        numeric_features=tuple(numeric_cols),
    )
