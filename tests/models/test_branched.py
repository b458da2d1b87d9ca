"""Branched: one group everywhere is hard sharing; spec validation; the split."""

import pytest
import torch
from _arch_helpers import check_split, mlp_stages, tasks3
from torch import nn

from polytask.errors import PolytaskError
from polytask.models import Branched, HardSharing, spec_from_groups

X = torch.randn(4, 6)
ALL = ("r", "b", "m")


def test_every_task_in_one_group_equals_hard_sharing():
    torch.manual_seed(0)
    branched = Branched(mlp_stages, tasks3(), [[ALL]] * 3, out_features=8)
    hard = HardSharing(nn.Sequential(*mlp_stages()), tasks3(), encoder_out_features=8)
    for i in range(3):
        hard.encoder[i].load_state_dict(branched.nodes[f"{i}_0"].state_dict())
    hard.heads.load_state_dict(branched.heads.state_dict())
    a, b = branched(X), hard(X)
    for name in ALL:
        assert torch.allclose(a[name], b[name])
    assert torch.allclose(branched.shared_representation, hard.shared_representation)
    count = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
    assert count(branched.shared_parameters()) == count(hard.shared_parameters())
    for name in ALL:
        assert count(branched.task_parameters(name)) == count(hard.task_parameters(name))


def test_tree_split_and_representation():
    torch.manual_seed(0)
    spec = [[ALL], [("r", "b"), ("m",)], [("r",), ("b",), ("m",)]]
    model = Branched(mlp_stages, tasks3(), spec, out_features=8)
    check_split(model, X)
    assert model.nodes["1_0"] is not model.nodes["1_1"]
    assert model.shared_representation is None  # stage 1 is shared by a subset only
    late = Branched.from_groups(mlp_stages, tasks3(), [("r",), ("b",), ("m",)], branch_at=2,
                                out_features=8)
    late(X)
    assert late.shared_representation is not None and late.spec[1] == (ALL,)
    check_split(late, X)


def test_independent_networks_share_nothing():
    model = Branched(mlp_stages, tasks3(), [[("r",), ("b",), ("m",)]] * 3, out_features=8)
    assert list(model.shared_parameters()) == []


@pytest.mark.parametrize(
    "spec, message",
    [
        ([[ALL], [ALL]], "stages"),
        ([[ALL], [("r", "b")], [ALL]], "leaves out"),
        ([[ALL], [("r",), ("b", "m")], [("r", "b"), ("m",)]], "merge"),
        ([[ALL], [("r", "x"), ("b", "m")], [ALL]], "unknown"),
        ([[ALL], [("r", "b"), ("b", "m")], [ALL]], "twice"),
    ],
)
def test_bad_specs_are_named(spec, message):
    with pytest.raises(PolytaskError, match=message):
        Branched(mlp_stages, tasks3(), spec, out_features=8)


def test_spec_from_groups():
    spec = spec_from_groups([("r", "b"), ("m",)], ALL, 3, 1)
    assert spec == ((ALL,), (("r", "b"), ("m",)), (("r", "b"), ("m",)))
