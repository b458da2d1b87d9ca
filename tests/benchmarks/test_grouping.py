"""Grouping study: ground truth, affinity from one run, the evaluation harness."""

import random

import pytest
import torch

from polytask.benchmarks import (
    Benchmark,
    BenchmarkData,
    BenchmarkRunner,
    GroupingStudy,
    Split,
    format_rows,
    random_partition,
)
from polytask.benchmarks.common import MLP, mlp_stages
from polytask.errors import PolytaskError
from polytask.models import Backbone
from polytask.relations import select_from_table, select_tag
from polytask.tasks import Regression

TASKS = ("a", "a2", "neg", "other")


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    base = x[:, 0] + 0.5 * x[:, 1]
    targets = {"a": base, "a2": base + 0.1 * torch.randn(n, generator=g), "neg": -base,
               "other": torch.sin(2 * x[:, 5])}
    return Split(x, targets)


def _benchmark():
    return Benchmark(
        name="toy-groups",
        description="four regression tasks: two alike, one opposite, one unrelated",
        tasks=lambda: {t: Regression(t) for t in TASKS},
        load=lambda data_dir, seed: BenchmarkData(_split(256, 0), _split(128, 1),
                                                  _split(128, 2)),
        backbone=lambda data: Backbone(make_encoder=lambda: MLP(6, (16,)), out_features=16,
                                       make_stages=lambda: mlp_stages(6, (16,)),
                                       stage_channels=(16,), input_shape=(6,)),
        report={t: ("mae",) for t in TASKS},
        epochs=1, batch_size=64, lr=1e-2,
    )


@pytest.fixture
def study(tmp_path):
    runner = BenchmarkRunner(_benchmark(), out_dir=tmp_path, progress=False, device="cpu",
                             log=lambda line: None)
    return GroupingStudy(runner, log=lambda line: None)


def test_ground_truth_is_cached_and_selectable(study):
    groups = [("a",), ("a2",), ("neg",), ("other",), ("a", "a2"), ("a", "neg"), ("a2", "neg")]
    table = study.ground_truth(groups, seeds=[0])
    assert len(table) == 7
    assert set(table.get(("a", "neg")).info["test_loss"]) == {"a", "neg"}
    again = study.ground_truth(groups, seeds=[0])  # from the cache: identical
    assert again.get(("a", "a2")).scores == table.get(("a", "a2")).scores
    grouping = select_from_table(table, groups=2, hoa=True)
    assert grouping.cost <= 2
    assert table.hoa().has(("a", "a2", "neg"))


def test_affinity_run_and_harness(study):
    affinity, seconds = study.measure_affinity("tag", every=1)
    assert affinity.steps == 4 and seconds > 0
    assert affinity["a2", "a"] > affinity["neg", "a"]  # alike tasks help, opposite hurt
    grouping = select_tag(affinity, 2)
    rows = study.compare({"tag-2": grouping}, seeds=[0], random_groupings=2)
    labels = [r["grouping"] for r in rows]
    assert labels[:3] == ["all-together", "all-separate", "tag-2"]
    assert labels[3].startswith("random (2×, 2 groups)")
    separate = rows[1]
    assert separate["delta_m"][0] == pytest.approx(0.0, abs=1e-9)  # the baselines themselves
    assert "| all-together |" in format_rows(rows)


def test_random_partitions_and_errors(study):
    rng = random.Random(0)
    for k in (1, 2, 4):
        p = random_partition(TASKS, k, rng)
        assert len(p) == k and sorted(t for g in p for t in g) == sorted(TASKS)
    with pytest.raises(PolytaskError, match="leaves out"):
        study.evaluate([("a", "a2")], seed=0)
    with pytest.raises(PolytaskError, match="unknown task"):
        study.train_group(("a", "zz"), seed=0)
