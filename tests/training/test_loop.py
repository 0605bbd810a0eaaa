"""fit: shuffled batches, accumulation, clipping, schedules, early stopping on a chosen
metric, callbacks, and the log with every term."""

from __future__ import annotations

import pytest
import torch

from mmtk.training import FitSettings, InMemorySource, SupervisedObjective, TaskLoss, adamw, fit, make_schedule
from mmtk.training.loop import monitored_metric


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def forward(self, batch):
        return {"y": self.layer(batch.features["x"])}


def problem(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return InMemorySource({"x": x}, {"y": (x[:, 0] > 0).float()})


def validate_with(source, objective, scores):
    def validate(model):
        model.eval()
        with torch.no_grad():
            terms = {k: float(v) for k, v in objective(model, next(source.batches(len(source)))).items()}
        model.train()
        return {"terms": terms, "metrics": {"task": "y", "n": len(source), "metrics": {"accuracy": scores.pop(0)}}}

    return validate


def run(settings, *, scores=None, schedule=None, lr=0.1):
    torch.manual_seed(0)
    model, source = Linear(), problem()
    objective = SupervisedObjective({"y": TaskLoss("binary")})
    optimizer = adamw(model.parameters(), lr=lr, weight_decay=0.0)
    sched = make_schedule(optimizer, schedule, total_steps=settings.epochs * source.num_batches(settings.batch_size), warmup_steps=2) if schedule else None
    scores = list(scores or [0.5] * settings.epochs)
    seen = []
    result = fit(model, objective, source, validate_with(source, objective, scores), optimizer, sched, settings=settings,
                 callbacks=[lambda ctx: seen.append(ctx.state.epoch)])
    return result, seen, optimizer


def test_training_lowers_the_loss_and_logs_every_term():
    result, seen, _ = run(FitSettings(epochs=5, batch_size=16, patience=10))
    assert seen == [1, 2, 3, 4, 5] and result.epochs_run == 5
    log = result.log
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert set(log[0]["train_terms"]) == {"task.y", "total"} and log[0]["val_terms"]["total"] == log[0]["val_loss"]


def test_early_stopping_on_a_metric_keeps_the_best_epoch():
    scores = [0.5, 0.7, 0.6, 0.65, 0.6, 0.9]
    result, _, _ = run(FitSettings(epochs=6, batch_size=16, patience=3, monitor="accuracy"), scores=scores)
    assert result.best_epoch == 2 and result.epochs_run == 5  # three epochs without beating 0.7


def test_a_saturated_metric_keeps_training_while_the_validation_loss_falls():
    # Validation accuracy reaches 1.0 at epoch 2 and stays there; the loss of this
    # separable problem keeps falling. Without the loss as tie-break patience 2 would
    # stop at epoch 4 and keep epoch 2's weights.
    scores = [0.9] + [1.0] * 7
    result, _, _ = run(FitSettings(epochs=8, batch_size=16, patience=2, monitor="accuracy"), scores=scores)
    losses = [entry["val_loss"] for entry in result.log]
    assert losses[-1] < losses[1]
    assert result.epochs_run == 8
    assert result.best_epoch == 1 + min(range(1, 8), key=lambda i: losses[i])


def test_an_equal_metric_at_a_higher_loss_is_not_better():
    # lr 0: the weights, hence the validation loss, never change, so equal scores tie
    # exactly and only a higher score counts.
    result, _, _ = run(FitSettings(epochs=6, batch_size=16, patience=2, monitor="accuracy"), scores=[0.8, 0.8, 0.8, 0.9, 0.9, 0.9], lr=0.0)
    assert result.best_epoch == 1 and result.epochs_run == 3


def test_accumulation_steps_once_per_group_of_batches():
    _, _, optimizer = run(FitSettings(epochs=1, batch_size=16, patience=1, accumulate=3))
    state = next(iter(optimizer.state.values()))
    assert int(state["step"]) == 2  # 4 batches: one step after 3, one for the last


def test_accumulating_two_half_batches_equals_one_full_batch():
    whole, _, _ = run(FitSettings(epochs=1, batch_size=64, patience=1))
    halves, _, _ = run(FitSettings(epochs=1, batch_size=32, patience=1, accumulate=2))
    for name in whole.best_state:
        assert torch.allclose(whole.best_state[name], halves.best_state[name], atol=1e-6)


def test_clipping_bounds_the_update():
    free, _, _ = run(FitSettings(epochs=1, batch_size=64, patience=1), lr=10.0)
    clipped, _, _ = run(FitSettings(epochs=1, batch_size=64, patience=1, clip_norm=1e-3), lr=10.0)
    assert not torch.allclose(free.best_state["layer.weight"], clipped.best_state["layer.weight"])


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_warm_up_then_decay_to_zero(kind):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = make_schedule(optimizer, kind, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[2] == 1.0 and lrs[-1] < 0.2
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert make_schedule(optimizer, "constant", total_steps=10) is None


def test_a_metric_is_averaged_over_the_tasks_that_report_it():
    metrics = {"n": 3, "tasks": {"a": {"metrics": {"accuracy": 0.5}}, "b": {"metrics": {"accuracy": 1.0}}, "c": {"metrics": {"rmse": 2.0}}}}
    assert monitored_metric(metrics, "accuracy") == 0.75 and monitored_metric(metrics, "rmse") == 2.0
    assert monitored_metric(metrics, "macro_f1") != monitored_metric(metrics, "macro_f1")  # NaN: never best


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_on_cuda_trains():
    torch.manual_seed(0)
    model, source = Linear().cuda(), problem()
    source = InMemorySource({"x": source.features["x"].cuda()}, {"y": source.targets["y"].cuda()})
    objective = SupervisedObjective({"y": TaskLoss("binary")})
    optimizer = adamw(model.parameters(), lr=0.1, weight_decay=0.0)
    result = fit(model, objective, source, validate_with(source, objective, [0.5] * 5), optimizer,
                 settings=FitSettings(epochs=5, batch_size=16, patience=10, amp=True))
    assert result.log[-1]["train_loss"] < result.log[0]["train_loss"]


def test_a_run_whose_validation_loss_is_never_finite_is_a_one_line_user_error():
    from mmtk.errors import DataError

    model, source = Linear(), problem()
    objective = SupervisedObjective({"y": TaskLoss("binary")})

    def validate(model):
        return {"terms": {"total": float("nan")}, "metrics": {"task": "y", "n": len(source), "metrics": {}}}

    with pytest.raises(DataError, match=r"training diverged.*2 epoch.*lower --lr"):
        fit(model, objective, source, validate, adamw(model.parameters(), lr=0.1, weight_decay=0.0), None,
            settings=FitSettings(epochs=2, batch_size=16, patience=10))
