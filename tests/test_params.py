"""Settings: one declaration per class, one check, one spec syntax, one per-task parser."""

import inspect
import math

import pytest
import torch
from torch import nn

import polytask as pt
from polytask import balancing, models, params
from polytask.errors import InvalidParameterError, PolytaskError, UnknownNameError
from polytask.registry import Registry

METHODS = [m for m in balancing.available()
           if "settings" not in getattr(balancing.method_class(m), "requires", ())]


def test_invalid_parameter_error_is_a_polytask_error_and_a_value_error():
    assert issubclass(InvalidParameterError, PolytaskError)
    assert issubclass(InvalidParameterError, ValueError)


def test_a_misspelt_setting_names_the_method_and_lists_valid_settings():
    with pytest.raises(InvalidParameterError, match="'cagrad'.*unknown setting 'cc'.*did you "
                       "mean 'c'.*valid settings: c, rescale, max_iter, path"):
        balancing.get("cagrad", cc=0.5)
    with pytest.raises(InvalidParameterError, match="unknown setting 'temprature'"):
        balancing.method_class("dwa")(temprature=2.0)  # direct construction too


@pytest.mark.parametrize("spec,match", [
    ("cagrad:c=-1", "'c' must be a float in \\[0, inf\\)"),
    ("weighted:income=-2.0", "must be"),
    ("weighted:income=nan", "must be"),
    ("dwa:temperature=0", "'temperature' must be"),
    ("mgda:solver=fast", "unknown solver 'fast'"),
    ("nash-mtl:max_iter=0", "'max_iter' must be an int in \\[1, inf\\)"),
    ("uw:lr=-1", "'lr' must be"),
    ("pcgrad:path=gram", "unknown path 'gram'"),
    ("stch:preference=[1, -1]", "'preference'"),
])
def test_bad_values_are_rejected_on_construction(spec, match):
    with pytest.raises(InvalidParameterError, match=match):
        balancing.get(spec)


def test_negative_or_nan_fixed_weights_are_rejected_in_every_form():
    for bad in ([1.0, -1.0], {"a": float("nan")}, [float("inf"), 1.0]):
        with pytest.raises(InvalidParameterError):
            balancing.get("weighted", weights=bad)
        with pytest.raises(InvalidParameterError):
            balancing.FixedWeighting(bad)  # positional, direct
    with pytest.raises(InvalidParameterError):
        balancing.FixedWeighting(a=-1.0)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_declares_only_real_settings_and_builds_with_defaults(name):
    for cls in balancing.method_class(name).__mro__:  # each table names its own settings
        own = cls.__dict__.get("_parameter_constraints") or {}
        names, open_kw = params.settings_of(cls)
        for key in own:
            assert key in names or key == f"**{open_kw}", f"{cls.__name__}: {key}"
    if name != "regularized":  # needs a penalty source
        balancing.get(name)


def test_every_architecture_declares_only_real_settings():
    for obj in vars(models).values():
        if isinstance(obj, type) and issubclass(obj, models.MultiTaskModel):
            own = obj.__dict__.get("_parameter_constraints") or {}
            assert set(own) <= set(params.settings_of(obj)[0]), obj


def test_architecture_settings_are_checked_on_construction():
    tasks = [pt.Binary("a"), pt.Binary("b")]
    with pytest.raises(InvalidParameterError, match="unknown setting 'num_expert'.*num_experts"):
        models.MMoE(lambda: nn.Linear(4, 4), tasks, num_expert=2)
    with pytest.raises(InvalidParameterError, match="'num_experts' must be an int"):
        models.MMoE(lambda: nn.Linear(4, 4), tasks, num_experts=0)


def test_registry_names_accept_dash_and_underscore_alike():
    assert type(balancing.get("nash_mtl")) is type(balancing.get("nash-mtl"))
    assert type(balancing.get("Aligned_MTL")) is type(balancing.get("aligned-mtl"))
    assert models.builder("dselect-k") is models.builder("dselect_k")
    assert "nash-mtl" in balancing.available() and "nash_mtl" not in balancing.available()
    reg = Registry("thing")
    reg.register("a-b")(dict)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a_b")(list)
    with pytest.raises(UnknownNameError, match="available: a-b"):
        reg.get("nope")


def test_spec_strings_everywhere():
    assert params.parse_spec("cagrad:c=0.4,path=gramian") == (
        "cagrad", {"c": 0.4, "path": "gramian"})
    assert params.parse_spec("weighted:weights=[1, 2]") == ("weighted", {"weights": [1, 2]})
    assert balancing.get("cagrad:c=0.25").c == 0.25
    for bad in ("", ":c=1", "cagrad:c"):
        with pytest.raises(InvalidParameterError):
            params.parse_spec(bad)
    tasks = [pt.Binary("a"), pt.Regression("b")]
    model = pt.HardSharing(nn.Linear(3, 4), tasks, encoder_out_features=4)
    trainer = pt.Trainer(model, tasks, "cagrad:c=0.3", progress=False)
    assert trainer.balancer.c == 0.3
    with pytest.raises(InvalidParameterError, match="'lft' is no task"):
        pt.Trainer(model, tasks, "weighted:lft=2.0", progress=False)
    with pytest.raises(InvalidParameterError, match="unknown task"):
        pt.Trainer(model, tasks, "stch:preference={'c': 1.0}", progress=False)


def test_one_parser_for_a_number_per_task():
    names = ["a", "b", "c"]
    assert params.per_task({"b": 2}, names, what="w", default=1.0) == [1.0, 2.0, 1.0]
    assert params.per_task([1, 2, 3], names, what="w") == [1.0, 2.0, 3.0]
    assert params.per_task(0.5, names, what="w") == [0.5, 0.5, 0.5]
    assert params.per_task(None, names, what="w") is None
    with pytest.raises(InvalidParameterError, match="w: unknown task\\(s\\) \\['d'\\]"):
        params.per_task({"d": 1}, names, what="w", default=1.0)
    with pytest.raises(InvalidParameterError, match="no value for task\\(s\\) \\['b', 'c'\\]"):
        params.per_task({"a": 1}, names, what="w")
    with pytest.raises(InvalidParameterError, match="2 values for 3 tasks"):
        params.per_task([1, 2], names, what="w")
    with pytest.raises(InvalidParameterError, match="task 'b'"):
        params.per_task([1, math.nan, 1], names, what="w")
    with pytest.raises(InvalidParameterError, match="task 'a'"):
        params.per_task([-1, 1, 1], names, what="w", each=params.Interval(params.Real, 0))


def test_param_groups_task_lr_uses_the_per_task_checks():
    tasks = [pt.Binary("a"), pt.Regression("b")]
    model = pt.HardSharing(nn.Linear(3, 4), tasks, encoder_out_features=4)
    with pytest.raises(PolytaskError, match="unknown task"):
        pt.training.param_groups(model, task_lr={"c": 1e-2})
    groups = pt.training.param_groups(model, lr=1e-3, task_lr={"a": 1e-2})
    assert torch.optim.Adam(groups)


def test_intervals_describe_themselves():
    assert str(params.Interval(params.Real, 0, 1, closed="left")) == "a float in [0, 1)"
    assert not params.Interval(params.Real, 0, None).is_satisfied_by(True)
    assert not params.Interval(params.Real).is_satisfied_by(math.nan)
    assert inspect.signature(params.check_settings)
