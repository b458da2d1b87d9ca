"""The README's Pareto example runs as written (with small synthetic data)."""

import torch
from torch import nn

from polytask import Multiclass, balancing, pareto
from polytask.models import HardSharing
from polytask.training import MultiTaskDataset, batch_loader


def test_readme_pareto_example(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 36, 36, generator=g)
    y = {"left": torch.randint(0, 10, (64,), generator=g),
         "right": torch.randint(0, 10, (64,), generator=g)}
    tasks = {"left": Multiclass("left", num_classes=10),
             "right": Multiclass("right", num_classes=10)}

    def make_model():
        enc = nn.Sequential(nn.Conv2d(1, 4, 5, stride=4), nn.ReLU(), nn.Flatten())
        return HardSharing(enc, tasks, encoder_out_features=4 * 8 * 8)

    loader = batch_loader(MultiTaskDataset(x, y), 32, True)
    test_loader = batch_loader(MultiTaskDataset(x, y), 64, False)

    balancer = balancing.get("tchebycheff", pref=[0.3, 0.7])
    front = pareto.train_conditioned(make_model, tasks, "cosmos", (1, 36, 36), loader, epochs=1)
    result = front.evaluate(test_loader, pareto.uniform_rays(25), split="test")
    assert result.hypervolume([3, 3]) > 0
    assert result.fidelity().shape == (25,)
    assert pareto.plot_fronts([result], tmp_path / "front.png").exists()
    assert balancer.pref == [0.3, 0.7]
