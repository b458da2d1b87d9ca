"""SegNet, MTAN-SegNet and the stage-based architectures on dense tasks."""

import pytest
import torch
from torch import nn

from polytask import models
from polytask.errors import PolytaskError
from polytask.models import Backbone, MTANSegNet, SegNet, StagedDense, segnet_stages
from polytask.tasks import Binary, Depth, Segmentation, SurfaceNormal

F, C = (4, 8, 8), (1, 2, 1)
TASKS = [Segmentation("seg", num_classes=5), Depth("depth"), SurfaceNormal("normal")]


def test_segnet_unpools_to_the_encoders_argmax_positions():
    torch.manual_seed(0)
    net = SegNet(3, F, C).eval()
    seen = []
    net.unpool.register_forward_hook(lambda m, inp, out: seen.append((inp[0], out)))
    x = torch.randn(2, 3, 16, 24)
    feats = net.features(x)
    assert net(x).shape == (2, 4, 16, 24) and net.out_channels == 4
    # the last unpooling (top level) restores the encoder's first block resolution and
    # puts each value at the argmax of its 2x2 window of the encoder's block output
    pooled_in, unpooled = seen[-1]
    p0 = feats["enc_p"][0]
    _, idx = nn.functional.max_pool2d(p0, 2, 2, return_indices=True)
    expected = nn.functional.max_unpool2d(pooled_in, idx, 2, 2, output_size=p0.shape[-2:])
    assert torch.equal(unpooled, expected)
    windows = (unpooled != 0).float().unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2))
    assert windows.max() <= 1


def test_segnet_names_bad_input_sizes():
    with pytest.raises(PolytaskError, match="divisible by 8"):
        SegNet(3, F, C)(torch.randn(1, 3, 12, 16))


def test_mtan_segnet_with_open_attention_is_hard_sharing_on_segnet():
    """The defining property: with every attention mask equal to 1, each task's head
    reads exactly the shared SegNet's output."""
    torch.manual_seed(0)
    model = MTANSegNet(TASKS, 3, F, C).eval()
    for att in [*model.enc_att.values(), *model.dec_att.values()]:
        for g in att:
            bn = g[4]
            nn.init.zeros_(bn.weight)
            nn.init.constant_(bn.bias, 60.0)  # sigmoid(60) == 1 in float32
    x = torch.randn(2, 3, 16, 16)
    shared = model.segnet(x)
    for k, feat in model.task_features(x).items():
        assert torch.allclose(feat, shared), k
    out = model(x)
    assert out["seg"].shape == (2, 5, 16, 16) and out["normal"].shape == (2, 3, 16, 16)


def test_mtan_segnet_parameter_split_and_task_independence():
    model = MTANSegNet(TASKS, 3, F, C)
    shared = {id(p) for p in model.shared_parameters()}
    own = {k: {id(p) for p in model.task_parameters(k)} for k in model.task_names}
    everything = {id(p) for p in model.parameters()}
    assert shared | own["seg"] | own["depth"] | own["normal"] == everything
    assert not (shared & own["seg"]) and not (own["seg"] & own["depth"])
    out = model(torch.randn(2, 3, 16, 16))
    out["seg"].sum().backward()
    assert all(p.grad is None for p in model.task_parameters("depth"))
    with pytest.raises(PolytaskError, match="not dense"):
        MTANSegNet([Binary("b")], 3, F, C)


def _backbone():
    def stages():
        return segnet_stages(3, F, C)

    return Backbone(make_encoder=lambda: StagedDense(stages(), F[0]), out_features=F[0],
                    make_stages=stages, input_shape=(3, 16, 16),
                    options={"filters": F, "convs": C})


@pytest.mark.parametrize("arch", ["hard", "cross_stitch", "mtan", "branched", "segnet",
                                  "mtan_segnet"])
def test_architectures_build_dense_heads_from_the_registry(arch):
    torch.manual_seed(0)
    model = models.get(arch, tasks=TASKS, backbone=_backbone())
    x = torch.randn(2, 3, 16, 16)
    out = model(x)
    assert out["seg"].shape == (2, 5, 16, 16)
    assert out["depth"].shape == (2, 1, 16, 16) and out["normal"].shape == (2, 3, 16, 16)
    target = torch.randint(0, 5, (2, 16, 16))
    TASKS[0].loss(out["seg"], target).backward()
    assert any(p.grad is not None for p in model.shared_parameters())


def test_stage_form_has_the_same_blocks_as_segnet():
    stage_params = sum(p.numel() for s in segnet_stages(3, F, C) for p in s.parameters())
    assert stage_params == sum(p.numel() for p in SegNet(3, F, C).parameters())
    assert StagedDense(segnet_stages(3, F, C), F[0])(torch.randn(1, 3, 16, 16)).shape == (
        1, 4, 16, 16)


def test_deeplab_needs_a_working_torchvision():
    from polytask.models import deeplab

    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(PolytaskError, match="torchvision"):
            deeplab.resnet50_stages()
        return
    stages = deeplab.resnet50_stages()
    head = deeplab.ASPPHead(2048, 3)
    x = torch.randn(2, 3, 64, 64)
    for s in stages:
        x = s(x)
    assert x.shape == (2, 2048, 8, 8)
    assert head.eval()(x).shape == (2, 3, 64, 64)
