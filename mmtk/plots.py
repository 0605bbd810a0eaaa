"""PNG plots for ``evaluate --plots``: confusion matrix (binary, multi-class), ROC and
precision-recall curves (binary), per-label average precision (multi-label), predicted
against true values (regression). matplotlib runs on its Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def plot_task(
    kind: str, y_true: np.ndarray, outputs: np.ndarray, classes: Sequence[str], out_dir: Path, *, prefix: str = "", title: str = ""
) -> list[Path]:
    """Write the plots that suit ``kind`` into ``out_dir`` (created if needed) as
    ``{prefix}{plot}.png``; return their paths. Inputs as for ``compute_metrics``."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true)
    outputs = np.asarray(outputs, dtype=np.float64)
    written = []
    if kind in ("binary", "multiclass"):
        written.append(_confusion(y_true, outputs.argmax(axis=1), classes, out_dir / f"{prefix}confusion_matrix.png", title))
        if kind == "binary" and len(np.unique(y_true)) == 2:
            written += _binary_curves(y_true, outputs[:, 1], out_dir, prefix, title)
    elif kind == "multilabel":
        written.append(_label_ap(y_true, outputs, classes, out_dir / f"{prefix}average_precision.png", title))
    else:
        written.append(_scatter(y_true, outputs, out_dir / f"{prefix}predicted_vs_true.png", title))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _confusion(y: np.ndarray, pred: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.5 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        y, pred, labels=list(range(len(classes))), display_labels=list(classes), ax=ax, colorbar=False
    )
    ax.set_title(f"{title}: confusion matrix" if title else "confusion matrix")
    return _save(fig, path)


def _binary_curves(y: np.ndarray, scores: np.ndarray, out_dir: Path, prefix: str, title: str) -> list[Path]:
    import matplotlib.pyplot as plt
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    paths = []
    for name, display in (("roc_curve", RocCurveDisplay), ("pr_curve", PrecisionRecallDisplay)):
        fig, ax = plt.subplots(figsize=(5, 5))
        display.from_predictions(y, scores, ax=ax)
        ax.set_title(f"{title}: {name.replace('_', ' ')}" if title else name.replace("_", " "))
        paths.append(_save(fig, out_dir / f"{prefix}{name}.png"))
    return paths


def _label_ap(y: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score

    # A label without positives has no AP (see mmtk.metrics); it is drawn as an empty bar.
    ap = [average_precision_score(y[:, i], probs[:, i]) if y[:, i].sum() > 0 else 0.0 for i in range(len(classes))]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.4 * len(classes) + 2), 4))
    ax.bar(range(len(classes)), ap)
    ax.set_xticks(range(len(classes)), list(classes), rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("average precision")
    ax.set_title(f"{title}: per-label AP" if title else "per-label AP")
    return _save(fig, path)


def _scatter(y: np.ndarray, values: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, values, s=8, alpha=0.6)
    low, high = float(min(y.min(), values.min())), float(max(y.max(), values.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"{title}: predicted vs true" if title else "predicted vs true")
    return _save(fig, path)
