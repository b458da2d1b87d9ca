"""The README's Lightning example runs as written (one CPU process instead of two)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("lightning")

from _setup import TASKS, loader, model  # noqa: E402

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_lightning_example_runs(tmp_path, monkeypatch):
    section = README[README.index("### PyTorch Lightning and accelerate"):]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    two = 'devices=2, strategy="ddp"'
    assert two in code
    code = code.replace(two, 'devices=1, strategy="auto", enable_progress_bar=False')
    code = code.replace("max_epochs=3", "max_epochs=1")
    monkeypatch.chdir(tmp_path)  # Lightning's logs and checkpoints go here
    namespace = {"model": model(), "tasks": TASKS, "train": loader(), "val": loader()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        exec(compile(code, "README.md", "exec"), namespace)
    logged = namespace["trainer"].callback_metrics
    assert {"train/loss/r", "train/weight/b", "val/r/mae", "val/loss"} <= set(logged)
