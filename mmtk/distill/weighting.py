"""How much each view's distillation term counts, per item (``--msd``).

Each weighting maps a batch (with the teacher's cached logits in its targets) to
``{view: (B,) weights}``, without gradients except for ``meta``, whose weights come from
a learned network (``mmtk.distill.meta``). Views are ``full`` and ``only:GROUP`` per
modality group (``mmtk.distill.views``); MSD (Jin et al., Findings of EMNLP 2021) names
three instance-level schemes besides fixed population weights:

- ``importance``: the full view 1; the view keeping only group ``m`` gets
  ``tanh(KL(t(x) || t(x without m)))``: a modality whose removal changes the teacher's
  prediction much is worth distilling on its own. With two groups, ``x without m`` is the
  other group's unimodal view, which the teacher's cache holds.
- ``correctness``: weights proportional to ``1 / CE(label, t(view))``, normalised over the
  views to sum to 1: the views on which the teacher is right count most. Items without a
  label get equal weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mmtk.distill.losses import cross_entropy_per_item, kl_per_item
from mmtk.distill.views import FULL, Views, only_view, teacher_key
from mmtk.errors import UsageError
from mmtk.training.batch import Batch

MSD_CHOICES = ("none", "population", "importance", "correctness", "meta")
EPSILON = 1e-6  # keeps 1 / CE finite when the teacher is certain and right


def _ones(batch: Batch) -> torch.Tensor:
    return torch.ones(len(batch), device=next(iter(batch.features.values())).device)


@dataclass(frozen=True)
class FixedWeights:
    """``none`` (the full view alone, weight 1) and ``population`` (one fixed weight per
    view, for every item)."""

    weights: dict[str, float]

    def __call__(self, batch: Batch, kinds: dict[str, str]) -> dict[str, torch.Tensor]:
        ones = _ones(batch)
        return {view: ones * float(w) for view, w in self.weights.items()}


@dataclass(frozen=True)
class ImportanceWeights:
    groups: tuple[str, ...]
    tau: float = 1.0

    def __call__(self, batch: Batch, kinds: dict[str, str]) -> dict[str, torch.Tensor]:
        if len(self.groups) != 2:
            raise UsageError("--msd importance is defined for two modality groups", "use --msd population or correctness")
        weights = {FULL: _ones(batch)}
        for group, other in (self.groups, self.groups[::-1]):
            # x without `group` is the view that keeps only `other`.
            kl = sum(
                kl_per_item(kind, batch.targets[teacher_key(FULL, task)], batch.targets[teacher_key(only_view(other), task)], self.tau)
                for task, kind in kinds.items()
            )
            weights[only_view(group)] = torch.tanh(kl)
        return weights


@dataclass(frozen=True)
class CorrectnessWeights:
    views: Views

    def __call__(self, batch: Batch, kinds: dict[str, str]) -> dict[str, torch.Tensor]:
        inverse = []
        for view in self.views.names:
            loss, labelled = 0, torch.zeros(len(batch), dtype=torch.bool, device=_ones(batch).device)
            for task, kind in kinds.items():
                mask = batch.target_masks.get(task)
                per_item = cross_entropy_per_item(kind, batch.targets[teacher_key(view, task)], batch.targets[task])
                if mask is not None:
                    per_item = per_item * mask
                    labelled = labelled | mask
                else:
                    labelled = torch.ones_like(labelled)
                loss = loss + per_item
            inverse.append(torch.where(labelled, 1.0 / (loss + EPSILON), torch.ones_like(loss)))
        stacked = torch.stack(inverse, dim=0)
        stacked = stacked / stacked.sum(dim=0, keepdim=True)
        return {view: stacked[i] for i, view in enumerate(self.views.names)}


@dataclass
class WeightingChoice:
    """What ``--msd`` asked for, turned into a weighting over ``views``."""

    msd: str
    population: dict[str, float] = field(default_factory=dict)

    def build(self, views: Views, groups: tuple[str, ...], tau: float):
        if self.msd not in MSD_CHOICES:
            raise UsageError(f"unknown --msd {self.msd!r}", f"choose one of: {', '.join(MSD_CHOICES)}")
        if self.msd == "none":
            return FixedWeights({FULL: 1.0})
        if self.msd == "population":
            unknown = sorted(set(self.population) - set(views.names))
            if unknown:
                raise UsageError(f"--msd-weight names no view {unknown[0]!r}", f"the views are: {', '.join(views.names)}")
            return FixedWeights({view: self.population.get(view, 1.0) for view in views.names})
        if self.msd == "importance":
            return ImportanceWeights(groups, tau)
        if self.msd == "correctness":
            return CorrectnessWeights(views)
        raise ValueError("meta weights are built by mmtk.distill.meta")
