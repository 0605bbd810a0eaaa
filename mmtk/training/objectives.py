"""Objectives: ``(model, batch) -> {term: Tensor}`` with the named loss terms and their
weighted ``"total"``, which the loop backpropagates and logs term by term.

An objective holds no state that a step changes (its tensors are fixed at construction),
so a distillation meta step can run it twice under ``torch.func.functional_call`` with
other parameters and get the same function both times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from mmtk.training.batch import Batch

TOTAL = "total"


class Objective(Protocol):
    """What the loop needs: the loss terms of one batch, ``"total"`` among them."""

    def __call__(self, model, batch: Batch) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class TaskLoss:
    """The loss of one task kind (see ``mmtk.models.objectives``): cross-entropy for
    multi-class (``weight``: per-class weights), BCE-with-logits for binary and
    multi-label (``weight``: ``pos_weight``), MSE for standardised regression targets.
    ``label_smoothing`` moves ``s`` of each target's mass to the uniform distribution
    (BCE targets become ``y (1 - s) + s / 2``). Items whose ``mask`` is False carry no
    label for this task and do not count."""

    kind: str
    weight: torch.Tensor | None = None
    label_smoothing: float = 0.0

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            if not bool(mask.any()):
                return logits.sum() * 0.0  # keeps the graph (and DDP's gradient hooks) intact
            logits, target = logits[mask], target[mask]
        if self.kind == "multiclass":
            return F.cross_entropy(logits, target, weight=self.weight, label_smoothing=self.label_smoothing)
        if self.kind == "regression":
            return F.mse_loss(logits[:, 0], target)
        if self.kind == "binary":
            logits = logits[:, 0]
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.weight)


def term_name(task: str) -> str:
    """The loss term of a task in ``train_log.jsonl`` (prefixed, so a task called
    ``total`` cannot collide with the total)."""
    return f"task.{task}"


@dataclass(frozen=True)
class SupervisedObjective:
    """The task losses, one term each, and their sum weighted by ``task_weights`` (1 for
    a task not named there)."""

    losses: dict[str, TaskLoss]
    task_weights: dict[str, float] = field(default_factory=dict)

    def __call__(self, model, batch: Batch) -> dict[str, torch.Tensor]:
        return self.terms(model(batch), batch)

    def terms(self, outputs: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """The loss terms of model ``outputs`` (logits per task) on ``batch``."""
        terms: dict[str, torch.Tensor] = {}
        total = 0
        for task, loss in self.losses.items():
            value = loss(outputs[task], batch.targets[task], batch.target_masks.get(task))
            terms[term_name(task)] = value
            weight = self.task_weights.get(task, 1.0)
            total = total + (value if weight == 1.0 else weight * value)
        terms[TOTAL] = total
        return terms


def aux_term_name(name: str) -> str:
    """The log name of a model's auxiliary loss ``name``."""
    return f"aux.{name}"


@dataclass(frozen=True)
class AuxiliaryObjective:
    """The task losses of ``supervised`` plus the auxiliary losses a model returns from
    ``forward(batch, auxiliary=True) -> (logits, {name: loss})`` (alignment,
    reconstruction...; each already weighted by the model's own ``--model-arg``), one
    ``aux.NAME`` term each, all added to ``"total"``. The call goes through the model's
    ``__call__``, so a DDP wrapper's hooks and ``functional_call`` see it. Validation
    scores the task losses only (``terms``), so early stopping compares like with like."""

    supervised: SupervisedObjective

    def __call__(self, model, batch: Batch) -> dict[str, torch.Tensor]:
        outputs, extra = model(batch, auxiliary=True)
        terms = self.supervised.terms(outputs, batch)
        total = terms[TOTAL]
        for name, value in extra.items():
            terms[aux_term_name(name)] = value
            total = total + value
        terms[TOTAL] = total
        return terms

    def terms(self, outputs: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        return self.supervised.terms(outputs, batch)
