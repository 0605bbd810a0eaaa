"""The metrics of all bootstrap resamples at once equal ``compute_metrics`` on each
resample's items, for every task kind: the bootstrap's intervals and p-values rest on it."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.bootstrap import counts_of, resample_indices
from mmtk.metrics import METRICS, compute_metrics
from mmtk.resampled_metrics import resampled_metrics


def make(kind: str, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Labels and outputs rounded to one decimal, so that scores tie (ranking metrics
    must treat ties as scikit-learn does) and small resamples miss classes."""
    if kind == "binary":
        y = rng.integers(0, 2, n)
        p = rng.random(n).round(1)
        return y, np.stack([1 - p, p], axis=1)
    if kind == "multiclass":
        return rng.integers(0, 4, n), rng.dirichlet(np.ones(4), n).round(1)
    if kind == "multilabel":
        return (rng.random((n, 3)) < 0.3).astype(np.int64), rng.random((n, 3)).round(1)
    if kind == "multilabel-1":
        return (rng.random((n, 1)) < 0.4).astype(np.int64), rng.random((n, 1)).round(1)
    y = rng.normal(size=n)
    return y, y + rng.normal(size=n)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "multilabel-1", "regression"])
@pytest.mark.parametrize("n", [3, 15, 60])
def test_each_resample_matches_compute_metrics(kind, n):
    rng = np.random.default_rng(n)
    y, outputs = make(kind, n, rng)
    kind = kind.removesuffix("-1")
    indices = next(resample_indices(n, 25, seed=n))
    got = resampled_metrics(kind, y, outputs, counts_of(indices, n))
    assert set(got) == set(METRICS[kind])
    for b, rows in enumerate(indices):
        expected = compute_metrics(kind, y[rows], outputs[rows])
        for metric, values in got.items():
            if metric in expected:
                assert values[b] == pytest.approx(expected[metric], abs=1e-10), (metric, b)
            else:  # undefined on this resample (one class, no positive): NaN, never a number that looks real
                assert np.isnan(values[b]), (metric, b)


def test_undefined_metrics_are_nan_on_the_resamples_that_lack_a_class():
    y = np.array([0, 0, 0, 1])
    outputs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])
    counts = np.array([[4, 0, 0, 0], [1, 1, 1, 1]])  # the first resample holds item 0 only
    got = resampled_metrics("binary", y, outputs, counts)
    assert np.isnan(got["roc_auc"][0]) and got["roc_auc"][1] == pytest.approx(1.0)
    assert got["accuracy"].tolist() == pytest.approx([1.0, 0.75])
