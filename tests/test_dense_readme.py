"""The README's dense-prediction example runs as written (tiny sizes)."""

import torch

from polytask import balancing, models
from polytask.tasks import Depth, Segmentation, SurfaceNormal


def test_dense_readme_example():
    tasks = [Segmentation("seg", num_classes=13), Depth("depth"), SurfaceNormal("normal")]
    model = models.HardSharing(models.SegNet(3, filters=(8, 16), convs=(1, 1)), tasks)
    balancer = balancing.get("ew")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(2, 3, 32, 32)
    normal = torch.nn.functional.normalize(torch.randn(2, 3, 32, 32), dim=1)
    targets = {"seg": torch.randint(-1, 13, (2, 32, 32)), "depth": torch.rand(2, 1, 32, 32),
               "normal": normal}
    out = model(x)
    losses = {t.name: t.loss(out[t.name], targets[t.name]) for t in tasks}
    optimizer.zero_grad()
    balancer.backward(losses, shared_params=model.shared_parameters())
    optimizer.step()
    metrics = {t.name: t.metrics() for t in tasks}
    for t in tasks:
        t.update_metrics(metrics[t.name], out[t.name].detach(), targets[t.name])
    values = {k: {m: v.compute() for m, v in ms.items()} for k, ms in metrics.items()}
    assert set(values["normal"]) == {"angle_mean", "angle_median", "within_11.25",
                                     "within_22.5", "within_30"}
