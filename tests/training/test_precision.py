"""Trainer precision: bf16 autocast on CPU close to fp32, fp16 with the GradScaler whose
scale the balancer removes, checkpoints of the scaler, bad set-ups."""

import pytest
import torch
from torch import nn

import polytask as pt
from polytask import HardSharing
from polytask.errors import PolytaskError
from polytask.tasks import Binary, Regression
from polytask.training import MultiTaskDataset, Precision, Trainer, batch_loader

TASKS = [Regression("r"), Binary("b"), Regression("s")]


def data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    targets = {"r": 2 * x[:, 0], "b": (x[:, 1] > 0).float(), "s": x[:, 2] - x[:, 3]}
    return MultiTaskDataset(x, targets)


def model(seed=0):
    torch.manual_seed(seed)
    return HardSharing(nn.Sequential(nn.Linear(6, 16), nn.Tanh()), TASKS,
                       encoder_out_features=16)


def trainer(method="ew", precision="32", **kw):
    opt = lambda groups: torch.optim.SGD(groups, lr=0.05)  # noqa: E731
    return Trainer(model(), TASKS, method, opt, device="cpu", seed=0, progress=False,
                   precision=precision, **kw)


def flat(t):
    return torch.cat([p.detach().reshape(-1) for p in t.model.parameters()])


@pytest.mark.parametrize("method", ["ew", "mgda", "nash-mtl", "pcgrad", "upgrad",
                                    "cagrad", "uw", "gradnorm", "mgda:path=representation"])
def test_a_bf16_autocast_run_on_cpu_stays_within_tolerance_of_fp32(method):
    loader = batch_loader(data(), 32)
    runs = {}
    for precision in ("32", "bf16"):
        t = trainer(method, precision)
        t.fit(loader, epochs=2)
        runs[precision] = (flat(t), t.history[-1]["train"])
    a, b = runs["32"][0], runs["bf16"][0]
    start = flat(trainer(method))
    # bf16 has 8 bits of mantissa: the update differs by a few percent at most
    assert (a - b).norm() <= 0.05 * (a - start).norm() + 1e-3, method
    for key, value in runs["32"][1].items():
        if key.startswith("loss/"):
            assert abs(value - runs["bf16"][1][key]) <= 0.05 * abs(value) + 1e-2, (method, key)


@pytest.mark.parametrize(("method", "clip"), [("nash-mtl", None), ("mgda", None), ("ew", None),
                                            ("uw", None), ("ew", 0.05), ("upgrad", 0.05)])
def test_fp16_with_the_scaler_gives_the_fp32_update_when_the_forward_is_exact(method, clip):
    """fp16's whole loss-scaling path (Trainer, GradScaler, balancer) on a float32
    forward (a Precision whose autocast does nothing): the update equals fp32's, so
    the scale is removed everywhere, for Nash-MTL's and MGDA's weights too, and
    gradient clipping sees the unscaled gradients."""

    class ScalerOnly(Precision):
        def forward_context(self):
            return torch.autocast("cpu", enabled=False)

    loader = batch_loader(data(), 32)
    plain = trainer(method, grad_clip=clip)
    plain.fit(loader, epochs=2)
    scaled = trainer(method, ScalerOnly("fp16", "cpu", init_scale=2.0**12), grad_clip=clip)
    scaled.fit(loader, epochs=2)
    assert scaled.precision.scaler.get_scale() == 2.0**12  # never lowered: no skipped step
    assert torch.allclose(flat(plain), flat(scaled), rtol=1e-5, atol=1e-6)
    for a, b in zip(plain.history, scaled.history):
        for key in a["train"]:
            if key.startswith("weight/"):
                assert a["train"][key] == pytest.approx(b["train"][key], rel=1e-5), key


def test_an_fp16_autocast_run_trains_and_its_scaler_state_is_checkpointed(tmp_path):
    loader = batch_loader(data(), 32)
    t = trainer("nash-mtl", "16-mixed", log_dir=tmp_path)
    assert t.precision.name == "fp16" and isinstance(t.precision.scaler, torch.amp.GradScaler)
    t.fit(loader, epochs=2)
    assert torch.isfinite(flat(t)).all()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["precision"]["name"] == "fp16"
    assert state["precision"]["scaler"]["scale"] == t.precision.scaler.get_scale()
    resumed = trainer("nash-mtl", "fp16", log_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / "last.pt")
    assert resumed.precision.scaler.get_scale() == t.precision.scaler.get_scale()


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_lowered():
    t = trainer("nash-mtl", Precision("fp16", "cpu", init_scale=2.0**120))
    before = flat(t)
    t.fit(batch_loader(data(32), 32), epochs=1)  # one step: its gradients overflow
    assert torch.equal(before, flat(t))
    assert t.precision.scaler.get_scale() < 2.0**120


def test_precision_spellings_and_bad_set_ups():
    for name, canonical in [("bf16-mixed", "bf16"), ("16", "fp16"), ("32-true", "32")]:
        assert Precision(name).name == canonical
    with pytest.raises(PolytaskError, match="unknown precision 'fp8'.*bf16"):
        trainer(precision="fp8")
    half = model().half()
    with pytest.raises(PolytaskError, match="keep the model in float32.*model.float"):
        Trainer(half, TASKS, "ew", device="cpu", precision="fp16", progress=False)

    class Custom(pt.balancing.LossWeighting):
        supports_grad_scale = False

        def weights(self, losses, ctx):
            return torch.ones_like(losses)

    with pytest.raises(PolytaskError, match="Custom does not support float16.*bf16"):
        Trainer(model(), TASKS, Custom(), device="cpu", precision="fp16", progress=False)
    Trainer(model(), TASKS, Custom(), device="cpu", precision="bf16", progress=False)


ENGINE_PATHS = [
    "upgrad:path=jacobian,strategy=loop", "upgrad:path=jacobian,strategy=batched",
    "nash-mtl:path=gramian", "nash-mtl:path=gramian,jacobian_memory_limit=0",
    "nash-mtl:path=gramian,jacobian_memory_limit=0,strategy=batched,chunk_size=2",
    "mgda:path=gramian,max_block_numel=40", "mgda:path=representation",
    "pcgrad:path=representation", "gradnorm", "gradnorm:layer=representation",
    "imtl:path=representation", "db-mtl", "excess-mtl",
]


@pytest.mark.parametrize("method", ENGINE_PATHS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_engine_path_takes_autocast_losses_of_mixed_dtypes(method, dtype):
    """In a plain loop under autocast, an MSE loss comes out in half precision and a
    BCE loss in float32, and the representation is half precision: every path runs,
    and its update is within tolerance of fp32's."""
    name, _, settings = method.partition(":")
    kw = {}
    for item in filter(None, settings.split(",")):
        key, value = item.split("=")
        kw[key] = int(value) if value.isdigit() else value
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 6, generator=g)
    y = {"r": 2 * x[:, 0], "b": (x[:, 1] > 0).float(), "s": x[:, 2] - x[:, 3]}
    grads = {}
    for mode in ("32", "half"):
        net = model()
        balancer = pt.balancing.get(name, **kw)
        balancer.prepare([t.name for t in TASKS])
        balancer.attach(tasks={t.name: t for t in TASKS})
        with torch.autocast("cpu", dtype=dtype, enabled=mode == "half"):
            out = {k: v.reshape(-1) for k, v in net(x).items()}
            losses = {"r": (out["r"] - y["r"].to(out["r"].dtype)).pow(2).mean(),
                      "b": nn.functional.binary_cross_entropy_with_logits(out["b"], y["b"]),
                      "s": (out["s"] - y["s"].to(out["s"].dtype)).pow(2).mean()}
        if mode == "half":
            assert losses["r"].dtype == dtype and losses["b"].dtype == torch.float32
            assert net.shared_representation.dtype == dtype
        balancer.backward(losses, shared_params=list(net.shared_parameters()),
                          representation=net.shared_representation)
        grads[mode] = torch.cat([p.grad.reshape(-1) for p in net.parameters()
                                 if p.grad is not None])
    assert torch.isfinite(grads["half"]).all()
    tol = 0.05 if dtype == torch.bfloat16 else 0.01
    assert (grads["half"] - grads["32"]).norm() <= tol * grads["32"].norm(), method
