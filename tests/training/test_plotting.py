"""polytask plot: a PNG of the per-task losses, weights and metrics of a run."""

import torch
from torch import nn

from polytask import HardSharing
from polytask.cli import main
from polytask.errors import PolytaskError
from polytask.tasks import Binary, Regression
from polytask.training import MultiTaskDataset, Trainer, batch_loader
from polytask.training.plotting import load_run, moving_average, plot_run

TASKS = [Regression("r"), Binary("b")]


def test_plot_from_trainer_logs(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    ds = MultiTaskDataset(x, {"r": x[:, 0], "b": (x[:, 1] > 0).float()})
    model = HardSharing(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), TASKS, encoder_out_features=8)
    t = Trainer(model, TASKS, "rlw", lambda gr: torch.optim.Adam(gr, lr=1e-2),
                log_dir=tmp_path, progress=False, seed=0)
    t.fit(batch_loader(ds, 16, shuffle=True), epochs=2, val_loader=batch_loader(ds, 64))
    steps, epochs = load_run(tmp_path)
    assert len(steps) == 8 and {"weight/r", "weight/b"} <= set(steps[0])
    path = plot_run(tmp_path)
    assert path == tmp_path / "training.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "sub" / "p.png"
    assert main(["plot", str(tmp_path), "--out", str(out), "--smooth", "3"]) == 0
    assert out.stat().st_size > 1000


def test_plot_errors_name_the_path(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    try:
        plot_run(tmp_path)
    except PolytaskError as error:
        assert "steps.csv" in str(error)
    else:
        raise AssertionError("expected an error")


def test_moving_average():
    assert moving_average([1.0, 3.0, 5.0], 2) == [1.0, 2.0, 4.0]
