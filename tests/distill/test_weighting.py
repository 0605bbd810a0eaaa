"""MSD's per-item view weights against hand computations."""

from __future__ import annotations

import pytest
import torch

from distill_batches import teacher_batch, views
from mmtk.distill.losses import cross_entropy_per_item, kl_per_item
from mmtk.distill.views import FULL, only_view, teacher_key
from mmtk.distill.weighting import WeightingChoice
from mmtk.errors import UsageError

KINDS = {"y": "multiclass"}


def test_none_distils_the_full_view_only_and_population_fixes_one_weight_per_view():
    batch = teacher_batch()
    none = WeightingChoice("none").build(views(False), ("image", "text"), 1.0)(batch, KINDS)
    assert list(none) == [FULL] and torch.equal(none[FULL], torch.ones(6))
    population = WeightingChoice("population", {only_view("text"): 0.25}).build(views(), ("image", "text"), 1.0)(batch, KINDS)
    assert population[only_view("text")].tolist() == [0.25] * 6
    assert population[only_view("image")].tolist() == [1.0] * 6


def test_population_weights_must_name_a_view():
    with pytest.raises(UsageError, match="only:audio"):
        WeightingChoice("population", {"only:audio": 0.5}).build(views(), ("image", "text"), 1.0)


def test_importance_weighs_a_modality_by_how_much_its_removal_moves_the_teacher():
    batch = teacher_batch()
    weights = WeightingChoice("importance").build(views(), ("image", "text"), 1.0)(batch, KINDS)
    full = batch.targets[teacher_key(FULL, "y")]
    # Text-only weight: KL(t(x) || t(x_image-only)), the teacher without its text.
    expected_text = torch.tanh(kl_per_item("multiclass", full, batch.targets[teacher_key(only_view("image"), "y")]))
    expected_image = torch.tanh(kl_per_item("multiclass", full, batch.targets[teacher_key(only_view("text"), "y")]))
    assert torch.allclose(weights[only_view("text")], expected_text)
    assert torch.allclose(weights[only_view("image")], expected_image)
    assert torch.equal(weights[FULL], torch.ones(6))


def test_correctness_weights_are_inverse_teacher_losses_normalised_over_views():
    batch = teacher_batch()
    batch.target_masks["y"] = torch.tensor([True, True, True, True, True, False])
    weights = WeightingChoice("correctness").build(views(), ("image", "text"), 1.0)(batch, KINDS)
    inverse = torch.stack([
        1 / cross_entropy_per_item("multiclass", batch.targets[teacher_key(view, "y")], batch.targets["y"])
        for view in views().names
    ])
    expected = inverse / inverse.sum(0)
    for i, view in enumerate(views().names):
        assert torch.allclose(weights[view][:5], expected[i, :5], atol=1e-5)
        assert weights[view][5] == pytest.approx(1 / 3)  # no label: equal weights
    total = sum(weights.values())
    assert torch.allclose(total, torch.ones(6))


def test_importance_needs_exactly_two_groups():
    with pytest.raises(UsageError, match="two modality groups"):
        WeightingChoice("importance").build(views(), ("image", "text", "audio"), 1.0)(teacher_batch(), KINDS)
