"""MultiTaskModule in one process: the same training as polytask's Trainer, parameter
by parameter; the balancer's state in Lightning's checkpoints; logs; bad input."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

L = pytest.importorskip("lightning.pytorch")

import torch  # noqa: E402
from _setup import TASKS, flat, loader, model  # noqa: E402
from torch import nn  # noqa: E402

import polytask as pt  # noqa: E402
from polytask.errors import MissingExtraError, PolytaskError  # noqa: E402
from polytask.lightning import MultiTaskModule, check_strategy  # noqa: E402

# a loss weighting, learned weights (extra parameters), epoch hook, after-step hook,
# Gramian weights (both paths) and coordinate edits of the Jacobian
METHODS = ["ew", "uw", "dwa:update=epoch", "famo", "mgda", "upgrad:path=gramian",
           "nash-mtl", "pcgrad:seed=3", "cagrad"]


def lightning_trainer(**options) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, max_epochs=2, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False)
    return L.Trainer(**{**defaults, **options})


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        yield


@pytest.mark.parametrize("spec", METHODS)
def test_equals_the_polytask_trainer(spec):
    reference = model()
    trainer = pt.Trainer(reference, TASKS, spec, progress=False, device="cpu")
    trainer.fit(loader(), epochs=2)
    net = model()
    module = MultiTaskModule(net, TASKS, spec)
    lightning_trainer().fit(module, loader())
    assert torch.allclose(flat(net), flat(reference), rtol=0, atol=1e-6), spec
    # the balancer's own parameters and state followed the same path (UW, FAMO, DWA)
    for key, value in trainer.balancer.state_dict().items():
        mine = module.balancer.state_dict()[key]
        if isinstance(value, torch.Tensor):
            assert torch.allclose(mine.double(), value.double(), atol=1e-6), (spec, key)


def test_logs_losses_weights_and_validation_metrics():
    module = MultiTaskModule(model(), TASKS, "uw")
    trainer = lightning_trainer(max_epochs=1)
    trainer.fit(module, loader(), loader())
    logged = trainer.callback_metrics
    for name in ("r", "b", "s"):
        assert f"train/loss/{name}" in logged and f"train/weight/{name}" in logged
        assert f"epoch/loss/{name}" in logged and f"val/loss/{name}" in logged
    assert {"val/r/mae", "val/b/accuracy", "val/b/auc", "val/loss"} <= set(logged)
    assert float(logged["val/loss"]) == pytest.approx(
        sum(float(logged[f"val/loss/{n}"]) for n in ("r", "b", "s")))
    predictions = trainer.predict(module, loader())
    assert set(predictions[0]) == {"r", "b", "s"}
    assert bool(((predictions[0]["b"] >= 0) & (predictions[0]["b"] <= 1)).all())


def test_checkpoint_holds_the_balancer_and_resumes_exactly(tmp_path):
    spec = "uw"
    whole = MultiTaskModule(model(), TASKS, spec)
    lightning_trainer(max_epochs=2).fit(whole, loader())
    first = MultiTaskModule(model(), TASKS, spec)
    trainer = lightning_trainer(max_epochs=1)
    trainer.fit(first, loader())
    path = tmp_path / "one.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert "balancer.log_vars" in state or any(k.startswith("balancer.") for k in state)
    resumed = MultiTaskModule(model(seed=1), TASKS, spec)  # other start: all from the file
    lightning_trainer(max_epochs=2).fit(resumed, loader(), ckpt_path=path)
    assert torch.allclose(flat(resumed), flat(whole), rtol=0, atol=1e-7)
    assert int(resumed.balancer.step) == int(whole.balancer.step) == 4


def test_grad_clip_and_schedule_follow_the_trainer():
    reference = model()
    trainer = pt.Trainer(reference, TASKS, "mgda", progress=False, device="cpu",
                         grad_clip=0.05,
                         optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1))
    trainer.fit(loader(), epochs=1)
    net = model()
    module = MultiTaskModule(net, TASKS, "mgda", grad_clip=0.05,
                             optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1),
                             lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1))
    lightning_trainer(max_epochs=1).fit(module, loader())
    assert torch.allclose(flat(net), flat(reference), atol=1e-6)
    assert module.optimizers().optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_bad_input_is_named():
    with pytest.raises(PolytaskError, match="shared_params"):
        MultiTaskModule(nn.Linear(5, 1), TASKS, "ew")
    with pytest.raises(PolytaskError, match="optimizer factory"):
        net = model()
        MultiTaskModule(net, TASKS, "ew", optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(Exception, match="nash-mtll"):
        MultiTaskModule(model(), TASKS, "nash-mtll")
    from lightning.pytorch.strategies import FSDPStrategy

    with pytest.raises(PolytaskError, match="FSDPStrategy.*strategy='ddp'"):
        check_strategy(FSDPStrategy(), pt.balancing.get("upgrad"))


def _fp16_plugin():
    from lightning.pytorch.plugins.precision import MixedPrecision

    # Lightning turns precision="16-mixed" into bf16 on the CPU; a GradScaler by hand
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10))


def test_fp16_grad_scaler_applies_and_a_gradient_method_warns():
    net, reference = model(), model()
    sgd = lambda groups: torch.optim.SGD(groups, lr=0.1)  # noqa: E731 (Adam hides a scale)
    module = MultiTaskModule(net, TASKS, "mgda", optimizer=sgd)
    trainer = lightning_trainer(max_epochs=1, plugins=[_fp16_plugin()])
    with pytest.warns(RuntimeWarning, match="bf16-mixed"):
        trainer.fit(module, loader())
    scaler = trainer.precision_plugin.scaler
    assert scaler.get_scale() > 0
    lightning_trainer(max_epochs=1).fit(MultiTaskModule(reference, TASKS, "mgda", optimizer=sgd),
                                        loader())
    # the scale is put on the combined gradient and taken off before the step
    assert torch.allclose(flat(net), flat(reference), atol=5e-3)
    assert not torch.equal(flat(net), flat(reference))  # fp16 autocast did run


def test_bf16_autocast_runs_close_to_fp32():
    nets = {}
    for precision in ("32-true", "bf16-mixed"):
        nets[precision] = model()
        module = MultiTaskModule(nets[precision], TASKS, "upgrad")
        lightning_trainer(max_epochs=1, precision=precision).fit(module, loader())
    assert torch.allclose(flat(nets["bf16-mixed"]), flat(nets["32-true"]), atol=1e-3)


def test_missing_lightning_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    for name in [m for m in sys.modules if m.startswith("polytask.lightning")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingExtraError, match=r"pip install polytask\[lightning\]"):
        importlib.import_module("polytask.lightning")


def test_core_imports_without_lightning():
    code = "import sys, polytask; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_a_ddp_wrapped_model_is_refused(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(model())
        with pytest.raises(PolytaskError, match="plain model"):
            MultiTaskModule(wrapped, TASKS, "ew")
    finally:
        dist.destroy_process_group()
