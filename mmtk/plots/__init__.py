"""PNG plots for ``evaluate --plots`` and ``train --plots``. matplotlib runs on its Agg
backend (no display); every plot module imports it inside its functions' first call.

Per task (files ``{prefix}NAME.png``):
- binary and multi-class: ``confusion_matrix`` (counts), ``confusion_matrix_normalized``
  (rows divided by the true class's count), ``roc_curve`` and ``pr_curve`` (binary: the
  positive class; multi-class: each class against the rest), ``reliability`` (with the
  expected calibration error, see ``mmtk.plots.calibration``), ``per_class_f1``;
- multi-label: ``average_precision`` (per label), ``roc_curve`` and ``pr_curve`` (per
  label), ``reliability``, ``per_class_f1``;
- regression: ``predicted_vs_true``.
From what the model computed besides outputs (``collect_predictions`` with ``explain``
or ``class_queries``): ``modality_weights`` (mean gate weight per true class) and
``class_queries`` (a 2-D projection of a class-query decoder's outputs).
``learning_curves.png`` (``mmtk.plots.curves``) draws a run's training log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mmtk.plots.curves import LEARNING_CURVES, plot_learning_curves

__all__ = ["LEARNING_CURVES", "plot_learning_curves", "plot_predictions", "plot_task"]


def plot_task(
    kind: str, y_true: np.ndarray, outputs: np.ndarray, classes: Sequence[str], out_dir: Path, *, prefix: str = "", title: str = ""
) -> list[Path]:
    """Write the plots that suit ``kind`` into ``out_dir`` (created if needed) as
    ``{prefix}{plot}.png``; return their paths. Inputs as for ``compute_metrics``."""
    from mmtk.plots import calibration, classification

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true)
    outputs = np.asarray(outputs, dtype=np.float64)
    if kind == "regression":
        return [classification.predicted_vs_true(y_true, outputs, out_dir / f"{prefix}predicted_vs_true.png", title)]
    written = []
    if kind == "multilabel":
        written.append(classification.label_average_precision(y_true, outputs, classes, out_dir / f"{prefix}average_precision.png", title))
    else:
        written += classification.confusion_matrices(y_true, outputs.argmax(axis=1), classes, out_dir, prefix, title)
    written += classification.curves(kind, y_true, outputs, classes, out_dir, prefix, title)
    written.append(calibration.plot_reliability(kind, y_true, outputs, out_dir / f"{prefix}reliability.png", title))
    written.append(classification.per_class_f1(kind, y_true, outputs, classes, out_dir / f"{prefix}per_class_f1.png", title))
    return written


def plot_predictions(predictions, out_dir: str | Path, *, projection: str = "pca") -> list[Path]:
    """Every task's plots of a ``RunPredictions`` (``mmtk.evaluate.collect_predictions``)
    in ``out_dir``, plus, where ``predictions.extras`` holds them, the modality weights
    per class (``"explain"``) and the class-query projection (``"class_queries"``, by
    ``projection``: ``pca`` or ``tsne``; from ``models.MIN_PROJECTED_ITEMS`` items). Files of a run with several tasks are prefixed
    ``TASK_`` (a several-dataset head ``DATASET/TASK`` as ``DATASET_TASK_``)."""
    from mmtk.plots import models

    out_dir = Path(out_dir)
    weights = predictions.extras.get("explain")
    queries = predictions.extras.get("class_queries")
    plotted = []
    several = len(predictions.tasks) > 1
    for name, entry in predictions.tasks.items():
        prefix = f"{name.replace('/', '_')}_" if several else ""
        plotted += plot_task(entry.kind, entry.labels, entry.outputs, entry.classes, out_dir, prefix=prefix, title=name)
        if entry.kind == "regression":
            continue  # no classes to group items by
        if weights:
            plotted.append(models.modality_weights(entry.kind, entry.labels, weights, entry.classes, out_dir / f"{prefix}modality_weights.png", name))
        if queries and name in queries["outputs"] and len(entry.labels) >= models.MIN_PROJECTED_ITEMS:
            plotted.append(models.class_query_projection(
                entry.kind, entry.labels, queries["outputs"][name], queries["queries"][name], entry.classes,
                out_dir / f"{prefix}class_queries.png", name, method=projection,
            ))
    return plotted
