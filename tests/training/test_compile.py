"""A model compiled with torch.compile works with every engine path and the loss
weightings, and in the Trainer.

The compile backend is "aot_eager": it traces the model with TorchDynamo and builds
the forward and backward graphs with AOTAutograd (what the inductor backend compiles
further), so each engine path runs through a compiled backward, but without a C++
compiler and in a second or two on the CPU.
"""

import warnings

import pytest
import torch
from torch import nn

import polytask as pt
from polytask.training import MultiTaskDataset, Trainer, batch_loader

TASKS = [pt.Regression("r"), pt.Binary("b"), pt.Regression("s")]
PATHS = [
    "upgrad:path=jacobian,strategy=loop",
    "upgrad:path=jacobian,strategy=batched",
    "nash-mtl:path=gramian",  # the whole Jacobian fits: Gramian by blocks
    "nash-mtl:path=gramian,jacobian_memory_limit=0",  # Jacobian-vector products
    "mgda:path=gramian,max_block_numel=40",  # Gramian by parameter blocks
    "mgda:path=representation",  # the encoder compiled alone (see models())
    "pcgrad:path=representation",
    "gradnorm:layer=representation",
    "imtl:path=representation",
    "cagrad",
    "ew", "uw", "gradnorm", "db-mtl", "imtl", "famo", "dwa",
]


def spec(method):
    name, _, settings = method.partition(":")
    kw = {}
    for item in filter(None, settings.split(",")):
        key, value = item.split("=")
        kw[key] = value if not value.isdigit() else int(value)
    return name, kw


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    model = pt.HardSharing(nn.Sequential(nn.Linear(6, 12), nn.Tanh()), TASKS,
                           encoder_out_features=12)
    whole = torch.compile(model, backend="aot_eager")
    torch.manual_seed(0)
    split = pt.HardSharing(nn.Sequential(nn.Linear(6, 12), nn.Tanh()), TASKS,
                           encoder_out_features=12)
    split.load_state_dict(model.state_dict())
    plain_split = pt.HardSharing(nn.Sequential(nn.Linear(6, 12), nn.Tanh()), TASKS,
                                 encoder_out_features=12)
    plain_split.load_state_dict(model.state_dict())
    split.encoder = torch.compile(split.encoder, backend="aot_eager")
    return {"whole": (model, whole), "encoder": (plain_split, split)}


def gradients(module, base, method, x, y):
    name, kw = spec(method)
    torch.manual_seed(1)
    balancer = pt.balancing.get(name, **kw)
    balancer.prepare([t.name for t in TASKS])
    balancer.attach(tasks={t.name: t for t in TASKS})
    base.zero_grad(set_to_none=True)
    out = module(x)
    losses = pt.tasks.compute_losses({t.name: t for t in TASKS}, out, y)
    result = balancer.backward(losses, shared_params=list(base.shared_parameters()),
                               representation=module.shared_representation)
    return result.weights, [p.grad.clone() for p in base.parameters()]


@pytest.mark.parametrize("method", PATHS)
def test_a_compiled_model_gives_the_same_update_on_every_path(models, method):
    """The whole model compiled; on the representation path the encoder compiled alone
    (a model compiled whole keeps its representation only as a side output)."""
    model, compiled = models["encoder" if "representation" in method else "whole"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, generator=g)
    y = {"r": torch.randn(16, generator=g), "b": (x[:, 0] > 0).float(), "s": x[:, 1]}
    w_plain, g_plain = gradients(model, model, method, x, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w_comp, g_comp = gradients(compiled, compiled, method, x, y)
    fallbacks = [str(w.message) for w in caught if "failed" in str(w.message)]
    assert w_plain == pytest.approx(w_comp, rel=1e-5)
    for a, b in zip(g_plain, g_comp):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (method, fallbacks)


@pytest.mark.parametrize("method", ["mgda:path=representation", "gradnorm:layer=representation",
                                    "imtl:path=representation"])
def test_the_representation_path_on_a_model_compiled_whole_says_what_to_do(models, method):
    model, compiled = models["whole"]
    out = compiled(torch.randn(4, 6))
    losses = {t: out[t].float().pow(2).mean() for t in ("r", "b", "s")}
    name, kw = spec(method)
    balancer = pt.balancing.get(name, **kw)
    balancer.prepare(list(losses))
    with pytest.raises(pt.errors.PolytaskError, match="compile the encoder alone"):
        balancer.backward(losses, shared_params=list(model.shared_parameters()),
                          representation=compiled.shared_representation)


def test_the_trainer_takes_a_compiled_model_and_checkpoints_the_plain_keys(tmp_path):
    torch.manual_seed(0)
    model = pt.HardSharing(nn.Sequential(nn.Linear(6, 12), nn.Tanh()), TASKS,
                           encoder_out_features=12)
    compiled = torch.compile(model, backend="aot_eager")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = {"r": torch.randn(64, generator=g), "b": (x[:, 0] > 0).float(), "s": x[:, 1]}
    t = Trainer(compiled, TASKS, "nash-mtl", device="cpu", log_dir=tmp_path, progress=False,
                seed=0)
    t.fit(batch_loader(MultiTaskDataset(x, y), 32), epochs=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state["model"])
    plain = Trainer(model, TASKS, "nash-mtl", device="cpu", progress=False)
    plain.load_checkpoint(tmp_path / "last.pt")  # loads into the uncompiled model
