"""Views of a batch: the full input, and each modality alone (MSD's unimodal inputs).

A view removes modalities through ``batch.present`` (False for every item), never by
zero-filling, so a student or teacher that reads ``present`` ignores the removed input
exactly as it ignores a modality an item lacks. ``stack_views`` puts several views of one
batch into a single batch of ``V x B`` rows, so a student runs all its views in one
forward pass (one pass over a 3x larger batch costs less than three passes on a CPU,
where small matrix products are dominated by per-call overhead).

Teacher outputs travel in ``batch.targets`` under ``teacher_key(view, task)`` (logits)
and ``TEACHER_HIDDEN`` (its representation on the full input), cached once per run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmtk.training.batch import Batch

FULL = "full"
TEACHER_HIDDEN = "teacher:hidden"


def only_view(group: str) -> str:
    """The name of the view with modality ``group`` alone."""
    return f"only:{group}"


def teacher_key(view: str, task: str) -> str:
    """Where a teacher's logits on ``view`` for ``task`` sit in ``batch.targets``."""
    return f"teacher:{view}:{task}"


@dataclass(frozen=True)
class Views:
    """``removed``: view name -> the model inputs that view removes (``FULL``: none)."""

    removed: dict[str, tuple[str, ...]]

    @classmethod
    def from_groups(cls, groups: dict[str, list[str]], unimodal: bool) -> Views:
        """The full view, and with ``unimodal`` one view per modality group (``{group:
        [input names]}``) that keeps only that group's inputs."""
        removed = {FULL: ()}
        if unimodal:
            for group in groups:
                removed[only_view(group)] = tuple(name for other, names in groups.items() if other != group for name in names)
        return cls(removed)

    @property
    def names(self) -> list[str]:
        return list(self.removed)


def without(batch: Batch, names: tuple[str, ...]) -> Batch:
    """``batch`` with the inputs ``names`` marked absent for every item."""
    if not names:
        return batch
    present = dict(batch.present)
    for name in names:
        present[name] = torch.zeros(len(batch), dtype=torch.bool, device=batch.features[name].device)
    return Batch(batch.features, batch.masks, present, batch.targets, batch.target_masks)


def stack_views(batch: Batch, views: Views) -> Batch:
    """One batch holding every view of ``batch`` in order (rows ``v*B .. (v+1)*B - 1``
    are view ``v``). Targets are not carried: the objective reads them from ``batch``."""
    if len(views.removed) == 1:
        return without(batch, next(iter(views.removed.values())))
    count = len(views.removed)
    features = {name: torch.cat([x] * count) for name, x in batch.features.items()}
    masks = {name: torch.cat([m] * count) for name, m in batch.masks.items()}
    present = {}
    for name, x in batch.features.items():
        base = batch.present.get(name)
        if base is None:
            base = torch.ones(len(batch), dtype=torch.bool, device=x.device)
        parts = [torch.zeros_like(base) if name in removed else base for removed in views.removed.values()]
        if not all(bool(part.all()) for part in parts):
            present[name] = torch.cat(parts)
    return Batch(features, masks, present)


def split_views(outputs: dict[str, torch.Tensor], views: Views) -> dict[str, dict[str, torch.Tensor]]:
    """``{task: (V*B, ...)}`` back to ``{view: {task: (B, ...)}}``."""
    count = len(views.removed)
    chunks = {task: out.chunk(count) for task, out in outputs.items()}
    return {view: {task: parts[i] for task, parts in chunks.items()} for i, view in enumerate(views.names)}
