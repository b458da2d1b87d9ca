"""Dense metrics against a direct numpy computation, including ignored pixels."""

import numpy as np
import pytest
import torch

from polytask.metrics import (
    ANGLE_BIN_DEGREES,
    DepthAbsError,
    DepthRelError,
    MeanIoU,
    NormalAngleMean,
    NormalAngleMedian,
    NormalWithin,
    PixelAccuracy,
    reduce_metrics,
)
from polytask.tasks import Depth, Segmentation, SurfaceNormal

rng = np.random.default_rng(0)


def _seg_data(n=6, c=5, h=7, w=9):
    logits = rng.normal(size=(n, c, h, w)).astype(np.float32)
    labels = rng.integers(0, c, size=(n, h, w))
    labels[rng.random((n, h, w)) < 0.3] = -1  # ignored pixels
    return logits, labels


def _numpy_seg(logits, labels, c):
    pred = logits.argmax(1)
    valid = labels >= 0
    p, t = pred[valid], labels[valid]
    ious = []
    for k in range(c):
        inter = np.sum((p == k) & (t == k))
        union = np.sum((p == k) | (t == k))
        if union:
            ious.append(inter / union)
    return float(np.mean(ious)), float(np.mean(p == t))


def _feed(task, metrics, outputs, targets, batch):
    for i in range(0, len(outputs), batch):
        task.update_metrics(metrics, torch.as_tensor(outputs[i:i + batch]),
                            torch.as_tensor(targets[i:i + batch]))
    return {k: m.compute() for k, m in metrics.items()}


@pytest.mark.parametrize("batch", [1, 4, 6])
def test_segmentation_metrics_match_numpy_for_any_batching(batch):
    logits, labels = _seg_data()
    task = Segmentation("seg", num_classes=5)
    got = _feed(task, task.metrics(), logits, labels, batch)
    miou, acc = _numpy_seg(logits, labels, 5)
    assert got["miou"] == pytest.approx(miou, abs=1e-12)
    assert got["pixel_accuracy"] == pytest.approx(acc, abs=1e-12)


def test_miou_leaves_out_classes_absent_everywhere():
    m = MeanIoU(4)
    target = torch.tensor([[[0, 1], [1, 0]]])
    pred = target.clone()  # perfect, classes 2 and 3 never appear
    m.update(pred, target)
    assert m.compute() == 1.0


def test_depth_metrics_are_pixel_means_over_the_split_not_batch_means():
    n, h, w = 5, 6, 4
    pred = rng.uniform(0.5, 3, size=(n, 1, h, w)).astype(np.float32)
    gt = rng.uniform(0.5, 3, size=(n, 1, h, w)).astype(np.float32)
    gt[rng.random(gt.shape) < 0.4] = 0  # missing depth
    gt[0] = 0  # one image with no valid pixel at all
    gt[1, 0, 1:] = 0  # and one with very few
    task = Depth("depth")
    got = _feed(task, task.metrics(), pred, gt, 2)
    valid = gt != 0
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    assert got["abs_err"] == pytest.approx(np.abs(pred - gt)[valid].mean(), rel=1e-9)
    assert got["rel_err"] == pytest.approx((np.abs(pred - gt)[valid] / gt[valid]).mean(),
                                           rel=1e-9)
    # the mean of per-batch means differs: the split statistic is what we report
    per_batch = [np.abs(pred[i:i + 2] - gt[i:i + 2])[valid[i:i + 2]].mean()
                 for i in range(0, n, 2) if valid[i:i + 2].any()]
    assert got["abs_err"] != pytest.approx(np.mean(per_batch), rel=1e-6)


def _unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_normal_metrics_match_numpy_including_missing_normals():
    n, h, w = 4, 9, 8
    gt = _unit(rng.normal(size=(n, 3, h, w))).astype(np.float32)
    gt[:, :, rng.random((h, w)) < 0.3] = 0  # missing normals
    pred = (gt + 0.6 * rng.normal(size=gt.shape)).astype(np.float32)  # raw, not unit
    task = SurfaceNormal("normal")
    got = _feed(task, task.metrics(), pred, gt, 3)
    valid = (gt != 0).any(1)
    p = _unit(pred.astype(np.float64))
    cos = np.clip((p * gt).sum(1), -1, 1)[valid]
    ang = np.degrees(np.arccos(cos))
    assert got["angle_mean"] == pytest.approx(ang.mean(), rel=1e-6)
    assert abs(got["angle_median"] - np.median(ang)) <= ANGLE_BIN_DEGREES
    for t in (11.25, 22.5, 30):
        assert got[f"within_{t:g}"] == pytest.approx(np.mean(ang < t), abs=1e-12)


def test_median_of_even_count_is_the_mean_of_the_middle_two():
    m = NormalAngleMedian()
    target = torch.zeros(1, 3, 1, 4)
    target[:, 2] = 1.0
    angles = np.radians([10.0, 20.0, 40.0, 80.0])
    pred = torch.zeros(1, 3, 1, 4)
    pred[0, 0, 0] = torch.tensor(np.sin(angles), dtype=torch.float32)
    pred[0, 2, 0] = torch.tensor(np.cos(angles), dtype=torch.float32)
    m.update(pred, target)
    assert m.compute() == pytest.approx(30.0, abs=ANGLE_BIN_DEGREES)


def test_states_merge_to_the_state_of_one_pass():
    logits, labels = _seg_data()
    whole = {"miou": MeanIoU(5), "acc": PixelAccuracy(5)}
    halves = [{"miou": MeanIoU(5), "acc": PixelAccuracy(5)} for _ in range(2)]
    task = Segmentation("seg", num_classes=5)
    task.update_metrics(whole, torch.as_tensor(logits), torch.as_tensor(labels))
    task.update_metrics(halves[0], torch.as_tensor(logits[:2]), torch.as_tensor(labels[:2]))
    task.update_metrics(halves[1], torch.as_tensor(logits[2:]), torch.as_tensor(labels[2:]))
    for k in whole:
        halves[0][k].merge(halves[1][k])
        assert halves[0][k].compute() == whole[k].compute()
    for cls in (DepthAbsError, DepthRelError, NormalAngleMean, NormalAngleMedian):
        a, b = cls(), cls()
        with pytest.raises(TypeError):
            a.merge(MeanIoU(2))
        a.merge(b)
    NormalWithin(30).merge(NormalWithin(30))


def test_reduce_is_a_sum_over_processes(tmp_path):
    import torch.distributed as dist

    m = {"seg": {"miou": MeanIoU(3)}}
    m["seg"]["miou"].update(torch.tensor([[[0, 1, 2]]]), torch.tensor([[[0, 1, 1]]]))
    before = m["seg"]["miou"].matrix.clone()
    reduce_metrics(m)  # no process group: nothing happens
    assert torch.equal(m["seg"]["miou"].matrix, before)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0,
                            world_size=1)
    try:
        reduce_metrics(m)  # one process: the sum is the state itself
        assert torch.equal(m["seg"]["miou"].matrix, before)
    finally:
        dist.destroy_process_group()
