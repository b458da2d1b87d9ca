"""The Affinity table: files, indexing, errors."""

import numpy as np
import pytest

from polytask.errors import PolytaskError
from polytask.relations import Affinity


def _table():
    values = np.array([[1.0, 0.25, -0.5], [0.125, 1.0, 0.3], [0.0, -1e-9, 1.0]])
    return Affinity(["a", "b", "c"], values, "tag", steps=7, every=10, lr=0.1,
                    history=[values, values * 2], group_values={("a", "b"): {"c": 0.5}})


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_round_trip(tmp_path, suffix):
    table = _table()
    loaded = Affinity.load(table.save(tmp_path / f"aff{suffix}"))
    np.testing.assert_array_equal(loaded.values, table.values)
    assert loaded.tasks == table.tasks
    if suffix == ".json":
        assert loaded.steps == 7 and loaded.lr == 0.1 and len(loaded.history) == 2
        assert loaded.group_values == {("a", "b"): {"c": 0.5}}


def test_indexing_is_recipient_then_source():
    table = _table()
    assert table["a", "b"] == 0.25
    assert table.as_dict()["b"]["a"] == 0.125
    assert table.subset(["c", "a"]).values[0, 1] == 0.0


def test_bad_tables(tmp_path):
    with pytest.raises(PolytaskError, match=r"\['a', 'b'\]"):
        Affinity(["a", "b"], [[0.0, np.inf], [0.0, 0.0]])
    with pytest.raises(PolytaskError, match="shape"):
        Affinity(["a", "b"], np.zeros((3, 3)))
    bad = tmp_path / "bad.csv"
    bad.write_text("recipient\\source,a,b\na,1,nan\nb,0,1\n")
    with pytest.raises(PolytaskError, match="non-finite"):
        Affinity.load(bad)
    with pytest.raises(PolytaskError, match="lacks sources"):
        Affinity.from_dict({"a": {"a": 1.0}, "b": {"a": 1.0, "b": 1.0}})
