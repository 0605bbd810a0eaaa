"""A small sequence model: attention pooling per input, then an MLP over the pooled inputs.

Each sequence input ``(B, T, d)`` is normalised, projected to ``hidden`` and pooled by a
softmax over its valid steps (``batch.masks``; padding gets weight 0) of a learned
score; a vector input is normalised and projected. An absent modality
(``batch.present`` False) contributes zeros. The pooled inputs are concatenated and go
through one hidden ReLU layer to a head per task.
"""

from __future__ import annotations

import torch
from torch import nn

from mmtk.models.common import TaskHeads, check_dims, item_norm
from mmtk.training.batch import as_batch


class AttentionPool(nn.Module):
    def __init__(self, inputs: dict, heads: dict[str, int], *, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        dims = {name: int(getattr(spec, "dim", spec)) for name, spec in inputs.items()}
        check_dims(dims, heads)
        self.names = list(dims)
        self.norms = nn.ModuleList(item_norm(dims[n]) for n in self.names)
        self.projections = nn.ModuleList(nn.Linear(dims[n], hidden) for n in self.names)
        # A score layer only where there are steps to pool: a vector input's would get no
        # gradient. Identity keeps the list positional, so state-dict keys stay stable.
        self.sequences = [getattr(inputs[n], "is_sequence", False) for n in self.names]
        self.scores = nn.ModuleList(nn.Linear(hidden, 1) if seq else nn.Identity() for seq in self.sequences)
        self.register_load_state_dict_pre_hook(_drop_vector_scores)
        self.body = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * len(self.names), hidden), nn.ReLU(), nn.Dropout(dropout))
        self.heads = TaskHeads(hidden, heads)
        self.width = hidden

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.heads(self.represent(batch))

    def represent(self, batch) -> torch.Tensor:
        """The hidden layer ``(B, hidden)`` over the pooled inputs that the task heads read."""
        batch = as_batch(batch)
        pooled = []
        for name, norm, projection, score in zip(self.names, self.norms, self.projections, self.scores):
            x = torch.tanh(projection(norm(batch.features[name])))
            if x.dim() == 3:
                if isinstance(score, nn.Identity):
                    raise ValueError(f"input {name!r} is a sequence, but the model was built for a vector there (pass InputSpecs)")
                weights = score(x).squeeze(-1)
                mask = batch.masks.get(name)
                if mask is not None:
                    # -1e4 rather than -inf: an item with no valid step then averages
                    # zeros instead of dividing 0 by 0.
                    weights = weights.masked_fill(~mask, -1e4)
                    x = x * mask[..., None]
                x = (torch.softmax(weights, dim=1)[..., None] * x).sum(dim=1)
            present = batch.is_present(name)
            pooled.append(x if present is None else x * present[:, None])
        return self.body(torch.cat(pooled, dim=-1))


def _drop_vector_scores(module: AttentionPool, state_dict, prefix, *_):
    """Runs saved before vector inputs lost their score layer hold weights for it, which
    never influenced an output: drop them so those runs still load."""
    for i, sequence in enumerate(module.sequences):
        if not sequence:
            for key in ("weight", "bias"):
                state_dict.pop(f"{prefix}scores.{i}.{key}", None)
