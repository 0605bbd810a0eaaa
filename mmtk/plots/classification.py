"""Plots of classification outputs: confusion matrices, ROC and precision-recall curves,
per-class F1 and per-label average precision."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mmtk.plots.common import decisions, pyplot, save, titled


def confusion_matrices(y: np.ndarray, pred: np.ndarray, classes: Sequence[str], out_dir: Path, prefix: str, title: str) -> list[Path]:
    """``confusion_matrix.png`` (counts) and ``confusion_matrix_normalized.png`` (each
    true class's row divides by its count, so a rare class's errors show as plainly
    as a common one's; a class with no items is a row of zeros)."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(y, pred, labels=list(range(len(classes))))
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    return [
        _matrix(counts, classes, out_dir / f"{prefix}confusion_matrix.png", titled(title, "confusion matrix"), "d"),
        _matrix(normalised, classes, out_dir / f"{prefix}confusion_matrix_normalized.png", titled(title, "confusion matrix (row-normalised)"), ".2f"),
    ]


def _matrix(values: np.ndarray, classes: Sequence[str], path: Path, title: str, fmt: str) -> Path:
    plt = pyplot()
    size = max(4.0, 0.5 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap="Blues", vmin=0, vmax=max(float(values.max()), 1e-12))
    # Text dark on light cells and light on dark ones, so every number can be read.
    middle = float(values.max()) / 2
    for (row, col), value in np.ndenumerate(values):
        ax.text(col, row, format(value, fmt), ha="center", va="center", color="white" if value > middle else "black", fontsize=9)
    ticks = range(len(classes))
    ax.set_xticks(ticks, list(classes), rotation=45 if len(classes) > 4 else 0, ha="right" if len(classes) > 4 else "center")
    ax.set_yticks(ticks, list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save(fig, path)


def curves(kind: str, y: np.ndarray, outputs: np.ndarray, classes: Sequence[str], out_dir: Path, prefix: str, title: str) -> list[Path]:
    """``roc_curve.png`` and ``pr_curve.png``: the positive class (binary), each class
    against the rest (multi-class) or each label (multi-label), with its area in the
    legend. A class that is never or always the truth has no curve; with none left,
    no file is written."""
    scored = _one_vs_rest(kind, y, outputs, classes)
    if not scored:
        return []
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    plt = pyplot()
    paths = []
    for name, what in (("roc_curve", "ROC curve"), ("pr_curve", "precision-recall curve")):
        fig, ax = plt.subplots(figsize=(5.5, 5))
        colours = plt.get_cmap("tab20" if len(scored) > 10 else "tab10")
        for i, (label, truth, score) in enumerate(scored):
            colour = colours(i % colours.N)
            if name == "roc_curve":
                fpr, tpr, _ = roc_curve(truth, score)
                ax.plot(fpr, tpr, color=colour, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
            else:
                precision, recall, _ = precision_recall_curve(truth, score)
                ax.step(recall, precision, where="post", color=colour, label=f"{label} (AP {average_precision_score(truth, score):.3f})")
        if name == "roc_curve":
            ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right" if name == "roc_curve" else "lower left", fontsize=7 if len(scored) > 6 else 9)
        ax.set_title(titled(title, f"{what}, one vs rest" if kind == "multiclass" else what))
        paths.append(save(fig, out_dir / f"{prefix}{name}.png"))
    return paths


def _one_vs_rest(kind: str, y: np.ndarray, outputs: np.ndarray, classes: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(class name, 0/1 truth, score)`` for every class with both outcomes present."""
    if kind == "binary":
        pairs = [(str(classes[1]), (y == 1).astype(np.int64), outputs[:, 1])]
    elif kind == "multiclass":
        pairs = [(str(c), (y == i).astype(np.int64), outputs[:, i]) for i, c in enumerate(classes)]
    else:
        pairs = [(str(c), y[:, i].astype(np.int64), outputs[:, i]) for i, c in enumerate(classes)]
    return [(name, truth, score) for name, truth, score in pairs if 0 < truth.sum() < len(truth)]


def per_class_f1(kind: str, y: np.ndarray, outputs: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    """One bar per class (label): its F1 with the decisions ``mmtk.metrics`` scores, and
    the macro average as a line. A class with no items and no predictions scores 0."""
    from sklearn.metrics import f1_score

    scores = f1_score(y, decisions(kind, outputs), labels=list(range(len(classes))), average=None, zero_division=0)
    return _bars(scores, classes, path, titled(title, "F1 per class"), "F1", mean_label="macro F1")


def label_average_precision(y: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    """Per-label average precision (multi-label). A label without positives has no AP
    (see ``mmtk.metrics``); it is drawn as an empty bar."""
    from sklearn.metrics import average_precision_score

    ap = [average_precision_score(y[:, i], probs[:, i]) if y[:, i].sum() > 0 else 0.0 for i in range(len(classes))]
    return _bars(np.asarray(ap), classes, path, titled(title, "per-label AP"), "average precision")


def _bars(values: np.ndarray, classes: Sequence[str], path: Path, title: str, ylabel: str, mean_label: str | None = None) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.4 * len(classes) + 2), 4))
    ax.bar(range(len(classes)), values)
    for i, value in enumerate(values):
        ax.text(i, value + 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    if mean_label:
        ax.axhline(float(np.mean(values)), color="tab:red", linestyle="--", linewidth=1, label=f"{mean_label} {np.mean(values):.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xticks(range(len(classes)), list(classes), rotation=45 if len(classes) > 4 else 0, ha="right" if len(classes) > 4 else "center")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return save(fig, path)


def predicted_vs_true(y: np.ndarray, values: np.ndarray, path: Path, title: str) -> Path:
    """Regression: each item's prediction against its true value, with the diagonal."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, values, s=8, alpha=0.6)
    low, high = float(min(y.min(), values.min())), float(max(y.max(), values.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(titled(title, "predicted vs true"))
    return save(fig, path)
