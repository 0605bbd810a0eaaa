"""Metric values match scikit-learn on hand-made examples; --fail-under parses and gates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mmtk.errors import UsageError
from mmtk.metrics import METRICS, Threshold, check_thresholds, compute_metrics, parse_fail_under


def test_binary_metrics_equal_sklearn():
    y = np.array([0, 0, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.2])
    result = compute_metrics("binary", y, np.stack([1 - p1, p1], 1), ["0", "1"])
    pred = (p1 >= 0.5).astype(int)
    assert list(result) == list(METRICS["binary"])
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert result["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert result["micro_f1"] == pytest.approx(4 / 6)
    assert result["roc_auc"] == pytest.approx(8 / 9)


def test_roc_auc_is_omitted_when_one_class_is_present():
    result = compute_metrics("binary", np.array([1, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]))
    assert "roc_auc" not in result
    assert result["accuracy"] == 0.5


def test_multiclass_metrics_equal_sklearn():
    y = np.array([0, 1, 2, 2, 1, 0, 2])
    probs = np.array([[.7, .2, .1], [.1, .8, .1], [.2, .2, .6], [.5, .1, .4], [.3, .3, .4], [.6, .3, .1], [.1, .1, .8]])
    result = compute_metrics("multiclass", y, probs, ["a", "b", "c"])
    pred = probs.argmax(1)
    assert list(result) == list(METRICS["multiclass"])
    for average in ("macro", "micro", "weighted"):
        assert result[f"{average}_f1"] == pytest.approx(skm.f1_score(y, pred, average=average))
    assert result["accuracy"] == pytest.approx(5 / 7)


def test_multilabel_metrics_and_average_precision():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    probs = np.array([[.9, .2, .4], [.3, .7, .1], [.6, .4, .5], [.2, .1, .8]])
    result = compute_metrics("multilabel", y, probs, ["x", "y", "z"])
    pred = (probs >= 0.5).astype(int)
    assert set(result) == set(METRICS["multilabel"])
    assert result["accuracy"] == pytest.approx(0.5)  # subset accuracy: items 2 and 4 exact
    for average in ("micro", "macro", "samples"):
        assert result[f"{average}_f1"] == pytest.approx(skm.f1_score(y, pred, average=average))
        assert result[f"{average}_ap"] == pytest.approx(skm.average_precision_score(y, probs, average=average))
    # By hand: label z ranks its positives 1st and 3rd among 4 -> AP = (1 + 2/3) / 2.
    per_label = skm.average_precision_score(y, probs, average=None)
    assert per_label[2] == pytest.approx((1 + 2 / 3) / 2)
    assert result["macro_ap"] == pytest.approx(per_label.mean())


def test_labels_without_positives_do_not_count_in_macro_and_samples_ap():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    probs = np.array([[.9, .8], [.2, .1], [.7, .3]])
    result = compute_metrics("multilabel", y, probs)
    assert result["macro_ap"] == pytest.approx(1.0)
    assert result["samples_ap"] == pytest.approx(skm.average_precision_score(y[[0, 2]], probs[[0, 2]], average="samples"))


def test_regression_metrics():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([1.5, 2.0, 2.0, 5.0])
    result = compute_metrics("regression", y, v)
    assert result["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert result["mae"] == pytest.approx(2.5 / 4)
    assert result["r2"] == pytest.approx(skm.r2_score(y, v))


def test_parse_fail_under():
    assert parse_fail_under("macro_f1=0.7") == Threshold("macro_f1", 0.7)
    assert parse_fail_under(" sentiment.macro_f1 = 0.5") == Threshold("macro_f1", 0.5, "sentiment")
    assert parse_fail_under("a.b.roc_auc=0.6") == Threshold("roc_auc", 0.6, "a.b")
    for bad in ("macro_f1", "macro_f1=high", "=0.5", "macro_f1=nan"):
        with pytest.raises(UsageError, match="--fail-under"):
            parse_fail_under(bad)


SINGLE = {"task": "label", "n": 10, "metrics": {"accuracy": 0.8, "macro_f1": 0.65, "micro_f1": 0.8, "weighted_f1": 0.7, "f1": 0.6}}


def test_threshold_misses_are_reported_and_passes_are_not():
    checks = [parse_fail_under("macro_f1=0.7"), parse_fail_under("accuracy=0.75")]
    assert check_thresholds(SINGLE, checks) == ["macro_f1 = 0.6500 is below the required 0.7"]
    assert check_thresholds(SINGLE, [parse_fail_under("label.macro_f1=0.6")]) == []


def test_undefined_metric_is_a_miss_and_unknown_metric_lists_the_valid_ones():
    assert "undefined" in check_thresholds(SINGLE, [parse_fail_under("roc_auc=0.5")])[0]
    with pytest.raises(UsageError, match="unknown metric 'rmse'.*accuracy, macro_f1"):
        check_thresholds(SINGLE, [parse_fail_under("rmse=1")])


def test_multi_task_thresholds_need_a_task_name():
    result = {"n": 10, "tasks": {"a": dict(SINGLE, task="a"), "b": {"task": "b", "n": 10, "metrics": {"rmse": 2.0, "mae": 1.0}}}}
    with pytest.raises(UsageError, match="several tasks \\(a, b\\).*a.macro_f1=0.7"):
        check_thresholds(result, [parse_fail_under("macro_f1=0.7")])
    with pytest.raises(UsageError, match="no task 'c'"):
        check_thresholds(result, [parse_fail_under("c.macro_f1=0.7")])
    # Error metrics are ceilings.
    assert check_thresholds(result, [parse_fail_under("b.rmse=1.5")]) == ["b.rmse = 2.0000 is above the allowed 1.5"]
    assert check_thresholds(result, [parse_fail_under("b.rmse=2.5"), parse_fail_under("a.accuracy=0.8")]) == []
