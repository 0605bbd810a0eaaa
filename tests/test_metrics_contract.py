"""The metrics' edges and messages: what users see when a metric is undefined, when
nothing is predicted, and the exact one-line errors and hints of --fail-under."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mmtk.errors import UsageError
from mmtk.metrics import check_thresholds, compute_metrics, parse_fail_under

HINT = "write METRIC=VALUE or TASK.METRIC=VALUE, e.g. --fail-under macro_f1=0.7"


@pytest.mark.parametrize(
    "kind, y, outputs, classes, message",
    [
        ("binary", [0, 1, 1], [[0.5, 0.5]] * 2, None, "3 labels but 2 predictions"),
        ("regression", [], [], None, "no items to score"),
        ("binary", [0, 1], [[0.2, 0.3, 0.5]] * 2, ["a", "b"], "3 probability columns for 2 classes"),
        ("ordinal", [0, 1], [[0.5, 0.5]] * 2, None, "unknown task kind 'ordinal'"),
    ],
)
def test_misuse_is_a_value_error_saying_what_is_wrong(kind, y, outputs, classes, message):
    with pytest.raises(ValueError) as error:
        compute_metrics(kind, np.array(y), np.array(outputs), classes)
    assert str(error.value) == message


def test_one_item_is_scored_and_r2_needs_two():
    assert compute_metrics("regression", np.array([2.0]), np.array([1.5])) == {"rmse": 0.5, "mae": 0.5}
    two = compute_metrics("regression", np.array([1.0, 3.0]), np.array([1.5, 2.0]))
    assert two["r2"] == pytest.approx(skm.r2_score([1.0, 3.0], [1.5, 2.0]))
    assert compute_metrics("binary", np.array([1]), np.array([[0.2, 0.8]]))["accuracy"] == 1.0


def test_class_names_are_checked_only_against_probability_columns():
    # Regression outputs are values, not columns: classes (empty for regression) are not compared.
    assert set(compute_metrics("regression", np.array([1.0, 2.0]), np.array([1.0, 2.5]), classes=[])) == {"rmse", "mae", "r2"}
    assert compute_metrics("binary", np.array([0, 1]), np.array([[0.9, 0.1], [0.4, 0.6]]), classes=["no", "yes"])["accuracy"] == 1.0


def test_labels_may_come_as_floats_or_strings_of_integers():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    expected = compute_metrics("binary", np.array([0, 1, 1]), probs)
    assert compute_metrics("binary", np.array([0.0, 1.0, 1.0]), probs) == expected
    assert compute_metrics("binary", [0, 1, 1], probs.tolist()) == expected


def test_positive_class_f1_is_zero_when_no_item_is_or_is_predicted_positive():
    result = compute_metrics("binary", np.array([0, 0, 0]), np.array([[0.8, 0.2]] * 3))
    assert result["f1"] == 0.0 and result["accuracy"] == 1.0 and "roc_auc" not in result


def test_multilabel_labels_and_items_with_nothing_true_or_predicted_score_zero():
    # Label 2 is never true nor predicted; item 2 has no true and no predicted label.
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    probs = np.array([[0.9, 0.1, 0.1], [0.2, 0.8, 0.1], [0.1, 0.2, 0.3]])
    result = compute_metrics("multilabel", y, probs)
    assert result["macro_f1"] == pytest.approx(2 / 3)
    assert result["samples_f1"] == pytest.approx(2 / 3)
    assert result["micro_f1"] == 1.0 and result["accuracy"] == 1.0


def test_average_precision_needs_one_positive_and_counts_a_label_with_one():
    nothing = compute_metrics("multilabel", np.zeros((3, 2), int), np.full((3, 2), 0.3))
    assert not {"micro_ap", "macro_ap", "samples_ap"} & set(nothing)
    # One positive in the whole matrix: every AP is defined, label 0 alone counts.
    y = np.array([[1, 0], [0, 0], [0, 0]])
    probs = np.array([[0.6, 0.9], [0.7, 0.2], [0.1, 0.3]])
    result = compute_metrics("multilabel", y, probs)
    assert result["macro_ap"] == pytest.approx(skm.average_precision_score(y[:, 0], probs[:, 0]))
    assert result["micro_ap"] == pytest.approx(skm.average_precision_score(y.ravel(), probs.ravel()))
    assert result["samples_ap"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("macro_f1", "--fail-under 'macro_f1' is not METRIC=VALUE"),
        ("=0.5", "--fail-under '=0.5' is not METRIC=VALUE"),
        ("macro_f1=high", "--fail-under 'macro_f1=high': 'high' is not a number"),
        ("macro_f1=0.7=0.8", "--fail-under 'macro_f1=0.7=0.8': '0.7=0.8' is not a number"),
        ("macro_f1=inf", "--fail-under 'macro_f1=inf': the value must be a finite number"),
    ],
)
def test_bad_fail_under_specs_say_what_to_write(spec, message):
    with pytest.raises(UsageError) as error:
        parse_fail_under(spec)
    assert (error.value.message, error.value.hint) == (message, HINT)


def test_an_unknown_task_lists_the_run_s_tasks():
    result = {"n": 2, "tasks": {"a": {"task": "a", "n": 2, "metrics": {"rmse": 1.0, "mae": 1.0}},
                                "b": {"task": "b", "n": 2, "metrics": {"rmse": 1.0, "mae": 1.0}}}}
    with pytest.raises(UsageError) as error:
        check_thresholds(result, [parse_fail_under("c.rmse=1")])
    assert (error.value.message, error.value.hint) == ("--fail-under c.rmse: no task 'c' in this run", "choose one of: a, b")


def test_an_unknown_metric_names_the_task_kind():
    multiclass = {"task": "genre", "n": 3, "metrics": {"accuracy": 1.0, "macro_f1": 1.0, "micro_f1": 1.0, "weighted_f1": 1.0}}
    with pytest.raises(UsageError) as error:
        check_thresholds(multiclass, [parse_fail_under("roc_auc=0.5")])
    assert error.value.message == "--fail-under roc_auc: unknown metric 'roc_auc' for multiclass task 'genre'"
    assert error.value.hint == "choose one of: accuracy, macro_f1, micro_f1, weighted_f1"


# --- --fail-under at exact equality ---------------------------------------------------

SINGLE = {"task": "label", "n": 4, "metrics": {"accuracy": 0.75, "macro_f1": 0.5, "micro_f1": 0.75, "weighted_f1": 0.7, "f1": 0.5}}
REGRESSION = {"task": "price", "n": 4, "metrics": {"rmse": 0.25, "mae": 0.125, "r2": 0.5}}


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "f1"])
def test_a_score_equal_to_its_floor_passes(metric):
    value = SINGLE["metrics"][metric]
    assert check_thresholds(SINGLE, [parse_fail_under(f"{metric}={value!r}")]) == []
    above = math.nextafter(value, 1.0)
    assert check_thresholds(SINGLE, [parse_fail_under(f"{metric}={above!r}")]) == [
        f"{metric} = {value:.4f} is below the required {above:g}"
    ]


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_an_error_equal_to_its_ceiling_passes(metric):
    value = REGRESSION["metrics"][metric]
    assert check_thresholds(REGRESSION, [parse_fail_under(f"{metric}={value!r}")]) == []
    below = math.nextafter(value, 0.0)
    assert check_thresholds(REGRESSION, [parse_fail_under(f"{metric}={below!r}")]) == [
        f"{metric} = {value:.4f} is above the allowed {below:g}"
    ]


# --- a multilabel task with one label ----------------------------------------------------


def test_multilabel_task_with_a_single_label_scores_that_label():
    """A list column where one label ever occurs: scikit-learn would read the one-column
    matrix as a binary target (micro F1 = accuracy over 0s and 1s, samples F1 an error)."""
    y = np.array([[1], [0], [0], [1], [0]])
    probs = np.array([[0.9], [0.6], [0.2], [0.4], [0.1]])
    result = compute_metrics("multilabel", y, probs)
    # predicted [1, 1, 0, 0, 0]: one true positive, one false positive, one miss.
    assert result["micro_f1"] == result["macro_f1"] == pytest.approx(0.5)
    assert result["samples_f1"] == pytest.approx(1 / 5)  # only item 0 is right and non-empty
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["micro_ap"] == result["macro_ap"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["samples_ap"] == 1.0


def test_multilabel_with_nothing_true_and_nothing_predicted_scores_zero_f1():
    result = compute_metrics("multilabel", np.zeros((3, 2), int), np.full((3, 2), 0.1))
    assert (result["micro_f1"], result["macro_f1"], result["samples_f1"]) == (0.0, 0.0, 0.0)
    assert result["accuracy"] == 1.0
