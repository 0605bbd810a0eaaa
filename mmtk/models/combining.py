"""Multimodal-Toolkit's combining modules, generalised from text + tabular to any number of
modalities.

Gu and Budhkar, "A Package for Learning on Tabular and Text Data with Transformers"
(NAACL 2021 MAI workshop; georgian-io/Multimodal-Toolkit, ``tabular_combiner.py``) combine
a transformer's text vector with categorical and numerical features in one of several
ways, then classify with an MLP. Here every input is a modality on equal terms (a
backbone's vectors, pooled sequences, ``tabular``, a run's outputs), each is LayerNormed
first (``ModalityNorms``: backbones emit vectors on very different scales), and each
combination goes through hidden ReLU layers (one; ``concat-mlp``'s ``layers``), as the
toolkit's output MLP, to a linear head per task. Where they differ from the toolkit, and why:

- ``mlp-concat`` (their ``individual_mlps_on_cat_and_numerical_feats_then_concat``): an
  MLP per modality, the text's included; the toolkit leaves the fine-tuned transformer's
  vector as it is, but frozen backbone features have no such trained layer.
- ``concat-mlp`` (their ``mlp_on_concatenated_cat_and_numerical_feats_then_concat``): one
  MLP of ``layers`` hidden layers over all the concatenated modalities, not only the
  tabular ones, for the same reason; with ``layers=1`` it is ``concat``.
- ``attention`` (their ``attention_on_cat_and_numerical_feats``): each modality is
  projected to ``hidden`` and scored by ``LeakyReLU(a . [context ; projection])``; the
  softmax over modalities weights the sum of projections. The toolkit's context is the text
  projection; here it is the mean of the item's present projections, so no modality is
  privileged and an absent one leaves both the context and the softmax. The toolkit also
  registers bias vectors its forward never uses; every parameter here is used.
- ``gating`` (their ``gating_on_cat_and_num_feats_then_sum``, after Rahman et al.'s
  Multimodal Adaptation Gate, ACL 2020): the ``primary`` modality ``x`` is shifted by
  ``alpha * H`` with ``H = sum_i g_i * (W_i x_i) + b``, ``g_i = ReLU(G_i [x ; x_i])`` and
  ``alpha = min(beta * |x| / |H|, 1)``, so the shift is at most ``beta`` of the primary's
  norm. The toolkit first shrinks a modality wider than the primary with an MLP; here
  ``W_i`` and ``G_i`` read it directly (one layer fewer; the output MLP after the shift is
  where the non-linearity is). An item without its primary gets ``x = 0`` and
  ``alpha = 1``: the others still speak. The fused vector has the primary's width.
- ``weighted-sum`` (their ``weighted_feature_sum_on_transformer_cat_and_numerical_feats``):
  ``sum_i w_i * (W_i x_i)``, every modality projected to ``hidden`` and weighted per
  feature by a learned ``w_i``; the toolkit adds the text unweighted at its own width.

An absent modality (``batch.present`` False) never changes the output: ``concat-mlp``
zeroes it after its norm, ``mlp-concat`` zeroes its MLP's output, ``attention`` drops it
from the context and the softmax, ``gating`` and ``weighted-sum`` drop its term from the
sum. ``explain(batch)`` gives per item each modality's share (rows sum to 1): the
attention weights for ``attention``, and for ``gating`` and ``weighted-sum`` each
modality's share of the fused vector's L1 mass (their weights are not shares themselves).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmtk.models.common import ModalityNorms, TaskHeads, check_dims, drop_absent, presence
from mmtk.training.batch import as_batch

# GAT's slope (the toolkit's docs say 0.2, its code uses 0.02): a score below zero still
# moves the softmax, so the context part of ``a`` keeps learning.
NEGATIVE_SLOPE = 0.2


def hidden_layers(in_dim: int, hidden: int, dropout: float, layers: int = 1) -> nn.Sequential:
    """``layers`` x (dropout, linear, ReLU), then dropout: the MLP every combiner ends with."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Dropout(dropout), nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*modules, nn.Dropout(dropout))


def l1_shares(terms: torch.Tensor) -> torch.Tensor:
    """``(B, M, d)`` terms of a sum -> ``(B, M)``: each term's share of the total L1 mass."""
    mass = terms.abs().sum(dim=2)
    return mass / mass.sum(dim=1, keepdim=True).clamp_min(torch.finfo(mass.dtype).tiny)


class _Combiner(nn.Module):
    """What every combiner shares: per-modality norms, the task heads on ``represent``."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], hidden: int):
        super().__init__()
        check_dims(input_dims, heads)
        self.names = list(input_dims)
        self.dims = [int(input_dims[name]) for name in self.names]
        self.norms = ModalityNorms(input_dims)
        self.heads = TaskHeads(hidden, heads)
        self.width = hidden

    def normalised(self, batch) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The normalised inputs in ``self.names`` order and their presence ``(B, M)``
        (None: every item has every modality)."""
        batch = as_batch(batch)
        parts = self.norms(batch.features)
        return parts, presence(batch, self.names, parts[0])

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.heads(self.represent(batch))


class MLPThenConcat(_Combiner):
    """``mlp-concat``: a hidden ReLU layer per modality, their outputs concatenated."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
        super().__init__(input_dims, heads, hidden)
        self.encoders = nn.ModuleList(hidden_layers(d, hidden, dropout)[1:] for d in self.dims)
        self.body = hidden_layers(hidden * len(self.names), hidden, dropout)

    def represent(self, batch) -> torch.Tensor:
        """The hidden layer ``(B, hidden)`` over the concatenated per-modality MLPs."""
        parts, present = self.normalised(batch)
        encoded = [encoder(x) for encoder, x in zip(self.encoders, parts)]
        return self.body(torch.cat(drop_absent(encoded, present), dim=-1))


class ConcatThenMLP(_Combiner):
    """``concat-mlp``: the concatenated modalities through ``layers`` hidden ReLU layers."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], *, hidden: int = 256, layers: int = 2, dropout: float = 0.2):
        super().__init__(input_dims, heads, hidden)
        self.body = hidden_layers(sum(self.dims), hidden, dropout, layers)

    def represent(self, batch) -> torch.Tensor:
        """The last hidden layer ``(B, hidden)`` of the MLP over the concatenation."""
        parts, present = self.normalised(batch)
        return self.body(torch.cat(drop_absent(parts, present), dim=-1))


class AttentionCombiner(_Combiner):
    """``attention``: a softmax over modalities of LeakyReLU scores of their projections
    against the item's context (the mean present projection) weights their sum."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
        super().__init__(input_dims, heads, hidden)
        self.projections = nn.ModuleList(nn.Linear(d, hidden) for d in self.dims)
        # No bias: a constant added to every modality's score cancels in the softmax.
        self.score = nn.Linear(2 * hidden, 1, bias=False)
        self.body = hidden_layers(hidden, hidden, dropout)

    def attend(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention-weighted sum ``(B, hidden)`` and the weights ``(B, M)``."""
        parts, present = self.normalised(batch)
        projected = torch.stack(drop_absent([p(x) for p, x in zip(self.projections, parts)], present), dim=1)
        if present is None:
            context = projected.mean(dim=1)
        else:
            context = projected.sum(dim=1) / present.sum(dim=1, keepdim=True).clamp_min(1)
        pairs = torch.cat([context[:, None].expand_as(projected), projected], dim=-1)
        scores = F.leaky_relu(self.score(pairs).squeeze(-1), NEGATIVE_SLOPE)
        if present is not None:
            scores = scores.masked_fill(~present, float("-inf"))
        # An item with no modality at all has only -inf scores: weight 0 everywhere, not NaN.
        weights = torch.softmax(scores, dim=1).nan_to_num(0.0)
        return (weights[..., None] * projected).sum(dim=1), weights

    def represent(self, batch) -> torch.Tensor:
        """The hidden layer ``(B, hidden)`` over the attention-weighted sum."""
        return self.body(self.attend(batch)[0])

    @torch.no_grad()
    def explain(self, batch) -> dict[str, torch.Tensor]:
        """Per item, each modality's attention weight (rows sum to 1; absent ones get 0)."""
        _, weights = self.attend(batch)
        return {name: weights[:, i] for i, name in enumerate(self.names)}


class GatingCombiner(_Combiner):
    """``gating``: the primary modality shifted by a gated sum of the others, the shift's
    norm clamped to ``beta`` times the primary's (Rahman et al.'s adaptation gate)."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], *, primary: str = "", hidden: int = 256,
                 beta: float = 0.2, dropout: float = 0.2):
        super().__init__(input_dims, heads, hidden)
        primary = primary or self.names[0]
        if primary not in self.names:
            raise ValueError(f"gating: primary {primary!r} is not one of the inputs {self.names}")
        self.primary = self.names.index(primary)
        self.beta = float(beta)
        width = self.dims[self.primary]
        self.others = [i for i in range(len(self.names)) if i != self.primary]
        self.gates = nn.ModuleList(nn.Linear(width + self.dims[i], width) for i in self.others)
        self.shifts = nn.ModuleList(nn.Linear(self.dims[i], width, bias=False) for i in self.others)
        self.shift_bias = nn.Parameter(torch.zeros(width))
        self.gate_dropout = nn.Dropout(dropout)
        self.body = hidden_layers(width, hidden, dropout)

    def fuse(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The shifted primary ``(B, d)`` and each modality's term of it ``(B, M, d)`` (the
        primary itself, then ``alpha * g_i * W_i x_i`` per other modality, in input order)."""
        parts, present = self.normalised(batch)
        # Zeroed absent inputs make zero shifts (W_i has no bias) and an absent primary x = 0.
        parts = drop_absent(parts, present)
        x = parts[self.primary]
        gated = [
            self.gate_dropout(F.relu(gate(torch.cat([x, parts[i]], dim=-1)))) * shift(parts[i])
            for i, gate, shift in zip(self.others, self.gates, self.shifts)
        ]
        shift = sum(gated, self.shift_bias.expand_as(x))
        tiny = torch.finfo(shift.dtype).tiny
        alpha = (self.beta * x.norm(dim=-1) / shift.norm(dim=-1).clamp_min(tiny)).clamp(max=1.0)
        if present is not None:
            alpha = torch.where(present[:, self.primary], alpha, torch.ones_like(alpha))
        terms = [x] + [alpha[:, None] * g for g in gated]
        order = [self.primary] + self.others
        by_input = [terms[order.index(i)] for i in range(len(self.names))]
        return x + alpha[:, None] * shift, torch.stack(by_input, dim=1)

    def represent(self, batch) -> torch.Tensor:
        """The hidden layer ``(B, hidden)`` over the shifted primary."""
        return self.body(self.fuse(batch)[0])

    @torch.no_grad()
    def explain(self, batch) -> dict[str, torch.Tensor]:
        """Per item, each modality's share of the shifted primary's L1 mass (the shift's
        bias belongs to none; rows sum to 1; absent ones get 0)."""
        _, terms = self.fuse(batch)
        shares = l1_shares(terms)
        return {name: shares[:, i] for i, name in enumerate(self.names)}


class WeightedSumCombiner(_Combiner):
    """``weighted-sum``: each modality projected to ``hidden`` and scaled per feature by a
    learned weight vector, summed."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
        super().__init__(input_dims, heads, hidden)
        self.projections = nn.ModuleList(nn.Linear(d, hidden) for d in self.dims)
        # Uniform in [0, 1) as the toolkit starts them: positive, and not all equal.
        self.weights = nn.Parameter(torch.rand(len(self.names), hidden))
        self.projection_dropout = nn.Dropout(dropout)
        self.body = hidden_layers(hidden, hidden, dropout)

    def terms(self, batch) -> torch.Tensor:
        """Each modality's weighted projection ``(B, M, hidden)`` (zeros where absent)."""
        parts, present = self.normalised(batch)
        projected = [self.projection_dropout(p(x)) for p, x in zip(self.projections, parts)]
        return self.weights * torch.stack(drop_absent(projected, present), dim=1)

    def represent(self, batch) -> torch.Tensor:
        """The hidden layer ``(B, hidden)`` over the weighted sum."""
        return self.body(self.terms(batch).sum(dim=1))

    @torch.no_grad()
    def explain(self, batch) -> dict[str, torch.Tensor]:
        """Per item, each modality's share of the weighted sum's L1 mass (rows sum to 1)."""
        shares = l1_shares(self.terms(batch))
        return {name: shares[:, i] for i, name in enumerate(self.names)}
