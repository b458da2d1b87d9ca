"""Census-Income (KDD) as in the MMoE paper (Ma et al., KDD 2018).

Task group 1: ``income`` (> $50K) and ``marital`` (never married); group 2:
``education`` (at least a Bachelor's degree) and ``marital``. 199,523 training rows;
the 99,762 test rows are split in half into validation and test, as in the paper.
AUC is the reported metric. Backbone: an MLP (hidden 128, 64), the shared bottom.

``census-income-many`` is polytask's own construction on the same files and split: the
eight binary tasks of :data:`polytask.data.CENSUS_MANY_TASKS` (income, marital,
education, sex, full-time, private sector, union membership — labelled only where the
survey asked, about 10% of records — and US-native), every task's source column removed
from the inputs. No published numbers exist for it.
"""

from __future__ import annotations

from pathlib import Path

from ..data import CENSUS_TASK_GROUPS, load_census_income
from ..models import Backbone
from ..tasks import Binary, Task
from .base import Benchmark, BenchmarkData, register
from .common import MLP, mlp_stages, to_tensors

HIDDEN = (128, 64)


def _tasks(names: tuple[str, ...]):
    def build() -> dict[str, Task]:
        return {name: Binary(name) for name in names}

    return build


def _loader(group: int | str):
    def load(data_dir: Path | None, seed: int) -> BenchmarkData:
        return to_tensors(load_census_income(data_dir, group=group))

    return load


def _backbone(data: BenchmarkData) -> Backbone:
    d = data.train.inputs.shape[1]
    return Backbone(
        make_encoder=lambda: MLP(d, HIDDEN),
        out_features=HIDDEN[-1],
        make_stages=lambda: mlp_stages(d, HIDDEN),
        stage_channels=HIDDEN,
        input_shape=(d,),
    )


def _benchmark(name: str, group: int, tasks: tuple[str, str]) -> Benchmark:
    return Benchmark(
        name=name,
        description=f"UCI Census-Income (KDD), MMoE task group {group}: "
        f"{' and '.join(tasks)} (Ma et al., KDD 2018)",
        tasks=_tasks(tasks),
        load=_loader(group),
        backbone=_backbone,
        report={t: ("auc",) for t in tasks},
        epochs=3,
        batch_size=1024,
        lr=1e-3,
        fetch_name="census-income",
    )


register("census-income")(lambda: _benchmark("census-income", 1, ("income", "marital")))
register("census-income-g2")(
    lambda: _benchmark("census-income-g2", 2, ("education", "marital"))
)
register("census-income-many")(
    lambda: Benchmark(
        name="census-income-many",
        description="UCI Census-Income (KDD), eight binary targets derived from its columns "
        "(polytask's construction; data of Ma et al., KDD 2018)",
        tasks=_tasks(tuple(CENSUS_TASK_GROUPS["many"])),
        load=_loader("many"),
        backbone=_backbone,
        report={t: ("auc",) for t in CENSUS_TASK_GROUPS["many"]},
        epochs=3,
        batch_size=1024,
        lr=1e-3,
        fetch_name="census-income-many",
    )
)
