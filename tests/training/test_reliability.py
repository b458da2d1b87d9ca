"""Everyday faults of a training run: each case of docs/reliability.md, as a test."""

import math
import threading
import warnings

import pytest
import torch
from torch import nn

import polytask as pt
from polytask import balancing
from polytask.errors import CheckpointError, PolytaskError
from polytask.training import MultiTaskDataset, Trainer, batch_loader
from polytask.training.checkpoints import load_checkpoint_file

TASKS = [pt.Binary("b"), pt.Regression("r")]
# every method that builds with its defaults (regularized is a wrapper; pmtl needs rays)
DEFAULT_BUILDABLE = [m for m in balancing.available() if m != "regularized"
                     and "settings" not in getattr(balancing.method_class(m), "requires", ())]


def model():
    torch.manual_seed(0)
    return pt.HardSharing(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), TASKS,
                          encoder_out_features=8)


def data(n=32, seed=0, r_labels=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    r = x[:, 1].clone() if r_labels else torch.full((n,), math.nan)
    return x, {"b": (x[:, 0] > 0).float(), "r": r}


def loader(n=32, seed=0, **kw):
    x, y = data(n, seed, **kw)
    return batch_loader(MultiTaskDataset(x, y), batch_size=8)


def quiet(**kw):
    return Trainer(model(), TASKS, progress=False, **kw)


# -- the optimizer and the balancer's learned parameters ---------------------------
@pytest.mark.parametrize("method", ["uw", "imtl-l", "imtl"])
def test_a_user_built_optimizer_still_steps_the_balancers_parameters(method):
    m = model()
    trainer = Trainer(m, TASKS, method, torch.optim.Adam(m.parameters(), lr=1e-2),
                      progress=False)
    start = [p.detach().clone() for p in trainer.balancer.extra_parameters()]
    assert start, method
    trainer.fit(loader(), epochs=1)
    after = trainer.balancer.extra_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(start, after))


def test_a_plain_loop_without_the_balancers_parameters_warns_what_to_add():
    m = model()
    uw = balancing.get("uw", tasks=TASKS)
    optimizer = torch.optim.Adam(m.parameters())
    with pytest.warns(RuntimeWarning, match="extra_parameters"):
        for _ in range(3):
            for x, y in loader():
                optimizer.zero_grad()
                uw.backward(pt.tasks.compute_losses(TASKS, m(x), y),
                            shared_params=m.shared_parameters())
                optimizer.step()


def test_shared_params_no_loss_reaches_warn():
    m = model()
    stray = nn.Parameter(torch.ones(3))
    x, y = next(iter(loader()))
    with pytest.warns(RuntimeWarning, match="1 of .* reached by no task loss"):
        balancing.get("nash-mtl").backward(
            pt.tasks.compute_losses(TASKS, m(x), y),
            shared_params=[*m.shared_parameters(), stray])


@pytest.mark.parametrize("method", DEFAULT_BUILDABLE)
def test_on_epoch_end_with_the_epoch_alone_works_for_every_method(method):
    balancing.get(method).on_epoch_end(0)


def test_uw_warns_when_given_names_and_agrees_given_kinds():
    x, y = next(iter(loader()))
    m = model()
    losses = pt.tasks.compute_losses(TASKS, m(x), y)
    by_names = balancing.get("uw", tasks=["b", "r"])
    with pytest.warns(RuntimeWarning, match="kind of task 'b' is unknown"):  # noqa: PT031
        by_names.backward(dict(losses), shared_params=m.shared_parameters())
    by_names_attached = balancing.get("uw", tasks=["b", "r"]).attach(
        tasks={t.name: t for t in TASKS})
    by_tasks = balancing.get("uw", tasks=TASKS)
    w1 = by_names_attached.backward({k: v.detach().requires_grad_() for k, v in losses.items()})
    w2 = by_tasks.backward({k: v.detach().requires_grad_() for k, v in losses.items()})
    assert w1.weights == w2.weights == {"b": 1.0, "r": 0.5}


# -- epoch logs and model selection with sparse labels ---------------------------------
def test_the_epoch_loss_of_a_sparse_task_averages_labeled_samples_only():
    x, y = data(32)
    y["r"][8:] = math.nan  # only the first batch has labels for r
    trainer = quiet()
    history = trainer.fit([(x[i:i + 8], {k: v[i:i + 8] for k, v in y.items()})
                           for i in range(0, 32, 8)], epochs=1)
    # the first batch's loss, not a quarter of it (three unlabeled batches averaged as 0)
    assert history[0]["train"]["loss/r"] > 0
    torch.manual_seed(0)
    first = Trainer(model(), TASKS, progress=False).fit(
        [(x[:8], {k: v[:8] for k, v in y.items()})], epochs=1)
    assert history[0]["train"]["loss/r"] == pytest.approx(first[0]["train"]["loss/r"])


def test_a_task_without_validation_labels_still_gives_best_pt(tmp_path):
    trainer = quiet(log_dir=tmp_path / "run")
    with pytest.warns(RuntimeWarning, match=r"\['r'\] have no labeled sample in the validation"):
        trainer.fit(loader(), epochs=2, val_loader=loader(seed=1, r_labels=False))
    assert (tmp_path / "run" / "best.pt").exists()
    trainer.load_best()


def test_no_finite_monitored_value_says_so_instead_of_asking_for_a_log_dir(tmp_path):
    tasks = [pt.Regression("r")]
    torch.manual_seed(0)
    m = pt.HardSharing(nn.Linear(4, 8), tasks, encoder_out_features=8)
    trainer = Trainer(m, tasks, progress=False, log_dir=tmp_path / "run")
    train = [(x, {"r": y["r"]}) for x, y in loader()]
    val = [(x, {"r": y["r"]}) for x, y in loader(r_labels=False)]
    with pytest.warns(RuntimeWarning, match="monitored value 'loss' is NaN"):
        trainer.fit(train, epochs=1, val_loader=val)
    with pytest.raises(CheckpointError, match="never finite"):
        trainer.load_best()


# -- run directories and files --------------------------------------------------------
def test_fit_into_an_existing_run_needs_resume_or_overwrite(tmp_path):
    quiet(log_dir=tmp_path).fit(loader(), epochs=1)
    with pytest.raises(CheckpointError, match="already holds a run.*resume=True.*overwrite=True"):
        quiet(log_dir=tmp_path).fit(loader(), epochs=1)
    history = quiet(log_dir=tmp_path).fit(loader(), epochs=1, overwrite=True)
    assert len(history) == 1
    assert len(quiet(log_dir=tmp_path).fit(loader(), epochs=2, resume=True)) == 2


def test_resume_without_a_checkpoint_raises_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint .*last.pt"):
        quiet(log_dir=tmp_path / "new").fit(loader(), epochs=1, resume=True)


def test_a_truncated_checkpoint_names_the_file(tmp_path):
    quiet(log_dir=tmp_path).fit(loader(), epochs=1)
    path = tmp_path / "last.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="last.pt.*truncated"):
        quiet(log_dir=tmp_path).fit(loader(), epochs=2, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        quiet().load_checkpoint(tmp_path / "missing.pt")


def test_writes_leave_no_temporary_files_and_names_are_unique(tmp_path):
    from polytask.atomic import temp_sibling

    assert temp_sibling(tmp_path / "last.pt") != temp_sibling(tmp_path / "last.pt")
    quiet(log_dir=tmp_path).fit(loader(), epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "best.pt", "epochs.csv", "last.pt", "steps.csv"]


def test_two_writers_saving_the_same_checkpoint_do_not_collide(tmp_path):
    # each write goes to its own temporary name (pid and a random part), then a rename;
    # threads stand in for processes here (a second interpreter takes a minute to start)
    path = tmp_path / "shared.pt"
    trainers = [quiet(), quiet()]
    errors = []

    def save_many(trainer):
        try:
            for _ in range(5):
                trainer.save_checkpoint(path)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=save_many, args=(t,)) for t in trainers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert "model" in load_checkpoint_file(path)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.pt"]


@pytest.mark.parametrize("method", DEFAULT_BUILDABLE)
def test_checkpoints_load_with_weights_only_for_every_method(tmp_path, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = quiet(log_dir=tmp_path, balancer=method)
        trainer.fit(loader(), epochs=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"model", "optimizer", "balancer", "rng"} <= set(state)
    again = quiet(log_dir=tmp_path, balancer=method)
    again.load_checkpoint(tmp_path / "last.pt")
    assert again.epochs_done == 1


def test_fit_rejects_nonsense_epochs():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(PolytaskError, match="epochs"):
            quiet().fit(loader(), epochs=bad)


def test_trainer_settings_are_checked():
    from polytask.errors import InvalidParameterError

    for bad in ({"grad_clip": -1.0}, {"seed": 1.5}, {"progress": "no"}):
        with pytest.raises(InvalidParameterError, match=next(iter(bad))):
            Trainer(model(), TASKS, **bad)
