"""Early fusion by concatenation: the baseline every fusion paper compares against."""

from __future__ import annotations

import torch
from torch import nn

from mmtk.models.common import ModalityNorms, TaskHeads, check_dims
from mmtk.training.batch import as_batch


class ConcatMLP(nn.Module):
    """LayerNorm each modality, concatenate, one hidden ReLU layer with dropout, a linear
    head per task. ``forward(batch)`` returns ``{task: logits}``; an absent modality
    (``batch.present`` False) enters as zeros after its norm."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        check_dims(input_dims, heads)
        self.norms = ModalityNorms(input_dims)
        self.body = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(sum(int(d) for d in input_dims.values()), hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.heads = TaskHeads(hidden, heads)
        self.width = hidden

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.heads(self.represent(batch))

    def represent(self, batch) -> torch.Tensor:
        """The hidden layer ``(B, hidden)`` the task heads read."""
        batch = as_batch(batch)
        parts = self.norms(batch.features)
        if batch.present:
            parts = [x if batch.is_present(n) is None else x * batch.is_present(n)[:, None] for n, x in zip(self.norms.names, parts)]
        return self.body(torch.cat(parts, dim=-1))
