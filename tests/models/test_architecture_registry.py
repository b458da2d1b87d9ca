"""Every registered architecture builds from a Backbone, runs, and splits its parameters."""

import pytest
import torch
from _arch_helpers import check_split, cnn_stages, mlp_stages, tasks3
from torch import nn

from polytask import models
from polytask.errors import PolytaskError
from polytask.models import Backbone
from polytask.tasks import Binary

# esmm has its own test; segnet and mtan_segnet are built around a SegNet for dense tasks
# (tests/models/test_segnet.py)
ARCHS = [a for a in models.available() if a not in ("esmm", "segnet", "mtan_segnet")]


def mlp_backbone(**kw):
    def encoder():
        enc = nn.Sequential(*mlp_stages())
        enc.out_features = 8
        return enc

    return Backbone(make_encoder=encoder, out_features=8, make_stages=mlp_stages,
                    stage_channels=(8, 8, 8), input_shape=(6,), **kw)


def cnn_backbone():
    return Backbone(make_encoder=lambda: nn.Sequential(*cnn_stages()), out_features=10,
                    make_stages=cnn_stages, stage_channels=(4, 6, 10), input_shape=(1, 8, 8))


@pytest.mark.parametrize("name", ARCHS)
def test_builds_runs_and_splits_on_an_mlp(name):
    torch.manual_seed(0)
    model = models.get(name, tasks=tasks3(), backbone=mlp_backbone())
    x = torch.randn(4, 6)
    assert model(x)["m"].shape == (4, 3)
    check_split(model, x, require_reach=name not in ("adashare",))


@pytest.mark.parametrize("name", ["hard", "cross_stitch", "mtan", "adashare", "branched",
                                  "learning_to_branch", "soft_sharing", "mmoe", "ple", "sluice"])
def test_builds_and_runs_on_a_cnn(name):
    torch.manual_seed(0)
    model = models.get(name, tasks=tasks3(), backbone=cnn_backbone())
    assert model(torch.randn(3, 1, 8, 8))["m"].shape == (3, 3)


def test_esmm_builds_from_a_backbone():
    model = models.get("esmm", tasks=[Binary("ctr"), Binary("ctcvr")], backbone=mlp_backbone())
    assert model(torch.randn(4, 6))["ctcvr"].shape == (4, 1)


def test_stage_architectures_name_what_the_backbone_lacks():
    bare = Backbone(make_encoder=lambda: nn.Linear(6, 8), out_features=8)
    with pytest.raises(PolytaskError, match="make_stages"):
        models.get("cross_stitch", tasks=tasks3(), backbone=bare)
    with pytest.raises(PolytaskError, match="input_shape"):
        models.get("mmoe", tasks=tasks3(), backbone=bare)


@pytest.mark.parametrize("name", ARCHS)
def test_inputs_from_is_honoured_or_rejected(name):
    tasks = [Binary("ctr"), Binary("cvr", inputs_from=("ctr",))]
    try:
        model = models.get(name, tasks=tasks, backbone=mlp_backbone())
    except PolytaskError as error:
        assert "inputs_from" in str(error) and "does not support" in str(error)
        return
    assert model.supports_inputs_from
    out = model(torch.randn(4, 6))
    assert out["cvr"].shape[0] == 4
