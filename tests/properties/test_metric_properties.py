"""Metrics against scikit-learn on random labels and scores (Hypothesis): the names mmtk
reports are the sklearn figures they claim to be, whatever the label mix, including
classes that never occur or are never predicted."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mmtk.metrics import METRICS, check_thresholds, compute_metrics, parse_fail_under

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def single_label(draw, kind):
    classes = 2 if kind == "binary" else draw(st.integers(3, 5))
    n = draw(st.integers(1, 40))
    y = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    # Scores on a coarse grid so ties (argmax picks the first) happen too.
    scores = np.array(draw(st.lists(st.lists(st.integers(0, 4), min_size=classes, max_size=classes), min_size=n, max_size=n)), float)
    probs = (scores + 0.5) / (scores + 0.5).sum(axis=1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@SETTINGS
@given(data=st.data())
def test_single_label_metrics_are_sklearn_s(kind, data):
    y, probs = data.draw(single_label(kind))
    result = compute_metrics(kind, y, probs)
    pred = probs.argmax(axis=1)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "macro_f1": skm.f1_score(y, pred, average="macro", zero_division=0),
        "micro_f1": skm.f1_score(y, pred, average="micro", zero_division=0),
        "weighted_f1": skm.f1_score(y, pred, average="weighted", zero_division=0),
    }
    if kind == "binary":
        expected["f1"] = skm.f1_score(y, pred, zero_division=0)
        if len(set(y)) == 2:
            expected["roc_auc"] = skm.roc_auc_score(y, probs[:, 1])
    assert result == pytest.approx(expected)
    assert set(result) <= set(METRICS[kind])
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in result.values())


@SETTINGS
@given(data=st.data())
def test_multilabel_metrics_are_sklearn_s_over_the_labels_that_occur(data):
    n = data.draw(st.integers(1, 30))
    c = data.draw(st.integers(1, 5))
    y = np.array(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=c, max_size=c), min_size=n, max_size=n)))
    probs = np.array(data.draw(st.lists(st.lists(st.integers(0, 10), min_size=c, max_size=c), min_size=n, max_size=n))) / 10
    result = compute_metrics("multilabel", y, probs)
    # The definitions, written out: F1 over all cells (micro), per label (macro) and per
    # item (samples), 0 where nothing is true or predicted; AP per label / item that has
    # a positive. sklearn's multilabel averaging is not used as the reference because it
    # reads a one-column matrix as a binary target.
    pred = (probs >= 0.5).astype(int)

    def f1(truth, guess):
        tp, wrong = (truth & guess).sum(), (truth ^ guess).sum()
        return 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0

    expected = {
        "accuracy": float(np.mean((y == pred).all(axis=1))),
        "micro_f1": f1(y, pred),
        "macro_f1": float(np.mean([f1(y[:, j], pred[:, j]) for j in range(c)])),
        "samples_f1": float(np.mean([f1(y[i], pred[i]) for i in range(n)])),
    }
    if y.sum():
        expected["micro_ap"] = skm.average_precision_score(y.ravel(), probs.ravel())
        expected["macro_ap"] = np.mean([skm.average_precision_score(y[:, j], probs[:, j]) for j in range(c) if y[:, j].any()])
        expected["samples_ap"] = np.mean([_ap(y[i], probs[i]) for i in range(n) if y[i].any()])
    assert result == pytest.approx(expected)
    assert all(not math.isnan(v) for v in result.values())


def _ap(truth, scores):
    """Average precision of one item's labels ranked by score (ties ranked together)."""
    return skm.average_precision_score(truth, scores) if len(truth) > 1 else 1.0


@SETTINGS
@given(
    pairs=st.lists(
        st.tuples(st.floats(-1e3, 1e3, allow_nan=False), st.floats(-1e3, 1e3, allow_nan=False)), min_size=1, max_size=40
    )
)
def test_regression_metrics_are_sklearn_s(pairs):
    y, v = (np.array(column) for column in zip(*pairs))
    result = compute_metrics("regression", y, v)
    assert result["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, v)), rel=1e-9, abs=1e-9)
    assert result["mae"] == pytest.approx(skm.mean_absolute_error(y, v), rel=1e-9, abs=1e-9)
    assert result["mae"] <= result["rmse"] + 1e-9
    if len(y) >= 2:
        assert result["r2"] == pytest.approx(skm.r2_score(y, v), rel=1e-9, abs=1e-9)
    else:
        assert "r2" not in result


@SETTINGS
@given(value=st.floats(0, 1), threshold=st.floats(0, 1), error=st.sampled_from(["rmse", "mae"]))
def test_a_gate_fails_exactly_when_the_metric_is_on_the_wrong_side(value, threshold, error):
    score = {"task": "t", "n": 1, "metrics": {"accuracy": value, "macro_f1": value, "micro_f1": value, "weighted_f1": value}}
    assert bool(check_thresholds(score, [parse_fail_under(f"accuracy={threshold!r}")])) == (value < threshold)
    loss = {"task": "t", "n": 1, "metrics": {"rmse": value, "mae": value}}
    assert bool(check_thresholds(loss, [parse_fail_under(f"{error}={threshold!r}")])) == (value > threshold)
