"""Selectors: the published selections reproduced, exactness against brute force, errors."""

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from polytask.errors import PolytaskError
from polytask.relations import (
    Affinity,
    GroupEntry,
    GroupTable,
    evaluate_selection,
    grouping_spec,
    partition_score,
    select,
    select_beam,
    select_from_table,
    select_tag,
    tag_group_scores,
)

DATA = Path(__file__).parent / "data"
TASKONOMY = ["ss", "depth", "normal", "key", "edge"]


def _notebook(name):
    return Affinity.from_dict(json.loads((DATA / "tag_notebook_affinities.json").read_text())[name])


def _models(grouping):
    return sorted(
        "".join("1" if t in g else "0" for t in TASKONOMY) + f":{c:g}"
        for g, c in zip(grouping.groups, grouping.costs)
    )


# Standley et al.'s C++ branch and bound (network_selection/main.cpp) on these files:
# (val file, test file, hoa, budget, test total, networks as task masks:cost)
STANDLEY = [
    ("standley_results", False, 1.0, 0.50278, ["11111:1"]),
    ("standley_results", False, 1.5, 0.46132, ["01111:1", "10000:0.5"]),
    ("standley_results", False, 2.0, 0.45224, ["00111:1", "11100:1"]),
    ("standley_results", False, 3.5, 0.43932, ["00100:0.5", "00111:1", "01110:1", "10110:1"]),
    ("standley_results", False, 5.0, 0.43481,
     ["00010:1", "00100:1", "00111:1", "01110:1", "10110:1"]),
    ("standley_results", True, 2.0, 0.45474, ["01111:1", "10100:1"]),
    ("standley_results", True, 3.0, 0.44875, ["00001:1", "01110:1", "10100:1"]),
    ("standley_results", True, 4.5, 0.44552,
     ["00001:1", "00010:0.5", "00100:1", "01000:1", "10100:1"]),
    ("standley_results_alt", False, 3.0, 0.669696, ["01010:1", "01111:1", "10100:1"]),
    ("standley_results_alt", True, 5.0, 0.670496, ["01001:1", "01010:1", "01100:1", "10100:1"]),
]


@pytest.mark.parametrize(("stem", "hoa", "budget", "total", "models"), STANDLEY)
def test_standley_selection_matches_the_authors_code(stem, hoa, budget, total, models):
    val = GroupTable.read_standley(DATA / f"{stem}.txt", TASKONOMY)
    test = GroupTable.read_standley(DATA / f"{stem}_test.txt", TASKONOMY)
    grouping = select_from_table(val, budget=budget, hoa=hoa)
    assert _models(grouping) == models
    assert evaluate_selection(grouping, test) == pytest.approx(total, abs=5e-6)
    assert grouping.cost <= budget


def test_standley_tie_gives_the_same_total():
    # the authors' code and polytask pick different networks of equal validation total
    val = GroupTable.read_standley(DATA / "standley_results_alt.txt", TASKONOMY)
    test = GroupTable.read_standley(DATA / "standley_results_alt_test.txt", TASKONOMY)
    grouping = select_from_table(val, budget=3.5, hoa=True)
    assert evaluate_selection(grouping, test) == pytest.approx(0.671867, abs=5e-6)


def test_standley_file_format():
    val = GroupTable.read_standley(DATA / "standley_results.txt", TASKONOMY)
    assert len(val) == 31 + 5  # every subset at cost 1, five half-size singles
    assert val.get(("ss",), 0.5).scores["ss"] == 0.08021
    assert val.get(("ss", "depth", "normal", "key", "edge")).scores["edge"] == 0.04453


def test_hoa_averages_the_pairs():
    val = GroupTable.read_standley(DATA / "standley_results.txt", TASKONOMY)
    hoa = val.hoa()
    triple = hoa.get(("ss", "depth", "normal"))
    pairs = [val.get(("ss", x)).scores["ss"] for x in ("depth", "normal")]
    assert triple.scores["ss"] == pytest.approx(np.mean(pairs))
    assert hoa.get(("ss", "depth")).scores == val.get(("ss", "depth")).scores


# The TAG notebook's select_groups on its published affinities (run as published).
TAG = [
    ("taskonomy", 2, [("ss_l", "depth_l", "norm_l"), ("key_l", "edge2d_l")], 0.32169580323945957),
    ("taskonomy", 3, [("ss_l", "depth_l"), ("depth_l", "norm_l"), ("key_l", "edge2d_l")],
     0.34867039830237195),
    ("celeba", 1, [tuple(_notebook("celeba").tasks)], -106.90545185750494),
    ("celeba", 2, [("5_o_Clock_Shadow", "No_Beard"),
                   ("Black_Hair", "Blond_Hair", "Brown_Hair", "Goatee", "Mustache", "No_Beard",
                    "Rosy_Cheeks", "Wearing_Hat")], -99.44181870393945),
    ("celeba", 3, [("5_o_Clock_Shadow", "No_Beard"), ("Black_Hair", "Brown_Hair"),
                   ("Black_Hair", "Blond_Hair", "Goatee", "Mustache", "No_Beard", "Rosy_Cheeks",
                    "Wearing_Hat")], -92.43842928623529),
]


@pytest.mark.parametrize(("name", "k", "groups", "value"), TAG)
def test_tag_selection_matches_the_notebook(name, k, groups, value):
    grouping = select_tag(_notebook(name), k)
    assert sorted(grouping.groups) == sorted(groups)
    assert grouping.predicted == pytest.approx(value, rel=1e-12)


def test_tag_extra_groups_of_the_notebook_serve_nothing():
    # with k=4 the notebook also reports ss|depth|norm, which serves no task
    grouping = select_tag(_notebook("taskonomy"), 4)
    assert grouping.predicted == pytest.approx(0.34867039830237195, rel=1e-12)
    assert len(grouping.groups) == 3


def _brute_force(affinity, k):
    tasks = affinity.tasks
    subsets = [c for r in range(1, len(tasks) + 1) for c in itertools.combinations(tasks, r)]
    scores = {g: tag_group_scores(affinity, g) for g in subsets}
    best = -np.inf
    for m in range(1, k + 1):
        for combo in itertools.combinations(subsets, m):
            per = {}
            for g in combo:
                for t, v in scores[g].items():
                    per[t] = max(per.get(t, -np.inf), v)
            if len(per) == len(tasks):
                best = max(best, np.mean(list(per.values())))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_tag_selection_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    tasks = [f"t{i}" for i in range(5)]
    affinity = Affinity(tasks, rng.normal(size=(5, 5)))
    for k in (1, 2, 3):
        assert select_tag(affinity, k).predicted == pytest.approx(_brute_force(affinity, k))


def test_exact_table_selection_equals_brute_force():
    rng = random.Random(3)
    tasks = ["a", "b", "c", "d"]
    entries = []
    for r in range(1, 5):
        for g in itertools.combinations(tasks, r):
            entries.append(GroupEntry(g, {t: rng.uniform(0.5, 1.5) for t in g}, 1.0))
    entries += [GroupEntry((t,), {t: rng.uniform(0.8, 2.0)}, 0.5) for t in tasks]
    table = GroupTable(tasks, entries)
    for budget in (1.0, 1.5, 2.0, 2.5, 3.0):
        best = np.inf
        for m in range(1, 6):
            for combo in itertools.combinations(entries, m):
                if sum(e.cost for e in combo) > budget:
                    continue
                per = {}
                for e in combo:
                    for t, v in e.scores.items():
                        per[t] = min(per.get(t, np.inf), v)
                if len(per) == 4:
                    best = min(best, sum(per.values()))
        got = select_from_table(table, budget=budget)
        assert got.predicted == pytest.approx(best)
        assert evaluate_selection(got, table) == pytest.approx(best)


def test_beam_finds_the_best_partition_on_small_problems():
    rng = np.random.default_rng(4)
    tasks = [f"t{i}" for i in range(6)]
    affinity = Affinity(tasks, rng.normal(size=(6, 6)))

    def partitions(items, k):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for p in partitions(rest, k):
            for i in range(len(p)):
                yield p[:i] + [[first] + p[i]] + p[i + 1:]
            if len(p) < k:
                yield [[first]] + p

    for k in (2, 3):
        best = max(partition_score(affinity, p) for p in partitions(tasks, k))
        got = select_beam(affinity, k, width=200)
        assert got.is_partition
        assert got.predicted == pytest.approx(best)


def test_select_dispatch_and_partition_spec():
    affinity = _notebook("taskonomy")
    grouping = select(affinity, groups=2)
    assert grouping.method == "tag"
    spec = grouping_spec(grouping, affinity.tasks, num_stages=2, branch_at=1)
    assert spec[0] == (tuple(affinity.tasks),)
    assert sorted(spec[1]) == sorted(grouping.groups)


def test_bad_input_is_named():
    affinity = _notebook("taskonomy")
    with pytest.raises(PolytaskError, match="cannot exceed"):
        select_tag(affinity, 6)
    with pytest.raises(PolytaskError, match="non-finite"):
        Affinity(["a", "b"], [[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(PolytaskError, match="unknown task 'x'"):
        affinity["x", "ss_l"]
    val = GroupTable.read_standley(DATA / "standley_results.txt", TASKONOMY)
    with pytest.raises(PolytaskError, match="budget 0.4"):
        select_from_table(val, budget=0.4)
    no_full = GroupTable(["a", "b"], [GroupEntry(("a",), {"a": 1.0}, 1.0),
                                      GroupEntry(("b",), {"b": 1.0}, 1.0)])
    with pytest.raises(PolytaskError, match="within budget 1"):
        select_from_table(no_full, budget=1.0)
    with pytest.raises(PolytaskError, match="leaves out task"):
        grouping_spec([("ss_l", "depth_l")], affinity.tasks, 2, 1)
    with pytest.raises(PolytaskError, match="disjoint"):
        grouping_spec(select_tag(affinity, 3), affinity.tasks, 2, 1)
