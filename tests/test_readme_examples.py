"""The README's code examples run as written (with small synthetic data), the plain
loop with every registered method."""

import re
import warnings
from pathlib import Path

import pytest
import torch

import polytask as pt
from polytask.training import MultiTaskDataset, batch_loader

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def readme_block(heading: str, index: int = 0) -> str:
    """The ``index``-th python block of the README section starting at ``heading``."""
    section = README[README.index(heading):]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)[index]


def synthetic(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 64, generator=g)
    y = {
        "click": (x[:, 0] > 0).float(),
        "conversion": (x[:, 1] > 0).float(),
        "dwell_time": x[:, 2].clone(),
    }
    return x, y


PLAIN_LOOP = readme_block("## In your own loop", 0)
TRAINER = readme_block("## In your own loop", 1)
METHODS = [m for m in pt.balancing.available()  # regularized: a wrapper, below; pmtl: needs rays
           if m != "regularized"
           and "settings" not in getattr(pt.balancing.method_class(m), "requires", ())]


def run_plain_loop(method: str) -> dict:
    x, y = synthetic()
    torch.manual_seed(0)
    namespace = {"loader": batch_loader(MultiTaskDataset(x, y), batch_size=16, shuffle=True)}
    code = PLAIN_LOOP.replace('get("pcgrad")', f'get("{method}")').replace("print(", "(")
    assert f'get("{method}")' in code
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("method", METHODS)
def test_plain_loop_example_runs_every_method(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no protocol warning: it is followed
        ns = run_plain_loop(method)
    assert set(ns["result"].weights) == {"click", "conversion", "dwell_time"}
    model, balancer = ns["model"], ns["balancer"]
    assert all(p.grad is not None for p in model.shared_parameters())
    for p in balancer.extra_parameters():  # learned weights left their start
        assert p.grad is not None or not torch.equal(p, torch.zeros_like(p))


def test_plain_loop_dwa_moves_off_equal_weighting():
    ns = run_plain_loop("dwa")  # 3 epochs: the third uses the ratio of epochs 1 and 2
    assert ns["result"].weights != {"click": 1.0, "conversion": 1.0, "dwell_time": 1.0}


def test_plain_loop_uw_steps_its_log_variances():
    ns = run_plain_loop("uw")
    assert not torch.equal(ns["balancer"].log_vars.detach(), torch.zeros(3))


def test_trainer_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = synthetic()
    ns = run_plain_loop("ew")  # gives model and tasks, as the README's first block
    ns.update(x_train=x, y_train=y, x_val=x, y_val=y)
    code = TRAINER.replace("epochs=10", "epochs=2").replace("print(", "(")
    code = code.replace('seed=0)', 'seed=0, progress=False)')
    exec(compile(code, "README.md", "exec"), ns)
    metrics = ns["trainer"].evaluate(ns["val"])
    assert {"auc", "loss"} <= set(metrics["click"]) and "mae" in metrics["dwell_time"]
    assert (tmp_path / "runs" / "my-run" / "best.pt").exists()
