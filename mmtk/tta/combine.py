"""Averaging a model's outputs over test-time views, in log space.

``average_log_probs(kind, per_view)`` takes each view's logits for one task and returns
logits that ``mmtk.models.objectives.to_outputs`` turns into the averaged prediction:
- multi-class: the mean of the views' log-softmax; its softmax renormalises the
  geometric mean of the views' probabilities;
- binary: the mean of log p and of log (1 - p), renormalised (the two-class case of the
  above), as one logit;
- multi-label: per label the mean of the views' log-sigmoids, p = exp(mean), as a logit;
- regression: the mean of the values.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def average_log_probs(kind: str, per_view: Sequence):
    """Logits (a tensor like each view's) of the views' averaged log-probabilities."""
    import torch
    import torch.nn.functional as F

    if not per_view:
        raise ValueError("no views to average")
    stacked = torch.stack([torch.as_tensor(v).float() for v in per_view])  # (V, N, C)
    if kind == "multiclass":
        return F.log_softmax(stacked, dim=-1).mean(dim=0)
    if kind == "binary":
        return F.logsigmoid(stacked).mean(dim=0) - F.logsigmoid(-stacked).mean(dim=0)
    if kind == "multilabel":
        log_p = F.logsigmoid(stacked).mean(dim=0)
        return log_p - torch.log(-torch.expm1(log_p))  # logit of exp(log_p): log p - log(1 - p)
    if kind == "regression":
        return stacked.mean(dim=0)
    raise ValueError(f"unknown task kind {kind!r}")


def average_views(kinds: Mapping[str, str], per_view: Sequence[Mapping]) -> dict:
    """``average_log_probs`` for every task: ``per_view`` holds each view's
    ``{task: logits}``, ``kinds`` each task's kind."""
    return {task: average_log_probs(kind, [view[task] for view in per_view]) for task, kind in kinds.items()}


def average_weights(per_view: Sequence[Mapping | None]) -> dict | None:
    """The views' per-modality weights (``--explain``: GMU gates) averaged."""
    import torch

    if not per_view or per_view[0] is None:
        return None
    return {name: torch.stack([torch.as_tensor(view[name]).float() for view in per_view]).mean(dim=0) for name in per_view[0]}
