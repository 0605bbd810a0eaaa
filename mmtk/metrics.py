"""Shared-task metrics with snake_case names, and ``--fail-under`` thresholds.

Names per task kind (``METRICS``):
- binary: accuracy, macro_f1, micro_f1, weighted_f1, f1 (of the positive class), roc_auc
- multiclass: accuracy, macro_f1, micro_f1, weighted_f1
- multilabel: accuracy (subset accuracy), micro_f1, macro_f1, samples_f1,
  micro_ap, macro_ap, samples_ap
- regression: rmse, mae, r2

Undefined metrics are omitted rather than reported as a number that looks real:
``roc_auc`` when the labels hold one class only, ``r2`` with fewer than two items, and
average precision is averaged only over the labels (``macro_ap``) or items
(``samples_ap``) that have at least one positive: scikit-learn scores a label with no
positives as 0, which would punish a model for data the evaluation set does not contain.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mmtk.errors import UsageError

METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "f1", "roc_auc"),
    "multiclass": ("accuracy", "macro_f1", "micro_f1", "weighted_f1"),
    "multilabel": ("accuracy", "micro_f1", "macro_f1", "samples_f1", "micro_ap", "macro_ap", "samples_ap"),
    "regression": ("rmse", "mae", "r2"),
}
# Error metrics: a --fail-under threshold on them is a ceiling (fail when above).
LOWER_IS_BETTER = frozenset({"rmse", "mae"})


def task_result(per_task: dict[str, dict]) -> dict:
    """Evaluate's JSON shape: the single task's entry, or ``{"n", "tasks"}`` for several."""
    if len(per_task) == 1:
        return next(iter(per_task.values()))
    return {"n": next(iter(per_task.values()))["n"], "tasks": per_task}


def compute_metrics(kind: str, y_true: np.ndarray, outputs: np.ndarray, classes: Sequence[str] | None = None) -> dict[str, float]:
    """Metrics of one task.

    ``y_true``: class indices ``(N,)`` for binary/multiclass, a 0/1 matrix ``(N, C)`` for
    multilabel, values ``(N,)`` for regression. ``outputs``: probabilities ``(N, C)``
    (binary: ``C = 2``, column 1 the positive class) or predicted values ``(N,)``.
    ``classes`` names the columns; it is only used to check the shapes agree.
    """
    y_true = np.asarray(y_true)
    outputs = np.asarray(outputs, dtype=np.float64)
    if len(y_true) != len(outputs):
        raise ValueError(f"{len(y_true)} labels but {len(outputs)} predictions")
    if len(y_true) == 0:
        raise ValueError("no items to score")
    if classes is not None and kind != "regression" and outputs.shape[1] != len(classes):
        raise ValueError(f"{outputs.shape[1]} probability columns for {len(classes)} classes")
    with warnings.catch_warnings():
        # zero_division and undefined cases are handled explicitly below.
        warnings.simplefilter("ignore")
        if kind in ("binary", "multiclass"):
            return _single_label(kind, y_true.astype(np.int64), outputs)
        if kind == "multilabel":
            return _multilabel(y_true.astype(np.int64), outputs)
        if kind == "regression":
            return _regression(y_true.astype(np.float64), outputs)
    raise ValueError(f"unknown task kind {kind!r}")


def _single_label(kind: str, y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    pred = probs.argmax(axis=1)
    result = {
        "accuracy": accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, average="macro", zero_division=0),
        "micro_f1": f1_score(y, pred, average="micro", zero_division=0),
        "weighted_f1": f1_score(y, pred, average="weighted", zero_division=0),
    }
    if kind == "binary":
        result["f1"] = f1_score(y, pred, pos_label=1, average="binary", zero_division=0)
        if len(np.unique(y)) == 2:
            result["roc_auc"] = roc_auc_score(y, probs[:, 1])
    return {name: float(value) for name, value in result.items()}


def _multilabel(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score

    pred = (probs >= 0.5).astype(np.int64)
    labels = list(range(y.shape[1]))
    if y.shape[1] == 1:
        # scikit-learn reads a one-column 0/1 matrix as a binary target and averages over
        # the classes 0 and 1 (micro F1 becomes accuracy). An all-negative second column,
        # left out of `labels` and scored below every probability, keeps the target
        # multilabel without changing any figure.
        y = np.hstack([y, np.zeros_like(y)])
        pred = np.hstack([pred, np.zeros_like(pred)])
        probs = np.hstack([probs, np.full_like(probs, -1.0)])
    result = {
        "accuracy": accuracy_score(y, pred),
        "micro_f1": f1_score(y, pred, labels=labels, average="micro", zero_division=0),
        "macro_f1": f1_score(y, pred, labels=labels, average="macro", zero_division=0),
        "samples_f1": f1_score(y, pred, labels=labels, average="samples", zero_division=0),
    }
    if y.sum() > 0:
        result["micro_ap"] = average_precision_score(y, probs, average="micro")
        labels = y.sum(axis=0) > 0
        result["macro_ap"] = average_precision_score(y[:, labels], probs[:, labels], average="macro")
        items = y.sum(axis=1) > 0
        result["samples_ap"] = average_precision_score(y[items], probs[items], average="samples")
    return {name: float(value) for name, value in result.items()}


def _regression(y: np.ndarray, values: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    result = {
        "rmse": math.sqrt(mean_squared_error(y, values)),
        "mae": mean_absolute_error(y, values),
    }
    if len(y) >= 2:
        result["r2"] = r2_score(y, values)
    return {name: float(value) for name, value in result.items()}


@dataclass(frozen=True)
class Threshold:
    """One ``--fail-under`` check: ``[TASK.]METRIC=VALUE``."""

    metric: str
    value: float
    task: str | None = None

    @property
    def label(self) -> str:
        return f"{self.task}.{self.metric}" if self.task else self.metric


def parse_fail_under(spec: str) -> Threshold:
    """Parse ``METRIC=VALUE`` or ``TASK.METRIC=VALUE`` (the task may itself contain dots;
    the metric is what follows the last one)."""
    key, sep, raw = spec.partition("=")
    key = key.strip()
    hint = "write METRIC=VALUE or TASK.METRIC=VALUE, e.g. --fail-under macro_f1=0.7"
    if not sep or not key:
        raise UsageError(f"--fail-under {spec!r} is not METRIC=VALUE", hint)
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"--fail-under {spec!r}: {raw.strip()!r} is not a number", hint) from None
    if not math.isfinite(value):
        raise UsageError(f"--fail-under {spec!r}: the value must be a finite number", hint)
    task, _, metric = key.rpartition(".")
    return Threshold(metric=metric, value=value, task=task or None)


def check_threshold_names(thresholds: Sequence[Threshold], kinds: dict[str, str | Sequence[str]]) -> list[str]:
    """The task each threshold applies to, given the run's tasks and their kinds
    (``{"label": "binary"}``) or the metric names each task reports (a metric suite's
    ``{"task_a": ("macro_f1", "weighted_f1")}``); an unknown task or metric name raises
    ``UsageError`` listing the valid ones. Cheap, so ``evaluate`` calls it before any
    feature work."""
    tasks = []
    for threshold in thresholds:
        task = _pick_task(kinds, threshold)
        kind = kinds[task]
        known = METRICS[kind] if isinstance(kind, str) else tuple(kind)
        if threshold.metric not in known:
            what = f"{kind} task" if isinstance(kind, str) else "suite task"
            raise UsageError(
                f"--fail-under {threshold.label}: unknown metric {threshold.metric!r} for {what} {task!r}",
                f"choose one of: {', '.join(known)}",
            )
        tasks.append(task)
    return tasks


def check_thresholds(result: dict[str, Any], thresholds: Sequence[Threshold], known: dict[str, Sequence[str]] | None = None) -> list[str]:
    """The thresholds an evaluation result misses, one line each (empty: all passed).

    ``result`` is what :func:`mmtk.evaluate.evaluate` returns. A metric is missed when it
    is below its value, or above it for error metrics (``rmse``, ``mae``: there the value
    is a ceiling), or when it is undefined on this data (e.g. ``roc_auc`` with one class).
    An unknown task or metric name raises ``UsageError`` listing the valid ones: those of
    each task's kind, or ``known`` (a metric suite's ``metric_names()``).
    """
    per_task = result["tasks"] if "tasks" in result else {result["task"]: result}
    tasks = check_threshold_names(thresholds, known or {name: _kind_of(entry) for name, entry in per_task.items()})
    misses = []
    for threshold, task in zip(thresholds, tasks):
        value = per_task[task]["metrics"].get(threshold.metric)
        if value is None:
            misses.append(f"{threshold.label} is undefined on this data (e.g. one class only), required {threshold.value:g}")
        elif threshold.metric in LOWER_IS_BETTER and value > threshold.value:
            misses.append(f"{threshold.label} = {value:.4f} is above the allowed {threshold.value:g}")
        elif threshold.metric not in LOWER_IS_BETTER and value < threshold.value:
            misses.append(f"{threshold.label} = {value:.4f} is below the required {threshold.value:g}")
    return misses


def _pick_task(per_task: dict[str, Any], threshold: Threshold) -> str:
    names = list(per_task)
    if threshold.task is None:
        if len(names) == 1:
            return names[0]
        raise UsageError(
            f"--fail-under {threshold.label}: this run has several tasks ({', '.join(names)})",
            f"name one, e.g. --fail-under {names[0]}.{threshold.metric}={threshold.value:g}",
        )
    if threshold.task not in per_task:
        raise UsageError(f"--fail-under {threshold.label}: no task {threshold.task!r} in this run", f"choose one of: {', '.join(names)}")
    return threshold.task


def _kind_of(entry: dict[str, Any]) -> str:
    """The task kind of an evaluation entry, from the metrics only that kind always has
    (the JSON contract has no "kind" key)."""
    names = set(entry["metrics"])
    for kind in ("regression", "multilabel", "binary"):
        if names & (set(METRICS[kind]) - set(METRICS["multiclass"])):
            return kind
    return "multiclass"
