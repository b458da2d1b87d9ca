"""Dense tasks: missing pixels add nothing, losses match the protocol, bad input is named."""

import pytest
import torch
import torch.nn.functional as F

from polytask.errors import LabelRangeError, ShapeMismatchError
from polytask.tasks import Depth, PixelBinary, Segmentation, SurfaceNormal, is_dense

torch.manual_seed(0)


def _unit_normals(n, h, w):
    v = torch.randn(n, 3, h, w)
    return v / v.norm(dim=1, keepdim=True)


def _changed_at(output, where):
    out = output.clone()
    out[..., where] += 5.0 * torch.randn_like(out[..., where])
    return out


def test_segmentation_loss_is_cross_entropy_with_ignore_index():
    task = Segmentation("seg", num_classes=4)
    out = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, :2] = -1
    expected = F.cross_entropy(out, target, ignore_index=-1)
    assert torch.allclose(task.loss(out, target), expected)
    # float labels (LibMTL's loaders) are accepted
    assert torch.allclose(task.loss(out, target.float()), expected)


def test_ignored_pixels_change_neither_loss_nor_metrics():
    task = Segmentation("seg", num_classes=3)
    out = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[:, 0] = -1
    other = out.clone()
    other[:, :, 0] = torch.randn(2, 3, 4)
    assert torch.equal(task.loss(out, target), task.loss(other, target))
    m1, m2 = task.metrics(), task.metrics()
    task.update_metrics(m1, out, target)
    task.update_metrics(m2, other, target)
    assert {k: m.compute() for k, m in m1.items()} == {k: m.compute() for k, m in m2.items()}


def test_depth_is_masked_l1_over_nonzero_pixels():
    task = Depth("depth")
    out = torch.rand(2, 1, 4, 5)
    target = torch.rand(2, 1, 4, 5) + 0.5
    target[0, 0, 0] = 0
    valid = target != 0
    expected = (out - target).abs()[valid].mean()
    assert torch.allclose(task.loss(out, target), expected)
    assert torch.allclose(task.loss(out, target[:, 0]), expected)  # (N, H, W) target too
    moved = out.clone()
    moved[0, 0, 0] += 10
    assert torch.equal(task.loss(moved, target), task.loss(out, target))


def test_normal_loss_is_one_minus_cosine_of_the_normalised_prediction():
    task = SurfaceNormal("normal")
    target = _unit_normals(2, 3, 4)
    target[1, :, 0, 0] = 0  # missing
    out = 3.0 * torch.randn(2, 3, 3, 4)
    valid = (target != 0).any(1)
    cos = F.cosine_similarity(out, target, dim=1)
    assert torch.allclose(task.loss(out, target), (1 - cos)[valid].mean(), atol=1e-6)
    assert torch.allclose(task.loss(target * 7.0, target), torch.tensor(0.0), atol=1e-6)


def test_pixel_binary_loss_and_ignore():
    task = PixelBinary("edge", pos_weight=3.0)
    out = torch.randn(2, 1, 3, 3)
    target = (torch.rand(2, 3, 3) > 0.7).float()
    target[0, 0, 0] = -1
    valid = target != -1
    per = F.binary_cross_entropy_with_logits(out[:, 0], target.clamp(min=0), reduction="none",
                                             pos_weight=torch.tensor(3.0))
    assert torch.allclose(task.loss(out, target), per[valid].mean())
    metrics = task.metrics()
    task.update_metrics(metrics, out, target)
    assert 0.0 <= metrics["iou"].compute() <= 1.0


def test_no_valid_pixel_gives_zero_loss_in_the_graph():
    task = Depth("depth")
    out = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = task.loss(out, torch.zeros(2, 1, 3, 3))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(out.grad, torch.zeros_like(out))


def test_masks_per_sample_and_per_pixel():
    task = Segmentation("seg", num_classes=3)
    out = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    only_first = task.loss(out, target, mask=torch.tensor([True, False]))
    assert torch.allclose(only_first, F.cross_entropy(out[:1], target[:1]))
    pixel_mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    pixel_mask[1, 2:] = True
    assert torch.allclose(task.loss(out, target, mask=pixel_mask),
                          F.cross_entropy(out[1:, :, 2:], target[1:, 2:]))
    with pytest.raises(ShapeMismatchError, match="mask"):
        task.loss(out, target, mask=torch.ones(2, 3, dtype=torch.bool))


def test_label_map_of_another_size_is_named():
    task = Segmentation("seg", num_classes=3)
    with pytest.raises(ShapeMismatchError, match=r"'seg'.*\(2, 5, 5\).*\(2, 3, 4, 4\)"):
        task.loss(torch.randn(2, 3, 4, 4), torch.zeros(2, 5, 5, dtype=torch.long))
    with pytest.raises(ShapeMismatchError, match="'seg'.*not a dense prediction"):
        task.loss(torch.randn(2, 3), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ShapeMismatchError, match="'normal'"):
        SurfaceNormal("normal").loss(torch.randn(2, 3, 4, 4), torch.zeros(2, 1, 4, 4))


def test_class_ids_outside_the_range_are_named():
    task = Segmentation("seg", num_classes=3, ignore_index=255)
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    target[0, 0, 0] = 255  # the ignore value: fine
    task.loss(torch.randn(1, 3, 2, 2), target)
    target[0, 1, 1] = 3
    with pytest.raises(LabelRangeError, match="'seg'.*class id 3.*0..2.*255"):
        task.loss(torch.randn(1, 3, 2, 2), target)
    target[0, 1, 1] = -1  # not the ignore value here
    with pytest.raises(LabelRangeError, match="class id -1"):
        task.loss(torch.randn(1, 3, 2, 2), target)
    with pytest.raises(LabelRangeError, match="not a class id"):
        task.loss(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 0.5))


def test_normals_that_are_not_unit_are_named_with_their_pixel():
    task = SurfaceNormal("normal")
    target = _unit_normals(2, 3, 3)
    target[1, :, 2, 1] *= 1.5
    with pytest.raises(LabelRangeError, match=r"'normal'.*sample 1, pixel \(y=2, x=1\).*1.5"):
        task.loss(torch.randn(2, 3, 3, 3), target)
    target[1, :, 2, 1] = 0  # missing instead: fine
    task.loss(torch.randn(2, 3, 3, 3), target)


def test_dense_heads_keep_the_resolution():
    task = Segmentation("seg", num_classes=5)
    assert is_dense(task)
    head = task.build_head(8)
    assert head(torch.randn(2, 8, 6, 7)).shape == (2, 5, 6, 7)
