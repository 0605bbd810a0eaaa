"""The metrics of :func:`mmtk.metrics.compute_metrics` on many bootstrap resamples at once.

A resample drawn with replacement is the original items weighted by how often each was
drawn, so every metric of a resample is a weighted metric of the full data: a resample is
one row of a ``counts`` matrix ``(B, N)`` (``counts[b, i]`` = times item ``i`` was drawn in
resample ``b``). Confusion counts are then matrix products, and ranking metrics (ROC-AUC,
average precision) need one sort of the scores for all ``B`` rows instead of ``B`` sorts
and ``B`` scikit-learn calls: 1,000 resamples of the bundled example take milliseconds
instead of seconds (BENCHMARKS.md, "Bootstrap comparisons").

Every figure equals ``compute_metrics`` on the resample's items (``tests/test_resampled_metrics.py``
checks each kind against it on random resamples, ties and absent classes included), with
the same conventions: zero_division 0; macro F1 of single-label tasks over the classes
present in the resample's labels or predictions (scikit-learn's default); and a metric
``compute_metrics`` leaves out on a resample (``roc_auc`` with one class, average
precision without a positive, ``r2`` of one item) is NaN in its row.
"""

from __future__ import annotations

import warnings

import numpy as np


def resampled_metrics(kind: str, y_true: np.ndarray, outputs: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """``{metric: values (B,)}``: the metrics of ``kind`` (``mmtk.metrics.METRICS``) on
    each resample, given labels and outputs as ``compute_metrics`` takes them and the
    resamples' ``counts`` ``(B, N)``."""
    counts = np.asarray(counts, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    y_true = np.asarray(y_true)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # 0/0 cases become the zero_division value or NaN explicitly below.
        warnings.simplefilter("ignore", RuntimeWarning)
        if kind in ("binary", "multiclass"):
            return _single_label(kind, y_true.astype(np.int64), outputs, counts)
        if kind == "multilabel":
            return _multilabel(y_true.astype(np.int64), outputs, counts)
        if kind == "regression":
            return _regression(y_true.astype(np.float64), outputs, counts)
    raise ValueError(f"unknown task kind {kind!r}")


def _f1(tp: np.ndarray, true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """2 TP / (true + predicted), 0 where both are 0 (scikit-learn's zero_division=0)."""
    denominator = true + predicted
    return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)


def _single_label(kind: str, y: np.ndarray, probs: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    n_classes = probs.shape[1]
    pred = probs.argmax(axis=1)
    eye = np.eye(n_classes)
    true_onehot, pred_onehot = eye[y], eye[pred]
    true_c, pred_c, tp_c = counts @ true_onehot, counts @ pred_onehot, counts @ (true_onehot * pred_onehot)
    total = counts.sum(axis=1)
    f1_c = _f1(tp_c, true_c, pred_c)
    present = (true_c + pred_c) > 0  # scikit-learn averages over the labels seen in y or pred
    accuracy = tp_c.sum(axis=1) / total
    result = {
        "accuracy": accuracy,
        "macro_f1": (f1_c * present).sum(axis=1) / present.sum(axis=1),
        # One label per item: micro precision = micro recall = accuracy.
        "micro_f1": accuracy,
        "weighted_f1": (f1_c * true_c).sum(axis=1) / true_c.sum(axis=1),
    }
    if kind == "binary":
        result["f1"] = f1_c[:, 1]
        result["roc_auc"] = roc_auc(y == 1, probs[:, 1], counts)
    return result


def _multilabel(y: np.ndarray, probs: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    pred = (probs >= 0.5).astype(np.int64)
    true_c, pred_c, tp_c = counts @ y, counts @ pred, counts @ (y * pred)
    total = counts.sum(axis=1)
    per_item_tp, per_item_true, per_item_pred = (y * pred).sum(axis=1), y.sum(axis=1), pred.sum(axis=1)
    result = {
        "accuracy": counts @ (y == pred).all(axis=1) / total,
        "micro_f1": _f1(tp_c.sum(axis=1), true_c.sum(axis=1), pred_c.sum(axis=1)),
        "macro_f1": _f1(tp_c, true_c, pred_c).mean(axis=1),
        "samples_f1": counts @ _f1(per_item_tp, per_item_true, per_item_pred) / total,
    }
    any_positive = true_c.sum(axis=1) > 0
    n_labels = y.shape[1]
    # Item i's labels sit at i*C ... i*C+C-1 of the flattened arrays: each count repeats C times.
    micro = average_precision(y.ravel(), probs.ravel(), np.repeat(counts, n_labels, axis=1))
    per_label = np.stack([average_precision(y[:, c], probs[:, c], counts) for c in range(n_labels)], axis=1)
    # Averaged over the labels with a positive in the resample, as compute_metrics does.
    macro = np.nanmean(np.where(true_c > 0, per_label, np.nan), axis=1)
    # An item's AP ranks its own labels: the same in every resample, weighted by its count.
    item_ap = average_precision(y, probs, np.ones(y.shape))
    has_positive = per_item_true > 0
    item_counts = counts[:, has_positive]
    samples = item_counts @ item_ap[has_positive] / item_counts.sum(axis=1)
    for name, values in (("micro_ap", micro), ("macro_ap", macro), ("samples_ap", samples)):
        result[name] = np.where(any_positive, values, np.nan)
    return result


def _regression(y: np.ndarray, values: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    error = values - y
    total = counts.sum(axis=1)
    squared = counts @ error**2
    mean_y = counts @ y / total
    spread = (counts * (y[None, :] - mean_y[:, None]) ** 2).sum(axis=1)
    # scikit-learn's r2_score with constant labels: 1.0 for a perfect fit, else 0.0.
    r2 = np.where(spread > 0, 1 - squared / np.where(spread > 0, spread, 1), np.where(squared == 0, 1.0, 0.0))
    return {
        "rmse": np.sqrt(squared / total),
        "mae": counts @ np.abs(error) / total,
        "r2": np.where(total >= 2, r2, np.nan),
    }


def _tie_bounds(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position of scores sorted along the last axis, the first and the last
    position of its run of equal scores (a threshold cannot split tied items)."""
    m = sorted_scores.shape[-1]
    positions = np.arange(m)
    differs = sorted_scores[..., 1:] != sorted_scores[..., :-1]
    starts = np.concatenate([np.ones(differs.shape[:-1] + (1,), bool), differs], axis=-1)
    ends = np.concatenate([differs, np.ones(differs.shape[:-1] + (1,), bool)], axis=-1)
    first = np.maximum.accumulate(np.where(starts, positions, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, positions, m), -1), axis=-1), -1)
    return first, last


def _sorted(scores: np.ndarray, y: np.ndarray, weights: np.ndarray, *, descending: bool):
    """Scores, labels and weights in score order along the last axis, and a ``take``
    that picks positions of each row. One ranking for every row (``scores`` ``(m,)``, the
    resamples of one task) is sorted once and indexes all rows alike."""
    scores = np.asarray(scores, dtype=np.float64)
    key = -scores if descending else scores
    order = np.argsort(key, axis=-1, kind="stable")
    if scores.ndim == 1:
        return key[order], np.asarray(y, dtype=np.float64)[order], weights[..., order], lambda a, at: a[..., at]
    shape = np.broadcast_shapes(scores.shape, np.shape(y), weights.shape)
    s, positive, w = (np.take_along_axis(np.broadcast_to(a, shape), order, axis=-1) for a in (key, np.asarray(y, dtype=np.float64), weights))
    return s, positive, w, lambda a, at: np.take_along_axis(a, at, axis=-1)


def average_precision(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """scikit-learn's ``average_precision_score`` of each row of ``weights`` ``(R, m)``,
    for 0/1 labels ``y`` and ``scores`` ``(m,)`` (one ranking, R weightings) or ``(R, m)``
    (one ranking per row): the sum over thresholds of the recall gained times the
    precision there. NaN for a row without positive weight."""
    s, positive, w, take = _sorted(scores, y, np.asarray(weights, dtype=np.float64), descending=True)
    gained = w * positive
    tp, fp = np.cumsum(gained, axis=-1), np.cumsum(w - gained, axis=-1)
    _, last = _tie_bounds(s)
    tp_at, fp_at = take(tp, last), take(fp, last)
    # A position with weight 0 adds nothing, whatever the precision at its threshold.
    precision = np.where(tp_at + fp_at > 0, tp_at / np.where(tp_at + fp_at > 0, tp_at + fp_at, 1), 0.0)
    positives = tp[..., -1]
    return np.where(positives > 0, (gained * precision).sum(axis=-1) / np.where(positives > 0, positives, 1), np.nan)


def roc_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``weights`` ``(R, m)``: the weighted share of
    (positive, negative) pairs ranked right, a tie counting one half (scikit-learn's
    trapezoidal area). NaN for a row whose weighted labels hold one class only."""
    s, positive, w, take = _sorted(scores, y, np.asarray(weights, dtype=np.float64), descending=False)
    pos_w = w * positive
    neg_cum = np.cumsum(w - pos_w, axis=-1)
    first, last = _tie_bounds(s)
    below = np.where(first > 0, take(neg_cum, np.maximum(first - 1, 0)), 0.0)
    tied = take(neg_cum, last) - below
    pairs = pos_w.sum(axis=-1) * neg_cum[..., -1]
    return np.where(pairs > 0, (pos_w * (below + 0.5 * tied)).sum(axis=-1) / np.where(pairs > 0, pairs, 1), np.nan)
