"""AffinityCallback: the recorder inside the Trainer, without changing the training."""

import pytest
import torch
from torch import nn

from polytask import HardSharing
from polytask.errors import PolytaskError
from polytask.relations import Affinity
from polytask.tasks import Binary, Regression
from polytask.training import AffinityCallback, MultiTaskDataset, Trainer, batch_loader

TASKS = [Regression("r"), Binary("b"), Regression("r2")]


def _data(n=128):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    targets = {"r": 2 * x[:, 0], "b": (x[:, 1] > 0).float(), "r2": -2 * x[:, 0] + x[:, 2]}
    return MultiTaskDataset(x, targets)


def _fit(callbacks, log_dir=None, optimizer="sgd"):
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1))
    model = HardSharing(encoder, TASKS, encoder_out_features=16)

    def make(groups):
        if optimizer == "sgd":
            return torch.optim.SGD(groups, lr=0.05, momentum=0.9)
        return torch.optim.Adam(groups, lr=1e-2)

    trainer = Trainer(model, TASKS, "ew", make, seed=0, progress=False, log_dir=log_dir,
                      callbacks=callbacks, device="cpu")
    trainer.fit(batch_loader(_data(), 32, shuffle=True), epochs=2)
    return trainer


@pytest.mark.parametrize("estimator", ["tag", "cosine"])
def test_training_is_unchanged_and_the_table_is_saved(tmp_path, estimator):
    plain = _fit([])
    callback = AffinityCallback(estimator, every=2)
    recorded = _fit([callback], log_dir=tmp_path)
    for (name, p), q in zip(plain.model.state_dict().items(),
                            recorded.model.state_dict().values()):
        assert torch.equal(p, q), name  # parameters and BatchNorm statistics
    affinity = callback.affinity
    assert affinity.tasks == ["r", "b", "r2"]
    assert affinity.steps == 4 and len(affinity.history) == 2  # 8 steps, every 2
    assert affinity.estimator == estimator
    assert Affinity.load(tmp_path / "affinity.csv").tasks == affinity.tasks
    if estimator == "tag":
        assert affinity.lr == 0.05
        # r and r2 pull the shared trunk in opposite directions (targets ±2 x0)
        assert affinity["r2", "r"] < affinity["r", "r"]


def test_bad_options_fail_at_construction():
    with pytest.raises(PolytaskError, match="unknown affinity estimator"):
        AffinityCallback("gradnorm")
    with pytest.raises(PolytaskError, match="positive"):
        AffinityCallback("tag", every=0)
