"""Objectives: named terms and their weighted total, label smoothing, target masks, and a
step that gives the same result when re-run under torch.func.functional_call."""

from __future__ import annotations

import pytest
import torch

from mmtk.training import Batch, SupervisedObjective, TaskLoss
from mmtk.training.objectives import TOTAL, term_name


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 1)

    def forward(self, batch):
        return {"kind": self.a(batch.features["x"]), "flag": self.b(batch.features["x"])}


def batch(n=6):
    g = torch.Generator().manual_seed(0)
    return Batch(
        features={"x": torch.randn(n, 3, generator=g)},
        targets={"kind": torch.tensor([0, 1, 1, 0, 1, 0])[:n], "flag": torch.tensor([1.0, 0, 1, 1, 0, 0])[:n]},
    )


def test_terms_are_named_per_task_and_the_total_is_their_weighted_sum():
    torch.manual_seed(0)
    model, b = TwoHeads(), batch()
    losses = {"kind": TaskLoss("multiclass"), "flag": TaskLoss("binary")}
    plain = SupervisedObjective(losses)(model, b)
    assert set(plain) == {term_name("kind"), term_name("flag"), TOTAL}
    assert torch.allclose(plain[TOTAL], plain["task.kind"] + plain["task.flag"])
    weighted = SupervisedObjective(losses, {"kind": 0.4, "flag": 0.6})(model, b)
    assert torch.allclose(weighted[TOTAL], 0.4 * plain["task.kind"] + 0.6 * plain["task.flag"])


def test_label_smoothing_moves_targets_towards_uniform():
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0]])
    target = torch.tensor([0, 1])
    assert TaskLoss("multiclass", label_smoothing=0.2)(logits, target) > TaskLoss("multiclass")(logits, target)
    sure = torch.tensor([[8.0], [-8.0]])
    flags = torch.tensor([1.0, 0.0])
    assert TaskLoss("binary", label_smoothing=0.2)(sure, flags) > TaskLoss("binary")(sure, flags)


def test_items_without_a_label_do_not_count():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
    target = torch.tensor([0, 1, 1])
    mask = torch.tensor([True, True, False])
    assert torch.allclose(TaskLoss("multiclass")(logits, target, mask), TaskLoss("multiclass")(logits[:2], target[:2]))
    none = TaskLoss("multiclass")(logits.requires_grad_(), target, torch.zeros(3, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_the_step_is_the_same_under_functional_call():
    torch.manual_seed(0)
    model, b = TwoHeads(), batch()
    objective = SupervisedObjective({"kind": TaskLoss("multiclass"), "flag": TaskLoss("binary")})
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    direct = objective(model, b)[TOTAL]
    functional = objective(lambda x: torch.func.functional_call(model, params, (x,)), b)[TOTAL]
    assert torch.equal(direct, functional)
    # A look-ahead with other parameters changes the loss, and leaves the model's own alone.
    shifted = {k: v + 0.1 for k, v in params.items()}
    ahead = objective(lambda x: torch.func.functional_call(model, shifted, (x,)), b)[TOTAL]
    assert not torch.equal(ahead, direct) and torch.equal(objective(model, b)[TOTAL], direct)


@pytest.mark.parametrize("kind", ["binary", "multilabel", "regression"])
def test_masked_losses_of_every_kind(kind):
    logits = torch.randn(4, 1 if kind != "multilabel" else 3)
    target = torch.rand(4) if kind != "multilabel" else (torch.rand(4, 3) > 0.5).float()
    if kind == "binary":
        target = (target > 0.5).float()
    mask = torch.tensor([True, False, True, True])
    assert torch.allclose(TaskLoss(kind)(logits, target, mask), TaskLoss(kind)(logits[mask], target[mask]))


def test_class_weights_and_pos_weight_weigh_each_item_s_loss():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 3.0]])
    target = torch.tensor([0, 1, 2])
    weight = torch.tensor([1.0, 2.0, 5.0])
    picked = torch.log_softmax(logits, dim=1)[torch.arange(3), target]
    expected = -(weight[target] * picked).sum() / weight[target].sum()  # weighted mean over items
    assert torch.allclose(TaskLoss("multiclass", weight=weight)(logits, target), expected)

    flags_logits, flags = torch.tensor([[1.5], [-0.5], [0.2]]), torch.tensor([1.0, 0.0, 1.0])
    p = torch.sigmoid(flags_logits[:, 0])
    expected = -(3.0 * flags * torch.log(p) + (1 - flags) * torch.log(1 - p)).mean()  # positives count 3x
    assert torch.allclose(TaskLoss("binary", weight=torch.tensor([3.0]))(flags_logits, flags), expected)


def test_binary_label_smoothing_moves_each_target_by_half_the_smoothing():
    logits, flags = torch.tensor([[2.0], [-1.0], [0.3]]), torch.tensor([1.0, 0.0, 1.0])
    smoothed = flags * 0.8 + 0.1  # s = 0.2: 1 -> 0.9, 0 -> 0.1
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], smoothed)
    assert torch.allclose(TaskLoss("binary", label_smoothing=0.2)(logits, flags), expected)


def test_a_task_s_target_mask_reaches_its_loss_through_the_objective():
    torch.manual_seed(0)
    model, b = TwoHeads(), batch()
    mask = torch.tensor([True, False, True, True, False, True])
    masked = Batch(features=b.features, targets=b.targets, target_masks={"flag": mask})
    objective = SupervisedObjective({"kind": TaskLoss("multiclass"), "flag": TaskLoss("binary")})
    terms = objective(model, masked)
    outputs = model(b)
    assert torch.allclose(terms["task.flag"], TaskLoss("binary")(outputs["flag"][mask], b.targets["flag"][mask]))
    assert torch.allclose(terms["task.kind"], TaskLoss("multiclass")(outputs["kind"], b.targets["kind"]))


class _WithAuxiliary(torch.nn.Module):
    """Logits from one linear layer; with ``auxiliary`` also a named extra loss."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def forward(self, batch, auxiliary=False):
        logits = {"y": self.layer(batch.features["x"])}
        if not auxiliary:
            return logits
        return logits, {"align": 0.5 * self.layer.weight.pow(2).sum()}


def test_auxiliary_objective_adds_the_models_extra_losses_as_named_terms():
    from mmtk.training import AuxiliaryObjective

    torch.manual_seed(0)
    model = _WithAuxiliary()
    batch = Batch(features={"x": torch.randn(6, 2)}, targets={"y": torch.tensor([0.0, 1, 1, 0, 1, 0])})
    supervised = SupervisedObjective({"y": TaskLoss("binary")})
    terms = AuxiliaryObjective(supervised)(model, batch)
    expected_aux = 0.5 * model.layer.weight.pow(2).sum()
    assert set(terms) == {term_name("y"), "aux.align", TOTAL}
    assert torch.allclose(terms["aux.align"], expected_aux)
    assert torch.allclose(terms[TOTAL], terms[term_name("y")] + expected_aux)
    # Validation compares task losses only: terms() of outputs carries no auxiliary term.
    validated = AuxiliaryObjective(supervised).terms(model(batch), batch)
    assert set(validated) == {term_name("y"), TOTAL}
    assert torch.allclose(validated[TOTAL], terms[term_name("y")])
