"""Pieces shared by the fusion models: input normalisation and per-task heads.

Modality and task names are user strings (``clip:ViT-B-32@laion2b_s34b_b79k``, a column
called ``a.b``) that ``nn.ModuleDict`` rejects, so modules are kept in ``nn.ModuleList``s
in the order of the names; state-dict keys are therefore positional and stable.
"""

from __future__ import annotations

import torch
from torch import nn


def check_dims(input_dims: dict[str, int], heads: dict[str, int]) -> None:
    """Refuse an empty model early with a message instead of a shape error later."""
    if not input_dims:
        raise ValueError("a model needs at least one input modality")
    if not heads:
        raise ValueError("a model needs at least one task head")
    bad = {name: d for name, d in {**input_dims, **heads}.items() if int(d) < 1}
    if bad:
        raise ValueError(f"dimensions must be positive: {bad}")


def item_norm(dim: int) -> nn.Module:
    """A LayerNorm without parameters over an input's ``dim`` features; none for a single
    feature (a run's p(positive), one tabular column), which a LayerNorm turns into 0."""
    return nn.LayerNorm(int(dim), elementwise_affine=False) if int(dim) > 1 else nn.Identity()


class ModalityNorms(nn.Module):
    """One LayerNorm per modality: backbones emit vectors on very different scales
    (CLIP embeddings are unit-norm, EfficientNet pooled activations are not)."""

    def __init__(self, input_dims: dict[str, int]):
        super().__init__()
        self.names = list(input_dims)
        self.norms = nn.ModuleList(item_norm(input_dims[n]) for n in self.names)

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        missing = [n for n in self.names if n not in features]
        if missing:
            raise KeyError(f"model input lacks the features {missing}; it was built for {self.names}")
        return [norm(features[name]) for name, norm in zip(self.names, self.norms)]


def presence(batch, names: list[str], like: torch.Tensor) -> torch.Tensor | None:
    """Bool ``(B, M)``: which items have each of the inputs ``names`` (``batch.present``;
    a name without an entry is present everywhere), or None when every item has all of
    them, so the common dense case builds no mask. ``like`` gives batch size and device."""
    if not any(name in batch.present for name in names):
        return None
    everywhere = torch.ones(len(like), dtype=torch.bool, device=like.device)
    return torch.stack([batch.present.get(name, everywhere) for name in names], dim=1)


def drop_absent(parts: list[torch.Tensor], present: torch.Tensor | None) -> list[torch.Tensor]:
    """Each modality's tensor (in ``presence``'s order) with the items that lack it set to
    zero; ``torch.where``, not a product, so even a NaN where the item has nothing is dropped."""
    if present is None:
        return parts
    return [torch.where(present[:, i].view(-1, *[1] * (x.dim() - 1)), x, torch.zeros_like(x)) for i, x in enumerate(parts)]


class TaskHeads(nn.Module):
    """A linear layer per task on a shared representation of ``width`` features."""

    def __init__(self, width: int, heads: dict[str, int]):
        super().__init__()
        self.width = int(width)
        self.tasks = list(heads)
        self.layers = nn.ModuleList(nn.Linear(width, int(heads[t])) for t in self.tasks)

    def forward(self, shared: torch.Tensor) -> dict[str, torch.Tensor]:
        return {task: layer(shared) for task, layer in zip(self.tasks, self.layers)}
