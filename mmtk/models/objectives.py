"""What each task kind asks of a model: head width, loss, and how logits become outputs
(the losses themselves are ``mmtk.training.objectives.TaskLoss``).

- binary: one logit, BCE (``pos_weight`` = negatives / positives with class weights);
  outputs ``(N, 2)`` probabilities ``[1 - p, p]`` so binary and multi-class read alike.
- multiclass: one logit per class, cross-entropy (balanced class weights ``N / (C * n_c)``).
- multilabel: one logit per label, BCE (per-label ``pos_weight``); outputs ``(N, C)``.
- regression: one output, MSE on standardised targets; outputs are de-standardised.
"""

from __future__ import annotations

import numpy as np
import torch

KINDS = ("binary", "multiclass", "multilabel", "regression")


def head_units(kind: str, n_classes: int) -> int:
    """Output units a task's head needs."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}")
    return n_classes if kind in ("multiclass", "multilabel") else 1


def balancing_weights(kind: str, targets: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Loss weights from training-label frequencies (None for regression).

    Binary and multi-label give ``pos_weight`` (negatives / positives, per label); a label
    with no positives keeps weight 1 since there is nothing to up-weight. Multi-class gives
    the balanced per-class weights ``N / (C * n_c)`` (absent classes count as one item so
    the weight stays finite).
    """
    if kind == "regression":
        return None
    if kind == "multiclass":
        counts = np.bincount(targets.astype(np.int64), minlength=n_classes).astype(np.float64)
        return (len(targets) / (n_classes * np.maximum(counts, 1.0))).astype(np.float32)
    positives = targets.reshape(len(targets), -1).astype(np.float64).sum(axis=0)
    negatives = len(targets) - positives
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1.0), 1.0)
    return weights.astype(np.float32)


def target_tensor(kind: str, encoded: np.ndarray) -> torch.Tensor:
    """Encoded labels as the dtype each loss expects."""
    if kind == "multiclass":
        return torch.as_tensor(encoded, dtype=torch.long)
    return torch.as_tensor(encoded, dtype=torch.float32)


def to_outputs(kind: str, logits: torch.Tensor, target_stats: dict | None = None) -> np.ndarray:
    """Logits to what users see: probabilities (binary ``(N, 2)``, multi-class and
    multi-label ``(N, C)``) or de-standardised regression values ``(N,)``."""
    logits = logits.detach().float().cpu()
    if kind == "binary":
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1).numpy()
    if kind == "multiclass":
        return torch.softmax(logits, dim=1).numpy()
    if kind == "multilabel":
        return torch.sigmoid(logits).numpy()
    stats = target_stats or {"mean": 0.0, "std": 1.0}
    return (logits[:, 0] * stats["std"] + stats["mean"]).numpy()
