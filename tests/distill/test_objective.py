"""DistillObjective's total against the written-out formula; the meta step's gradient
against finite differences; both as ``fit`` objectives."""

from __future__ import annotations

import copy

import pytest
import torch

from distill_batches import teacher_batch, views
from mmtk.distill.losses import kl_per_item, similarity_preserving
from mmtk.distill.meta import MetaDistillObjective, MetaWeightNet, cycle
from mmtk.distill.objective import DistillObjective
from mmtk.distill.views import FULL, TEACHER_HIDDEN, only_view, teacher_key, without
from mmtk.distill.weighting import FixedWeights
from mmtk.models.gmu import GatedMultimodalUnit
from mmtk.training import FitSettings, InMemorySource, SupervisedObjective, TaskLoss, adamw, fit
from mmtk.training.objectives import TOTAL

KINDS = {"y": "multiclass"}


def _student(dtype=torch.float32):
    torch.manual_seed(0)
    return GatedMultimodalUnit({"img": 4, "txt": 3}, {"y": 3}, hidden=5, dropout=0.0).to(dtype)


def _objective(msd_views, weights, **kwargs):
    supervised = SupervisedObjective({"y": TaskLoss("multiclass")})
    return DistillObjective(supervised, KINDS, msd_views, FixedWeights(weights), **kwargs)


def test_kd_total_is_lambda_ce_plus_tau_squared_kl():
    model, batch = _student(), teacher_batch()
    terms = _objective(views(False), {FULL: 1.0}, lam=0.3, tau=2.0)(model, batch)
    logits = model(batch)["y"]
    ce = torch.nn.functional.cross_entropy(logits, batch.targets["y"])
    kl = kl_per_item("multiclass", batch.targets[teacher_key(FULL, "y")], logits, 2.0).mean()
    assert torch.allclose(terms["ce"], ce) and torch.allclose(terms["kd"], kl)
    assert torch.allclose(terms[TOTAL], 0.3 * ce + 0.7 * 4.0 * kl)
    assert set(terms) == {"task.y", "ce", "kd", TOTAL}


def test_msd_adds_a_weighted_kl_term_per_unimodal_view():
    model, batch = _student(), teacher_batch()
    msd = views(True)
    weights = {FULL: 1.0, only_view("image"): 0.5, only_view("text"): 2.0}
    terms = _objective(msd, weights, lam=0.5, tau=1.0)(model, batch)
    expected = 0
    for view, removed in msd.removed.items():
        logits = model(without(batch, removed))["y"]
        kl = kl_per_item("multiclass", batch.targets[teacher_key(view, "y")], logits).mean()
        name = "kd" if view == FULL else "msd." + view.split(":")[1]
        assert torch.allclose(terms[name], weights[view] * kl, atol=1e-6), name
        expected = expected + weights[view] * kl
    ce = torch.nn.functional.cross_entropy(model(batch)["y"], batch.targets["y"])
    assert torch.allclose(terms[TOTAL], 0.5 * ce + 0.5 * expected, atol=1e-6)


def test_a_view_an_item_has_nothing_of_contributes_nothing():
    model, batch = _student(), teacher_batch()
    batch.present["txt"] = torch.tensor([False, True, True, True, True, True])
    msd = views(True)
    objective = _objective(msd, {view: 1.0 for view in msd.names}, lam=0.0, tau=1.0)
    terms = objective(model, batch)
    # Item 0 has no text: on the text-only view it has no input, and only items 1-5 count.
    logits = model(without(batch, msd.removed[only_view("text")]))["y"]
    kl = kl_per_item("multiclass", batch.targets[teacher_key(only_view("text"), "y")], logits)
    assert torch.allclose(terms["msd.text"], kl[1:].sum() / 6, atol=1e-6)
    assert torch.isfinite(terms[TOTAL])


def test_hidden_state_losses_read_the_students_representation():
    model, batch = _student(), teacher_batch()
    objective = _objective(views(False), {FULL: 1.0}, lam=1.0, hidden={"sp": 2.0})
    terms = objective(model, batch)
    expected = similarity_preserving(model.represent(batch), batch.targets[TEACHER_HIDDEN])
    assert torch.allclose(terms["sp"], expected)
    ce = torch.nn.functional.cross_entropy(model(batch)["y"], batch.targets["y"])
    assert torch.allclose(terms[TOTAL], ce + 2.0 * expected)


def _meta(model, lookahead, lr=0.5, dtype=torch.float32):
    msd = views(True)
    base = _objective(msd, {}, lam=0.5, tau=2.0)
    torch.manual_seed(3)
    net = MetaWeightNet(msd.names, {"y": 3}, hidden=7).to(dtype)
    meta_batch = teacher_batch(seed=9, dtype=dtype)
    objective = MetaDistillObjective(base, net, torch.optim.SGD(net.parameters(), lr=1.0), iter([meta_batch] * 100), lr, lookahead)
    return objective, meta_batch


def _meta_loss_after_step(model, net, base, batch, meta_batch, lr):
    """The meta-set loss of ``model`` after one plain SGD step with ``net``'s weights."""
    student = copy.deepcopy(model)
    with torch.no_grad():
        weights = net(batch, KINDS)
    loss = base.weighted_terms(student, batch, weights)[TOTAL]
    grads = torch.autograd.grad(loss, list(student.parameters()))
    with torch.no_grad():
        for p, g in zip(student.parameters(), grads):
            p -= lr * g
        return base.supervised.terms(student(meta_batch), meta_batch)[TOTAL]


def test_the_meta_gradient_is_the_derivative_of_the_looked_ahead_meta_loss():
    model = _student(torch.float64)
    batch = teacher_batch(dtype=torch.float64)
    objective, meta_batch = _meta(model, "all", dtype=torch.float64)
    net = objective.net
    before = copy.deepcopy(net)
    objective.optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # keep the parameters: read .grad
    objective.meta_update(model, batch)
    grad = net.net[0].weight.grad
    index = divmod(int(grad.abs().argmax()), grad.shape[1])
    analytic = grad[index].item()
    h = 1e-6
    shifted = []
    for sign in (1, -1):
        probe = copy.deepcopy(before)
        with torch.no_grad():
            probe.net[0].weight[index] += sign * h
        shifted.append(_meta_loss_after_step(model, probe, objective.base, batch, meta_batch, objective.lookahead_lr).item())
    numeric = (shifted[0] - shifted[1]) / (2 * h)
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-9)
    assert abs(analytic) > 1e-8


def test_the_meta_step_changes_the_meta_learner_and_leaves_the_students_gradients_alone():
    for lookahead in ("all", "heads"):
        model, batch = _student(), teacher_batch()
        objective, _ = _meta(model, lookahead)
        before = [p.detach().clone() for p in objective.net.parameters()]
        terms = objective(model, batch)
        assert any(not torch.equal(a, b) for a, b in zip(before, objective.net.parameters())), lookahead
        assert all(p.grad is None for p in model.parameters()), lookahead
        assert {"meta", "kd", "msd.image", "msd.text", TOTAL} <= set(terms)
        terms[TOTAL].backward()
        assert all(p.grad is not None for p in model.parameters())


def test_kd_and_meta_objectives_train_a_student_with_fit():
    torch.manual_seed(0)
    batch = teacher_batch(n=64)
    source = InMemorySource(batch.features, batch.targets)
    for lookahead in (None, "all"):
        model = _student()
        if lookahead is None:
            objective = _objective(views(True), {view: 1.0 for view in views(True).names})
        else:
            objective, _ = _meta(model, lookahead, lr=0.1)
            objective.meta_batches = cycle(source, 16, seed=0)

        def validate(m):
            with torch.no_grad():
                terms = objective.terms(m(batch), batch)
            return {"terms": {k: float(v) for k, v in terms.items()}, "metrics": {}}

        result = fit(model, objective, source, validate, adamw(model.parameters(), lr=1e-2, weight_decay=0.0),
                     settings=FitSettings(epochs=5, batch_size=16, patience=5))
        losses = [entry["train_loss"] for entry in result.log]
        assert losses[-1] < losses[0], (lookahead, losses)
