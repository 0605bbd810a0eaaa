"""Distillation losses against their definitions, on hand-checkable tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmtk.distill import losses


def test_multiclass_kl_matches_the_definition_at_a_temperature():
    torch.manual_seed(0)
    t, s = torch.randn(5, 4), torch.randn(5, 4)
    expected = F.kl_div(F.log_softmax(s / 3, -1), F.softmax(t / 3, -1), reduction="none").sum(-1)
    assert torch.allclose(losses.kl_per_item("multiclass", t, s, tau=3.0), expected, atol=1e-6)


def test_binary_kl_is_the_two_class_kl_of_the_sigmoid_outputs():
    t, s = torch.tensor([[2.0], [-1.0], [0.0]]), torch.tensor([[0.5], [1.0], [0.0]])
    two_class = lambda x: torch.cat([torch.zeros_like(x), x], dim=1)  # softmax([0, x]) = [1 - sig, sig]
    expected = losses.kl_per_item("multiclass", two_class(t), two_class(s))
    assert torch.allclose(losses.kl_per_item("binary", t, s), expected, atol=1e-6)
    assert losses.kl_per_item("binary", t, s)[2] == 0


def test_multilabel_kl_averages_the_labels_and_is_zero_for_equal_outputs():
    t = torch.tensor([[3.0, -3.0]])
    s = torch.tensor([[3.0, 3.0]])
    per_label = losses.kl_per_item("binary", t[:, 1:], s[:, 1:])
    assert torch.allclose(losses.kl_per_item("multilabel", t, s), per_label / 2)
    assert losses.kl_per_item("multilabel", t, t).abs().max() < 1e-7


def test_regression_cannot_be_distilled():
    with pytest.raises(ValueError, match="classification"):
        losses.kl_per_item("regression", torch.zeros(2, 1), torch.zeros(2, 1))


def test_fitnet_is_the_mse_through_the_projection():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(losses.fitnet(student, teacher, torch.nn.Identity()), F.mse_loss(student, teacher))


def test_relational_losses_ignore_scale_and_rotation_but_not_structure():
    torch.manual_seed(1)
    teacher = torch.randn(6, 5)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5))
    same_structure = 2.5 * teacher @ rotation
    assert losses.rkd_distance(same_structure, teacher) < 1e-6
    assert losses.rkd_angle(same_structure, teacher) < 1e-6
    assert losses.similarity_preserving(teacher @ rotation, teacher) < 1e-6
    other = torch.randn(6, 5)
    assert losses.rkd_distance(other, teacher) > 1e-3
    assert losses.rkd_angle(other, teacher) > 1e-3
    assert losses.similarity_preserving(other, teacher) > 1e-3


def test_relational_losses_accept_states_of_other_widths_and_give_finite_gradients():
    student = torch.randn(5, 3, requires_grad=True)
    teacher = torch.randn(5, 8)
    total = losses.rkd_distance(student, teacher) + losses.rkd_angle(student, teacher)
    total.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
