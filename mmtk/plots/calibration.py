"""Reliability diagram and expected calibration error (ECE).

What is calibrated, per task kind:
- binary: the positive class's probability against whether the item is positive (bins
  over the whole [0, 1] range, so both over- and under-confidence on either class show);
- multi-class: the top-label confidence (the highest probability) against whether the
  predicted class is right (Guo et al., "On Calibration of Modern Neural Networks", 2017);
- multi-label: every (item, label) probability against whether the item has the label,
  all labels pooled.

Binning: ``bins`` (default 10) equal-width bins over [0, 1]; bin ``k`` holds the
probabilities ``p`` with ``k / bins <= p < (k + 1) / bins``, the last bin also ``p = 1``.
ECE = sum over non-empty bins of ``(n_k / N) * |frequency_k - confidence_k|``, where
``frequency_k`` is the fraction of positive (right) outcomes in the bin and
``confidence_k`` the mean probability in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtk.plots.common import pyplot, save, titled

DEFAULT_BINS = 10


def calibration_pairs(kind: str, labels: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(probability, outcome 0/1)`` pairs of a task, as the module docstring defines them."""
    labels, outputs = np.asarray(labels), np.asarray(outputs, dtype=np.float64)
    if kind == "binary":
        return outputs[:, 1], (labels == 1).astype(np.float64)
    if kind == "multiclass":
        return outputs.max(axis=1), (outputs.argmax(axis=1) == labels).astype(np.float64)
    if kind == "multilabel":
        return outputs.ravel(), np.asarray(labels, dtype=np.float64).ravel()
    raise ValueError(f"a {kind} task has no probabilities to calibrate")


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int
    confidence: float  # mean probability in the bin (NaN when empty)
    frequency: float  # fraction of positive outcomes (NaN when empty)


def reliability_bins(probability: np.ndarray, outcome: np.ndarray, bins: int = DEFAULT_BINS) -> list[Bin]:
    """The ``bins`` equal-width bins over [0, 1] (last one closed at 1)."""
    probability, outcome = np.asarray(probability, dtype=np.float64), np.asarray(outcome, dtype=np.float64)
    index = np.minimum((probability * bins).astype(np.int64), bins - 1)
    out = []
    for k in range(bins):
        inside = index == k
        if inside.any():
            out.append(Bin(k / bins, (k + 1) / bins, int(inside.sum()), float(probability[inside].mean()), float(outcome[inside].mean())))
        else:
            out.append(Bin(k / bins, (k + 1) / bins, 0, float("nan"), float("nan")))
    return out


def expected_calibration_error(kind: str, labels: np.ndarray, outputs: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """ECE of a task (module docstring): 0 is perfectly calibrated, 1 the worst."""
    probability, outcome = calibration_pairs(kind, labels, outputs)
    total = len(probability)
    return float(sum(b.count / total * abs(b.frequency - b.confidence) for b in reliability_bins(probability, outcome, bins) if b.count))


def plot_reliability(kind: str, labels: np.ndarray, outputs: np.ndarray, path: Path, title: str, bins: int = DEFAULT_BINS) -> Path:
    """Observed frequency per confidence bin against the diagonal, the ECE in the title,
    and below it how many probabilities fall in each bin."""
    plt = pyplot()
    probability, outcome = calibration_pairs(kind, labels, outputs)
    table = reliability_bins(probability, outcome, bins)
    ece = expected_calibration_error(kind, labels, outputs, bins)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=(3, 1), sharex=True)
    width = 1.0 / bins
    filled = [b for b in table if b.count]
    top.bar([b.low for b in filled], [b.frequency for b in filled], width=width, align="edge", edgecolor="black", label="observed")
    # The gap spans from the observed frequency to the bin's mean probability, above the
    # bar (over-confident) or inside it (under-confident).
    top.bar(
        [b.low for b in filled], [abs(b.confidence - b.frequency) for b in filled], bottom=[min(b.confidence, b.frequency) for b in filled],
        width=width, align="edge", color="tab:red", alpha=0.3, hatch="//", label="gap to the mean probability",
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel({"multiclass": "accuracy", "binary": "fraction positive", "multilabel": "fraction present"}[kind])
    top.legend(loc="upper left", fontsize=8)
    top.set_title(titled(title, f"reliability (ECE {ece:.3f}, {bins} bins)"))
    bottom.bar([b.low for b in table], [b.count for b in table], width=width, align="edge", color="tab:grey", edgecolor="black")
    bottom.set_xlabel({"multiclass": "top-label confidence", "binary": "probability of the positive class", "multilabel": "label probability"}[kind])
    bottom.set_ylabel("count")
    return save(fig, path)
