"""``polytask affinity`` and ``polytask group``."""

import json
from pathlib import Path

from polytask.cli import main
from polytask.relations import Affinity, GroupTable

DATA = Path(__file__).parents[1] / "relations" / "data"


def test_affinity_writes_table_and_heatmap(tmp_path, capsys):
    out = tmp_path / "aff"
    assert main(["affinity", "multidigits", "--estimator", "cosine", "--every", "5",
                 "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    affinity = Affinity.load(out / "affinity.json")
    assert affinity.tasks == ["left", "right"] and affinity.estimator == "cosine"
    assert affinity["left", "left"] == 1.0 or abs(affinity["left", "left"] - 1.0) < 1e-6
    assert (out / "affinity.png").stat().st_size > 0
    assert "recipient \\ source" in capsys.readouterr().out


def test_group_prints_tag_and_standley_selections(tmp_path, capsys):
    notebook = json.loads((DATA / "tag_notebook_affinities.json").read_text())
    path = Affinity.from_dict(notebook["taskonomy"], "tag").save(tmp_path / "t.csv")
    assert main(["group", str(path), "--groups", "2,3"]) == 0
    out = capsys.readouterr().out
    assert "tag-k2: {ss_l, depth_l, norm_l} + {key_l, edge2d_l}" in out
    table = GroupTable.read_standley(DATA / "standley_results.txt",
                                     ["ss", "depth", "normal", "key", "edge"])
    gpath = table.save(tmp_path / "group_table.json")
    assert main(["group", str(gpath), "--budget", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "{depth, normal, key, edge}" in out and "{ss} [cost 0.5]" in out
    assert main(["group", str(gpath), "--budget", "2", "--method", "hoa"]) == 0
    assert "standley-hoa" in capsys.readouterr().out


def test_group_errors(tmp_path, capsys):
    path = Affinity(["a", "b"], [[1.0, 0.5], [0.2, 1.0]]).save(tmp_path / "a.csv")
    assert main(["group", str(path), "--groups", "3"]) == 2
    assert "cannot exceed the number of tasks" in capsys.readouterr().err
    assert main(["group", str(tmp_path / "none.csv"), "--groups", "1"]) == 2
    assert "no table at" in capsys.readouterr().err
    bad = tmp_path / "nan.csv"
    bad.write_text("recipient\\source,a,b\na,1,nan\nb,0,1\n")
    assert main(["group", str(bad), "--groups", "1"]) == 2
    assert "non-finite value(s) at [recipient, source] ['a', 'b']" in capsys.readouterr().err
    table = GroupTable.read_standley(DATA / "standley_results.txt",
                                     ["ss", "depth", "normal", "key", "edge"])
    gpath = table.save(tmp_path / "g.json")
    assert main(["group", str(gpath), "--budget", "0.25"]) == 2
    assert "budget 0.25" in capsys.readouterr().err
