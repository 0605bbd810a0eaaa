"""``mmae``: a multimodal autoencoder branch beside an attention-based modality-weighting
branch, the code enriching the classifier's input.

The autoencoder branch follows the multimodal (bimodal) autoencoder of Ngiam, Khosla,
Kim, Nam, Lee, Ng, "Multimodal Deep Learning", ICML 2011, generalised to any number of
modalities: an encoder per modality maps its (LayerNormed) vector to a ``code``-wide
code, the codes are concatenated, and a decoder per modality reconstructs that
modality's vector from the whole concatenated code, so each code is pushed to carry what
the other modalities need. The reconstruction losses (mean squared error per modality)
are auxiliary terms ``recon.<input name>``, each weighted by ``recon_weights``.

The attention branch is the modality weighting of Multimodal-Toolkit's attention
combiner (Gu and Budhkar 2021) over N modalities: each modality is projected to
``hidden`` (tanh), scored by a shared linear map with a LeakyReLU, and the projections are
summed with the softmax of the scores as weights (``explain`` reports them). The
classifier reads the attention-weighted sum concatenated with the concatenated code, one
hidden ReLU layer, then a linear head per task.

Where this differs, and why:

- The reconstruction target is the LayerNormed input, not the raw one: backbones emit
  vectors on very different scales, and an unnormalised target would let the largest
  one dominate the summed loss whatever its weight.
- The autoencoder trains jointly with the classifier (its losses are auxiliary terms of
  the same objective) instead of being pre-trained separately: one ``mmtk train`` run,
  and the code is shaped by both objectives.
- An absent modality (``batch.present`` False) is zeroed before its encoder, its code is
  zero in the concatenation, its attention score is excluded from the softmax, and its
  reconstruction error for that item is not counted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmtk.models.common import TaskHeads, check_dims, item_norm
from mmtk.training.batch import Batch, as_batch


class MultimodalAutoencoder(nn.Module):
    """``forward(batch) -> {task: logits}``; ``forward(batch, auxiliary=True) -> (logits,
    {"recon.NAME": weighted loss})`` (a modality whose weight is 0 has no term);
    ``explain(batch) -> {modality: (B,)}``: the attention weights (rows sum to 1, 0 for an
    absent modality)."""

    def __init__(
        self,
        input_dims: dict[str, int],
        heads: dict[str, int],
        *,
        hidden: int = 128,
        code: int = 32,
        dropout: float = 0.2,
        recon_weights: list[float] | None = None,
    ):
        super().__init__()
        check_dims(input_dims, heads)
        self.names = list(input_dims)
        m = len(self.names)
        weights = [1.0] * m if recon_weights is None else [float(w) for w in recon_weights]
        if len(weights) != m:
            raise ValueError(f"recon_weights has {len(weights)} values for {m} inputs")
        self.recon_weights = weights
        dims = [int(input_dims[n]) for n in self.names]
        self.norms = nn.ModuleList(item_norm(d) for d in dims)
        self.encoders = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, code)) for d in dims)
        # A decoder whose modality has weight 0 would receive no gradient: none is built.
        self.decoders = nn.ModuleList(
            nn.Sequential(nn.Linear(m * code, hidden), nn.ReLU(), nn.Linear(hidden, d)) if w else nn.Identity()
            for d, w in zip(dims, weights)
        )
        self.projections = nn.ModuleList(nn.Linear(d, hidden) for d in dims)
        self.score = nn.Linear(hidden, 1)
        self.body = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden + m * code, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.heads = TaskHeads(hidden, heads)
        self.width = hidden

    def _run(self, batch: Batch):
        """Normalised inputs, presence ``(B, M)``, codes ``(B, M * code)``, attention ``(B, M)``, representation."""
        missing = [n for n in self.names if n not in batch.features]
        if missing:
            raise KeyError(f"model input lacks the features {missing}; it was built for {self.names}")
        first = batch.features[self.names[0]]
        everywhere = torch.ones(len(first), dtype=torch.bool, device=first.device)
        present = torch.stack([batch.present.get(n, everywhere) for n in self.names], dim=1)
        normed, codes, projected = [], [], []
        for i, (name, norm, encoder, projection) in enumerate(zip(self.names, self.norms, self.encoders, self.projections)):
            # Zeroed, not only weighted 0: NaN in an absent item's features stays out.
            x = norm(batch.features[name].masked_fill(~present[:, i, None], 0.0))
            normed.append(x)
            codes.append(encoder(x) * present[:, i, None])
            projected.append(torch.tanh(projection(x)))
        projected = torch.stack(projected, dim=1)
        scores = F.leaky_relu(self.score(projected).squeeze(-1))
        # An item with no modality at all keeps finite scores (0/0 otherwise) and gets
        # zero weights: its attention branch is zero.
        absent = ~present & present.any(dim=1, keepdim=True)
        attention = torch.softmax(scores.masked_fill(absent, float("-inf")), dim=1) * present
        fused = (attention[..., None] * projected).sum(dim=1)
        code = torch.cat(codes, dim=-1)
        return normed, present, code, attention, self.body(torch.cat([fused, code], dim=-1))

    def forward(self, batch, auxiliary: bool = False):
        batch = as_batch(batch)
        normed, present, code, _, rep = self._run(batch)
        logits = self.heads(rep)
        if not auxiliary:
            return logits
        terms = {}
        for i, (name, decoder, weight) in enumerate(zip(self.names, self.decoders, self.recon_weights)):
            if weight:
                terms[f"recon.{name}"] = weight * reconstruction_loss(decoder(code), normed[i], present[:, i])
        return logits, terms

    def represent(self, batch) -> torch.Tensor:
        """The hidden layer ``(B, hidden)`` over attention fusion and code that the heads read."""
        return self._run(as_batch(batch))[-1]

    @torch.no_grad()
    def explain(self, batch) -> dict[str, torch.Tensor]:
        """Per item, each modality's attention weight."""
        attention = self._run(as_batch(batch))[3]
        return {name: attention[:, i] for i, name in enumerate(self.names)}


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the features of the items that have the modality (0, on
    the graph, when none has it). The target is a constant: the reconstruction is
    trained toward the input, not the input toward the reconstruction."""
    if not bool(present.any()):
        return reconstruction.sum() * 0.0
    return F.mse_loss(reconstruction[present].float(), target[present].detach().float())
