"""MultiDatasetLoader / PerDatasetLoader: batches, masks, epochs, checks, Trainer."""

import pytest
import torch
from torch import nn

import polytask as pt
from polytask.errors import PolytaskError, ShapeMismatchError
from polytask.multidataset import MultiDatasetLoader, MultiDatasetModel, PerDatasetLoader
from polytask.training import MultiTaskDataset, Trainer


def make_data(n_a=60, n_b=24, dim_b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = MultiTaskDataset(torch.randn(n_a, 5, generator=g),
                         {"a": torch.randint(0, 3, (n_a,), generator=g)})
    b = MultiTaskDataset(torch.randn(n_b, dim_b, generator=g),
                         {"b": torch.randn(n_b, generator=g)})
    return {"a": a, "b": b}


TASKS = [pt.Multiclass("a", num_classes=3), pt.Regression("b")]


def model_for(tasks=TASKS, dim=5):
    torch.manual_seed(0)
    return pt.HardSharing(nn.Sequential(nn.Linear(dim, 8), nn.Tanh()), tasks,
                          encoder_out_features=8)


def test_single_batches_come_from_one_dataset_with_masks():
    loader = MultiDatasetLoader(make_data(), 8, schedule="round_robin", tasks=TASKS)
    batches = list(loader)
    assert len(batches) == loader.steps_per_epoch == 8 + 3  # "total": ceil(60/8)+ceil(24/8)
    for i, (x, targets, masks) in enumerate(batches):
        assert set(targets) == set(masks) == {"a", "b"}
        assert bool(masks["a"].all()) == (i % 2 == 0)
        assert bool(masks["b"].any()) == (i % 2 == 1)
        assert x.shape == (8, 5)


def test_a_task_loss_is_taken_only_where_it_has_labels():
    data = make_data()
    loader = MultiDatasetLoader(data, 16, mode="mixed", schedule="uniform", tasks=TASKS)
    model = model_for()
    x, targets, masks = next(iter(loader))
    out = model(x)
    for task in TASKS:
        rows = masks[task.name]
        assert 0 < int(rows.sum()) < 16
        full = task.loss(out[task.name], targets[task.name], rows)
        alone = task.loss(out[task.name][rows], targets[task.name][rows])
        assert torch.allclose(full, alone)


def test_single_batch_gives_an_absent_task_a_zero_loss_in_the_graph():
    loader = MultiDatasetLoader(make_data(), 8, schedule="round_robin", tasks=TASKS)
    x, targets, masks = next(iter(loader))  # dataset "a"
    out = model_for()(x)
    loss_b = TASKS[1].loss(out["b"], targets["b"], masks["b"])
    assert float(loss_b.detach()) == 0.0 and loss_b.requires_grad


def test_proportional_frequencies_and_without_replacement_within_a_dataset():
    data = make_data(n_a=300, n_b=100)
    torch.manual_seed(0)
    loader = MultiDatasetLoader(data, 10, schedule="proportional", epoch=400)
    counts = {"a": 0, "b": 0}
    seen_b = []
    for _, _, masks in loader:
        name = "a" if bool(masks["a"].all()) else "b"
        counts[name] += 1
    assert abs(counts["a"] / 400 - 0.75) < 0.07
    torch.manual_seed(1)
    loader = MultiDatasetLoader({"b": data["b"]}, 10, epoch=10)
    for x, _, _ in loader:
        seen_b.append(x)
    rows = torch.cat(seen_b)
    assert len(torch.unique(rows, dim=0)) == 100  # one pass: every sample exactly once


def test_epoch_definitions():
    data = make_data(n_a=60, n_b=24)
    assert MultiDatasetLoader(data, 8, epoch="largest").steps_per_epoch == 8
    assert MultiDatasetLoader(data, 8, epoch="smallest").steps_per_epoch == 3
    assert MultiDatasetLoader(data, 8).steps_per_epoch == 11
    assert MultiDatasetLoader(data, 8, mode="grouped").steps_per_epoch == 8
    assert MultiDatasetLoader(data, 8, epoch=5).steps_per_epoch == 5
    with pytest.raises(PolytaskError, match="epoch must"):
        MultiDatasetLoader(data, 8, epoch="forever")


def test_mixed_and_grouped_compositions():
    data = make_data()
    grouped = next(iter(MultiDatasetLoader(data, 6, mode="grouped")))
    assert grouped[0].shape == (12, 5)
    assert grouped[2]["a"].tolist() == [True] * 6 + [False] * 6
    rr = MultiDatasetLoader(data, 7, mode="mixed", schedule="round_robin")
    sizes = [int(m["a"].sum()) for _, _, m in rr]
    assert set(sizes) <= {3, 4}
    with pytest.raises(PolytaskError, match="uses no schedule"):
        MultiDatasetLoader(data, 6, mode="grouped", schedule="uniform")


def test_same_seed_same_batches():
    data = make_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        loader = MultiDatasetLoader(data, 8, schedule="uniform", mode="mixed")
        runs.append([x for x, _, _ in loader])
    assert all(torch.equal(u, v) for u, v in zip(*runs))


def test_per_dataset_loader_evaluates_each_task_on_its_own_dataset():
    data = make_data()
    model = model_for()
    trainer = Trainer(model, TASKS, progress=False)
    results = trainer.evaluate(PerDatasetLoader(data, 16))
    with torch.no_grad():
        out = model(data["a"].inputs)
        acc = float((out["a"].argmax(1) == data["a"].targets["a"]).float().mean())
        out_b = model(data["b"].inputs)
        mae = float((out_b["b"].reshape(-1) - data["b"].targets["b"]).abs().mean())
    assert results["a"]["accuracy"] == pytest.approx(acc)
    assert results["b"]["mae"] == pytest.approx(mae, rel=1e-5)


def test_trainer_fits_with_every_mode_and_group_sources():
    data = make_data()
    g = torch.Generator().manual_seed(1)
    both = MultiTaskDataset(torch.randn(30, 5, generator=g), {
        "c": torch.randn(30, generator=g), "d": torch.randint(0, 2, (30,), generator=g).float()
    })
    tasks = [*TASKS, pt.Regression("c"), pt.Binary("d")]
    sources = {**data, ("c", "d"): both}
    for mode, method in [("single", "ew"), ("mixed", "pcgrad"), ("grouped", "mgda")]:
        loader = MultiDatasetLoader(sources, 8, mode=mode, tasks=tasks)
        assert loader.tasks_of["c+d"] == ("c", "d")
        trainer = Trainer(model_for(tasks), tasks, method, progress=False, seed=0)
        history = trainer.fit(loader, 2, val_loader=PerDatasetLoader(sources, 64))
        assert set(history[-1]["val"]) >= {"loss/a", "loss/b", "loss/c", "loss/d"}


def test_different_input_shapes_through_per_dataset_stems():
    data = make_data(dim_b=9)
    loader = MultiDatasetLoader(data, 8, mode="mixed", schedule="uniform")
    assert loader.inputs_mode == "by_dataset"
    x, _, _ = next(iter(loader))
    assert isinstance(x, dict) and set(x) <= {"a", "b"}
    torch.manual_seed(0)
    trunk = model_for(dim=6)
    model = MultiDatasetModel(trunk, {"a": nn.Linear(5, 6), "b": nn.Linear(9, 6)},
                              loader.tasks_of)
    stem_b = {id(p) for p in model.stems["b"].parameters()}
    assert stem_b <= {id(p) for p in model.task_parameters("b")}
    assert not stem_b & {id(p) for p in model.shared_parameters()}
    trainer = Trainer(model, TASKS, "upgrad", progress=False, seed=0)
    trainer.fit(loader, 1, val_loader=PerDatasetLoader(data, 16))
    with pytest.raises(ShapeMismatchError, match="'a' \\(5,\\).*'b' \\(9,\\)"):
        MultiDatasetLoader(data, 8, inputs="tensor")


# -- bad input -----------------------------------------------------------------------

def test_a_task_with_no_dataset_is_named():
    loader = MultiDatasetLoader({"a": make_data()["a"]}, 8)
    trainer = Trainer(model_for(), TASKS, progress=False)
    with pytest.raises(PolytaskError, match=r"task\(s\) \['b'\] have no dataset"):
        trainer.fit(loader, 1)


def test_a_dataset_without_any_label_is_named():
    data = make_data()
    data["a"].targets["a"] = torch.full((60,), -1)
    with pytest.raises(PolytaskError, match="dataset 'a': none of its 60 samples"):
        MultiDatasetLoader(data, 8, tasks=TASKS)


def test_a_dataset_mapped_to_a_task_it_lacks_is_named():
    data = make_data()
    with pytest.raises(PolytaskError, match="dataset 'z' is mapped to task 'z'"):
        MultiDatasetLoader({"z": data["a"]}, 8)


def test_inputs_the_model_cannot_take_are_named():
    data = make_data(dim_b=9)
    loader = MultiDatasetLoader(data, 8, inputs="by_dataset")
    model = MultiDatasetModel(model_for(dim=5), {"b": nn.Linear(7, 5)}, loader.tasks_of)
    trainer = Trainer(model, TASKS, progress=False)
    with pytest.raises(PolytaskError, match="dataset 'b'"):
        trainer.fit(loader, 1)
    plain = MultiDatasetLoader(make_data(), 8)
    with pytest.raises(PolytaskError, match="cannot take the inputs of dataset 'a'"):
        plain.check_model(model_for(dim=4))


def test_gradient_aggregation_with_single_dataset_batches_is_refused():
    loader = MultiDatasetLoader(make_data(), 8, tasks=TASKS)
    trainer = Trainer(model_for(), TASKS, "mgda", progress=False)
    with pytest.raises(PolytaskError, match="mode='grouped'"):
        trainer.fit(loader, 1)
    trainer = Trainer(model_for(), TASKS, "uw", progress=False)
    with pytest.warns(UserWarning, match="loss of 0"):
        trainer.fit(loader, 1)


def test_dynamic_schedule_gets_validation_losses_from_the_trainer():
    data = make_data()
    loader = MultiDatasetLoader(data, 8, schedule="dynamic:tau=0.5", tasks=TASKS)
    trainer = Trainer(model_for(), TASKS, progress=False, seed=0)
    history = trainer.fit(loader, 2, val_loader=PerDatasetLoader(data, 64))
    latest = loader.schedule.latest
    assert latest == pytest.approx({"a": history[-1]["val"]["loss/a"],
                                    "b": history[-1]["val"]["loss/b"]})
    assert loader.epoch == 2


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    data = make_data()

    def run(log_dir, epochs, resume=False):
        loader = MultiDatasetLoader(data, 8, schedule="dynamic", mode="mixed", tasks=TASKS)
        trainer = Trainer(model_for(), TASKS, progress=False, seed=0, log_dir=log_dir)
        trainer.fit(loader, epochs, val_loader=PerDatasetLoader(data, 64), resume=resume)
        return trainer, loader

    full, full_loader = run(tmp_path / "full", 3)
    run(tmp_path / "cut", 2)
    resumed, resumed_loader = run(tmp_path / "cut", 3, resume=True)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    assert resumed_loader.schedule.state_dict() == full_loader.schedule.state_dict()
