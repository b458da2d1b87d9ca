"""MTAN: attention masks in (0, 1); masks of one reduce to the shared trunk; the split."""

import torch
from _arch_helpers import check_split, cnn_stages, mlp_stages, tasks3

from polytask.models import MTAN

XI = torch.randn(3, 1, 8, 8)


def test_split_and_shapes_on_conv_and_dense_stages():
    torch.manual_seed(0)
    model = MTAN(cnn_stages, tasks3(), example_input=XI)
    out = model(XI)
    assert out["m"].shape == (3, 3)
    check_split(model, XI)
    assert model.shared_representation is None


def test_masks_of_one_give_each_head_the_shared_trunk_output():
    torch.manual_seed(0)
    model = MTAN(cnn_stages, tasks3(), example_input=XI).eval()
    with torch.no_grad():
        for mods in model.attention.values():
            for att in mods:
                last = att[-2]  # the layer before the sigmoid (BatchNorm or Linear)
                last.weight.zero_()
                last.bias.fill_(50.0)
    out = model(XI)
    trunk = XI
    for stage in model.stages:
        trunk = stage(trunk)
    for name in model.task_names:
        assert torch.allclose(out[name], model.heads[name](trunk), atol=1e-5)


def test_attention_masks_are_soft_and_task_specific():
    torch.manual_seed(0)
    model = MTAN(mlp_stages, tasks3(), example_input=torch.randn(2, 6))
    x = torch.randn(4, 6)
    h = model.stages[0](x)
    a_r, a_b = model.attention["r"][0](h), model.attention["b"][0](h)
    assert bool(((a_r > 0) & (a_r < 1)).all())
    assert not torch.allclose(a_r, a_b)
