"""``DistillObjective``: the student's loss, a ``fit`` objective like ``SupervisedObjective``.

    total = lam * CE(labels, s(x))
          + (1 - lam) * tau^2 * sum_views mean_items(w_view * KL(t(view) || s(view)))
          + sum_h beta_h * hidden_loss_h(s_hidden(x), t_hidden(x))

With ``--msd none`` the only view is the full input with weight 1: conventional knowledge
distillation (Hinton et al. 2015). MSD adds one view per modality alone, weighted by a
``mmtk.distill.weighting`` scheme. The hidden-state baselines (FitNet, RKD, SP) read the
student's ``represent`` on the full input and the teacher's cached representation.

Terms in ``train_log.jsonl``: ``task.NAME`` and ``ce`` (their weighted sum), ``kd`` (the
full view's weighted KL), ``msd.GROUP`` (each unimodal view's), ``fitnet``,
``rkd_distance``, ``rkd_angle``, ``sp``, and ``total``. Validation (``terms``) scores the
task losses only, as every objective does, so early stopping compares students by how
well they do the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from mmtk.distill import losses
from mmtk.distill.views import FULL, TEACHER_HIDDEN, Views, split_views, stack_views, teacher_key
from mmtk.models.common import presence
from mmtk.training.batch import Batch
from mmtk.training.objectives import TOTAL, SupervisedObjective

HIDDEN_LOSSES = ("fitnet", "rkd_distance", "rkd_angle", "sp")


def view_term(view: str) -> str:
    """The log name of a view's distillation term."""
    return "kd" if view == FULL else "msd." + view.split(":", 1)[1]


def student_outputs(model, batch: Batch, views: Views, need_hidden: bool):
    """``({view: {task: logits}}, hidden of the full view or None)`` from one forward pass
    over the stacked views."""
    stacked = stack_views(batch, views)
    if not need_hidden:
        return split_views(model(stacked), views), None
    hidden = model.represent(stacked)
    return split_views(model.heads(hidden), views), hidden.chunk(len(views.names))[0]


@dataclass
class DistillObjective:
    """``supervised``: the task losses; ``kinds``: task -> kind; ``views``; ``weighting``:
    ``(batch, kinds) -> {view: (B,)}``; ``lam``, ``tau``; ``hidden``: hidden-state loss
    name -> weight; ``projection``: the FitNet projection (a module trained with the
    student, so it is part of the optimizer's parameters)."""

    supervised: SupervisedObjective
    kinds: dict[str, str]
    views: Views
    weighting: Callable
    lam: float = 0.5
    tau: float = 4.0
    hidden: dict[str, float] = field(default_factory=dict)
    projection: nn.Module | None = None

    def __call__(self, model, batch: Batch) -> dict[str, torch.Tensor]:
        return self.weighted_terms(model, batch, self.weighting(batch, self.kinds))

    def weighted_terms(self, model, batch: Batch, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The terms with per-item view ``weights`` given."""
        return self.combine(self.parts(model, batch), weights)

    def parts(self, model, batch: Batch) -> dict:
        """What the terms are made of before view weights apply: the supervised terms,
        each view's per-item KL, the hidden-state losses. The meta step weighs the same
        parts twice (look-ahead, then the real step), so the student runs once."""
        outputs, hidden = student_outputs(model, batch, self.views, bool(self.hidden))
        kls = {}
        for view in self.views.names:
            kl = self.view_kl(outputs[view], batch, view)
            # An item with none of the view's modalities (text-only view of an item
            # without text) has nothing to learn from on it.
            kls[view] = torch.where(self.available(batch, view), kl, torch.zeros_like(kl))
        hidden_terms = {name: self.hidden_loss(name, hidden, batch.targets[TEACHER_HIDDEN]) for name in self.hidden}
        return {"supervised": self.supervised.terms(outputs[FULL], batch), "kl": kls, "hidden": hidden_terms}

    def combine(self, parts: dict, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The named terms and ``total`` of ``parts`` under per-item view ``weights``."""
        supervised = parts["supervised"]
        terms = {name: value for name, value in supervised.items() if name != TOTAL}
        terms["ce"] = supervised[TOTAL]
        distill = 0
        for view, kl in parts["kl"].items():
            terms[view_term(view)] = (weights[view] * kl).mean()
            distill = distill + terms[view_term(view)]
        total = self.lam * supervised[TOTAL] + (1 - self.lam) * self.tau**2 * distill
        for name, value in parts["hidden"].items():
            terms[name] = value
            total = total + self.hidden[name] * value
        terms[TOTAL] = total
        return terms

    def available(self, batch: Batch, view: str) -> torch.Tensor:
        """Bool ``(B,)``: the item has at least one of the inputs ``view`` keeps."""
        kept = [name for name in batch.features if name not in self.views.removed[view]]
        like = next(iter(batch.features.values()))
        have = presence(batch, kept, like) if kept else torch.zeros(len(batch), 0, dtype=torch.bool, device=like.device)
        return torch.ones(len(batch), dtype=torch.bool, device=like.device) if have is None else have.any(dim=1)

    def view_kl(self, outputs: dict[str, torch.Tensor], batch: Batch, view: str) -> torch.Tensor:
        """KL(teacher || student) on ``view`` per item, summed over the tasks."""
        return sum(
            losses.kl_per_item(kind, batch.targets[teacher_key(view, task)], outputs[task], self.tau)
            for task, kind in self.kinds.items()
        )

    def hidden_loss(self, name: str, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if name == "fitnet":
            return losses.fitnet(student, teacher, self.projection)
        if name == "rkd_distance":
            return losses.rkd_distance(student, teacher)
        if name == "rkd_angle":
            return losses.rkd_angle(student, teacher)
        if name == "sp":
            return losses.similarity_preserving(student, teacher)
        raise ValueError(f"unknown hidden-state loss {name!r}; choose from {HIDDEN_LOSSES}")

    def terms(self, outputs: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        return self.supervised.terms(outputs, batch)
