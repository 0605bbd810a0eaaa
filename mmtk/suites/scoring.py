"""The metrics of suite tasks, from gold labels and scored probabilities.

Definitions (scikit-learn's, with these choices, which decide rankings):
- single label: the decision is the most probable scored class (for a class made of
  several levels, the sum of their probabilities: Memotion's 3-way sentiment from a
  5-level head, presence from intensities). Multi-class macro-F1 averages over the classes
  present in the gold labels or the decisions (scikit-learn's default); binary macro-F1
  always averages both classes' F1 (MAMI's official script: a class never seen nor
  predicted scores 0, so a run that predicts "absent" everywhere on an all-absent label
  scores 0.5, not 1). F1 with no true positive is 0.
- multi-label: decisions at a threshold per label (0.5, or tuned on validation data);
  micro/macro/weighted/samples F1 over every label (scikit-learn, zero_division 0).
  Average precision is ``mmtk.metrics``': averaged over the labels (macro) or items
  (samples) with at least one positive.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

#: The thresholds ``tune_thresholds`` tries for each label (0.01 ... 0.99, with 0.5).
THRESHOLD_GRID = np.round(np.arange(1, 100) / 100, 2)


def single_label_metrics(gold: np.ndarray, probs: np.ndarray, metrics: Sequence[str], *, binary: bool) -> dict[str, float]:
    """``gold`` class indices ``(N,)``, ``probs`` ``(N, S)`` over the scored classes
    (binary: column 1 present)."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    pred = probs.argmax(axis=1)
    labels = [0, 1] if binary else None
    result: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero_division and one-class cases are handled here
        for metric in metrics:
            if metric == "accuracy":
                result[metric] = accuracy_score(gold, pred)
            elif metric in ("macro_f1", "micro_f1", "weighted_f1"):
                result[metric] = f1_score(gold, pred, labels=labels, average=metric.partition("_")[0], zero_division=0)
            elif metric == "f1":
                result[metric] = f1_score(gold, pred, labels=[0, 1], pos_label=1, average="binary", zero_division=0)
            elif metric == "roc_auc" and len(np.unique(gold)) == 2:  # undefined on one class: left out
                result[metric] = roc_auc_score(gold, probs[:, 1])
    return {name: float(value) for name, value in result.items()}


def multilabel_metrics(gold: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float, metrics: Sequence[str]) -> dict[str, float]:
    """``gold`` 0/1 ``(N, C)``, ``probs`` ``(N, C)``, ``thresholds`` one per label (or one)."""
    from sklearn.metrics import accuracy_score, f1_score

    from mmtk.metrics import compute_metrics

    gold = np.asarray(gold).astype(np.int64)
    pred = (probs >= np.asarray(thresholds)).astype(np.int64)
    labels = list(range(gold.shape[1]))
    if gold.shape[1] == 1:
        # One column reads as a binary target to scikit-learn; an all-zero second column
        # left out of `labels` keeps it multi-label without changing a figure.
        gold, pred = np.hstack([gold, np.zeros_like(gold)]), np.hstack([pred, np.zeros_like(pred)])
    result: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for metric in metrics:
            if metric == "accuracy":
                result[metric] = accuracy_score(gold, pred)
            elif metric.endswith("_f1"):
                result[metric] = f1_score(gold, pred, labels=labels, average=metric.partition("_")[0], zero_division=0)
    wanted_ap = [metric for metric in metrics if metric.endswith("_ap")]
    if wanted_ap:
        # The project's one definition of average precision (labels/items with positives).
        ap = compute_metrics("multilabel", gold[:, labels], probs)
        result.update({metric: ap[metric] for metric in wanted_ap if metric in ap})
    return {name: float(value) for name, value in result.items()}


def tune_thresholds(gold: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per label, the threshold of ``THRESHOLD_GRID`` with the best F1 of that label on
    (validation) ``gold``/``probs``; among equals the one nearest 0.5, so a label whose F1
    no threshold changes (no positives, say) keeps 0.5. Since 0.5 is on the grid, every
    label's F1, and so macro-F1, on this data is at least that at 0.5."""
    gold = np.asarray(gold).astype(bool)
    chosen = np.empty(gold.shape[1])
    for label in range(gold.shape[1]):
        decided = probs[:, label][:, None] >= THRESHOLD_GRID[None, :]
        positive = gold[:, label][:, None]
        tp = (decided & positive).sum(axis=0)
        wrong = (decided != positive).sum(axis=0)  # false positives + false negatives
        denominator = 2 * tp + wrong
        f1 = np.divide(2 * tp, denominator, out=np.zeros(len(THRESHOLD_GRID)), where=denominator > 0)
        best = np.flatnonzero(np.isclose(f1, f1.max()))
        chosen[label] = THRESHOLD_GRID[best[np.argmin(np.abs(THRESHOLD_GRID[best] - 0.5))]]
    return chosen


def averaged(values: Sequence[float | None], weights: Sequence[float] | None = None) -> float | None:
    """The (weighted) mean of ``values``; None when one is undefined or the weights sum to 0."""
    if any(value is None for value in values):
        return None
    weights = [1.0] * len(values) if weights is None else list(weights)
    total = float(sum(weights))
    if total == 0:
        return None
    return float(sum(v * w for v, w in zip(values, weights)) / total)
