"""Averaging over views in log space, against figures worked out by hand for two views
(an average of probabilities would give other numbers in every case)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmtk.models.objectives import to_outputs
from mmtk.tta.combine import average_log_probs, average_views, average_weights


def logit(p):
    return math.log(p / (1 - p))


def test_multiclass_is_the_renormalised_geometric_mean():
    views = [torch.log(torch.tensor([[0.5, 0.25, 0.25]])), torch.log(torch.tensor([[0.25, 0.5, 0.25]]))]
    # sqrt(0.5 * 0.25) = 0.35355 twice and 0.25, over their sum 0.95711.
    expected = np.array([0.35355339, 0.35355339, 0.25]) / 0.95710678
    np.testing.assert_allclose(to_outputs("multiclass", average_log_probs("multiclass", views))[0], expected, rtol=1e-6)
    # The averaged logits are log-probabilities: exp sums to the renormalising factor.
    assert float(torch.exp(average_log_probs("multiclass", views)).sum()) == pytest.approx(0.95710678, rel=1e-6)


def test_binary_renormalises_both_classes():
    views = [torch.tensor([[logit(0.8)]]), torch.tensor([[logit(0.5)]])]
    # sqrt(0.8 * 0.5) : sqrt(0.2 * 0.5) = 2 : 1, so p = 2/3 (the mean of probabilities: 0.65).
    np.testing.assert_allclose(to_outputs("binary", average_log_probs("binary", views))[0], [1 / 3, 2 / 3], rtol=1e-6)


def test_multilabel_is_the_geometric_mean_per_label():
    views = [torch.tensor([[logit(0.8), logit(0.9)]]), torch.tensor([[logit(0.5), logit(0.1)]])]
    # exp(mean(log p)) per label: sqrt(0.4) and sqrt(0.09).
    np.testing.assert_allclose(to_outputs("multilabel", average_log_probs("multilabel", views))[0], [math.sqrt(0.4), 0.3], rtol=1e-5)


def test_regression_is_the_mean_value():
    views = [torch.tensor([[1.0]]), torch.tensor([[3.0]])]
    assert to_outputs("regression", average_log_probs("regression", views), {"mean": 10.0, "std": 2.0})[0] == pytest.approx(14.0)


def test_every_task_and_the_gate_weights():
    views = [{"a": torch.tensor([[0.0]]), "b": torch.tensor([[2.0]])}, {"a": torch.tensor([[2.0]]), "b": torch.tensor([[4.0]])}]
    averaged = average_views({"a": "binary", "b": "regression"}, views)
    assert float(averaged["b"]) == pytest.approx(3.0)
    assert float(averaged["a"]) == pytest.approx(float(average_log_probs("binary", [v["a"] for v in views])))
    weights = average_weights([{"img": torch.tensor([0.2, 0.4])}, {"img": torch.tensor([0.6, 0.8])}])
    np.testing.assert_allclose(weights["img"].numpy(), [0.4, 0.6])
    assert average_weights([None, None]) is None
