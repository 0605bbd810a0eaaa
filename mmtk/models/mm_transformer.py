"""``mm-transformer``: the multi-modal multi-transformer framework of Codec at SemEval-2022
Task 5, MAMI (Mahran, Borella, Perifanos, "Codec at SemEval-2022 Task 5: Multi-Modal
Multi-Transformer Misogynous Meme Classification Framework", SemEval 2022), over cached
features.

Every input is a sequence of tokens (CLIP patches, DETR objects, BERT tokens; a vector
input is a sequence of one token). Each token is LayerNormed, projected to the shared
``hidden`` width, and given its input's token-type embedding and a position embedding.

- ``encoder=shared``: one transformer encoder over ``[CLS] tokens_1 [SEP] tokens_2 [SEP]
  ...`` (BERT's layout, the paper's single-stream variant).
- ``encoder=multi``: one encoder per input over ``[CLS_i] tokens_i``; the ``[CLS_i]``
  outputs are combined (concatenated, a linear map back to ``hidden``).
- ``classifier=cls``: one MLP per task head reads the ``[CLS]`` representation.
- ``classifier=class-query``: a transformer decoder whose queries are learnable class
  embeddings, one per class of each task (one for a binary or regression task), attends
  to every encoded token; ONE MLP shared by all classes turns each query's output into
  that class's logit.

Auxiliary losses (``forward(batch, auxiliary=True)``; each weight 0 turns its term off):

- ``align`` (``align_weight``): the projection keeps the geometry of its input. For each
  input, the pairwise cosine similarities of the input tokens and of their projections
  are compared by mean squared error over pairs of distinct valid tokens: within each
  item for a sequence, across the batch's items for a vector (one token per item).
- ``contrastive`` (``contrastive_weight``): on the classifier's input (the ``[CLS]``
  representation, or each class query's decoder output), per class, over pairs of items
  labelled for that task: ``(1 - a_ij cos(e_i, e_j)) / 2`` with label agreement
  ``a_ij = +1`` if both items have the class or both lack it, else ``-1``; the mean over
  pairs, then over classes. Multi-class targets give one-vs-rest classes, multi-label
  targets one class per label, binary targets (0/1) one class; regression targets (a
  single-unit head whose targets are not all 0 or 1) have no classes and no term.

Where this differs from the paper, and why:

- Inputs are cached backbone features, not fine-tuned backbones: mmtk trains heads over
  its feature store (the backbones' own fine-tuning is a separate concern).
- Positions restart at 0 in every input and are sinusoidal, not learned: a learned table
  needs a maximum length, which a run's ``InputSpec`` may not know, and positions counted
  across the whole ``[CLS] ... [SEP] ...`` stream would move with the padding of the
  inputs before, so padding would change the output. The ``[SEP]`` tokens carry no
  position for the same reason; their token type says which input they close.
- Padding and absent inputs are masked everywhere (key-padding masks in the encoders and
  the decoder), and their values are zeroed before the projection, so neither can
  change the output. An absent input's ``[SEP]`` (shared) or ``[CLS_i]`` (multi) is
  masked too; its ``[CLS_i]`` output enters the combination as zeros.
- Pre-LayerNorm layers (``norm_first``), which train stably without warm-up tuning.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmtk.models.common import TaskHeads, check_dims, item_norm
from mmtk.training.batch import Batch, as_batch

ENCODERS = ("shared", "multi")
CLASSIFIERS = ("cls", "class-query")


def sinusoidal_positions(length: int, width: int, device, dtype=torch.float32) -> torch.Tensor:
    """``(length, width)`` sine/cosine position codes (Vaswani et al. 2017)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    codes = torch.zeros(length, width, device=device, dtype=torch.float32)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return codes.to(dtype)


def _encoder(hidden: int, num_heads: int, feedforward: int, dropout: float, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(hidden, num_heads, feedforward, dropout, activation="gelu", batch_first=True, norm_first=True)
    # norm_first layers leave the last output unnormalised; the final LayerNorm does it.
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)


def _mlp(hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out))


class TaskMLPs(TaskHeads):
    """The paper's classifier on ``[CLS]``: an MLP per task. A ``TaskHeads`` (same
    ``forward``, MLPs for layers), so a model that replaces a trunk's task heads, such as
    ``multitask-heads``, finds and replaces these too."""

    def __init__(self, width: int, heads: dict[str, int], dropout: float):
        super().__init__(width, heads)
        self.layers = nn.ModuleList(_mlp(width, int(heads[t]), dropout) for t in self.tasks)


class _Tokens:
    """One input's tokens: raw (zeroed where invalid), projected, and valid ``(B, T)``."""

    def __init__(self, raw: torch.Tensor, projected: torch.Tensor, valid: torch.Tensor, sequence: bool):
        self.raw, self.projected, self.valid, self.sequence = raw, projected, valid, sequence


class MultimodalTransformer(nn.Module):
    """``forward(batch) -> {task: logits}``; ``forward(batch, auxiliary=True) -> (logits,
    {"align": ..., "contrastive": ...})`` with the terms already weighted (a term whose
    weight is 0 is left out); ``represent(batch) -> (B, width)``: the ``[CLS]``
    representation (``classifier=cls``), or every class query's output concatenated
    (``classifier=class-query``), which is what the heads read."""

    def __init__(
        self,
        inputs: dict,
        heads: dict[str, int],
        *,
        hidden: int = 128,
        num_heads: int = 4,
        layers: int = 2,
        decoder_layers: int = 1,
        feedforward: int = 256,
        dropout: float = 0.1,
        encoder: str = "shared",
        classifier: str = "cls",
        align_weight: float = 0.1,
        contrastive_weight: float = 0.1,
    ):
        super().__init__()
        dims = {name: int(getattr(spec, "dim", spec)) for name, spec in inputs.items()}
        check_dims(dims, heads)
        if encoder not in ENCODERS or classifier not in CLASSIFIERS:
            raise ValueError(f"encoder must be one of {ENCODERS} and classifier one of {CLASSIFIERS}")
        self.names = list(dims)
        self.tasks = list(heads)
        self.units = [int(heads[t]) for t in self.tasks]
        self.encoder_kind, self.classifier_kind = encoder, classifier
        self.hidden = hidden
        self.align_weight, self.contrastive_weight = float(align_weight), float(contrastive_weight)
        m = len(self.names)
        self.norms = nn.ModuleList(item_norm(dims[n]) for n in self.names)
        self.projections = nn.ModuleList(nn.Linear(dims[n], hidden) for n in self.names)
        self.token_types = nn.Parameter(torch.randn(m, hidden) * 0.02)
        if encoder == "shared":
            self.cls = nn.Parameter(torch.randn(1, hidden) * 0.02)
            self.sep = nn.Parameter(torch.randn(1, hidden) * 0.02)
            self.encoders = nn.ModuleList([_encoder(hidden, num_heads, feedforward, dropout, layers)])
        else:
            self.cls = nn.Parameter(torch.randn(m, hidden) * 0.02)
            self.encoders = nn.ModuleList(_encoder(hidden, num_heads, feedforward, dropout, layers) for _ in self.names)
            if classifier == "cls":
                self.combine = nn.Linear(m * hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        if classifier == "cls":
            self.heads = TaskMLPs(hidden, heads, dropout)
            self.width = hidden
        else:
            queries = sum(self.units)
            self.queries = nn.Parameter(torch.randn(queries, hidden) * 0.02)
            layer = nn.TransformerDecoderLayer(
                hidden, num_heads, feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.decoder = nn.TransformerDecoder(layer, decoder_layers, norm=nn.LayerNorm(hidden))
            self.class_mlp = _mlp(hidden, 1, dropout)
            self.width = queries * hidden

    # -- tokens ---------------------------------------------------------------------

    def _tokens(self, batch: Batch) -> list[_Tokens]:
        missing = [n for n in self.names if n not in batch.features]
        if missing:
            raise KeyError(f"model input lacks the features {missing}; it was built for {self.names}")
        out = []
        for name, norm, projection in zip(self.names, self.norms, self.projections):
            x = batch.features[name]
            sequence = x.dim() == 3
            if not sequence:
                x = x[:, None, :]
            valid = batch.masks.get(name) if sequence else None
            if valid is None:
                valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            present = batch.is_present(name)
            if present is not None:
                valid = valid & present[:, None]
            # Zeroed rather than only masked: NaN or inf in padding would otherwise reach
            # the output through 0 * NaN in the attention's weighted sum.
            x = x.masked_fill(~valid[..., None], 0.0)
            out.append(_Tokens(x, projection(norm(x)), valid, sequence))
        return out

    def _embedded(self, tokens: _Tokens, index: int) -> torch.Tensor:
        positions = sinusoidal_positions(tokens.projected.shape[1], self.hidden, tokens.projected.device, tokens.projected.dtype)
        return tokens.projected + self.token_types[index] + positions

    # -- encoders -------------------------------------------------------------------

    def _encode(self, tokens: list[_Tokens]) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(cls (B, hidden) or None, memory (B, S, hidden), memory valid (B, S))``;
        ``cls`` is None for a class-query classifier over per-input encoders."""
        batch_size = tokens[0].valid.shape[0]
        device = tokens[0].valid.device
        if self.encoder_kind == "shared":
            parts = [self.cls.expand(batch_size, 1, -1)]
            valid = [torch.ones(batch_size, 1, dtype=torch.bool, device=device)]
            for i, t in enumerate(tokens):
                parts += [self._embedded(t, i), (self.sep + self.token_types[i]).expand(batch_size, 1, -1)]
                # An absent input's [SEP] is masked with its tokens: nothing of it remains.
                valid += [t.valid, t.valid.any(dim=1, keepdim=True)]
            valid = torch.cat(valid, dim=1)
            memory = self.encoders[0](torch.cat(parts, dim=1), src_key_padding_mask=~valid)
            return memory[:, 0], memory, valid
        outputs, valids, firsts = [], [], []
        for i, (t, encoder) in enumerate(zip(tokens, self.encoders)):
            cls = (self.cls[i] + self.token_types[i]).expand(batch_size, 1, -1)
            valid = torch.cat([torch.ones(batch_size, 1, dtype=torch.bool, device=device), t.valid], dim=1)
            encoded = encoder(torch.cat([cls, self._embedded(t, i)], dim=1), src_key_padding_mask=~valid)
            present = t.valid.any(dim=1)
            firsts.append(encoded[:, 0] * present[:, None])
            # In the decoder's memory an absent input's [CLS_i] is masked too.
            valid = valid.clone()
            valid[:, 0] = present
            outputs.append(encoded)
            valids.append(valid)
        memory, valid = torch.cat(outputs, dim=1), torch.cat(valids, dim=1)
        cls = self.combine(torch.cat(firsts, dim=-1)) if self.classifier_kind == "cls" else None
        return cls, memory, valid

    # -- classifier -----------------------------------------------------------------

    def _classify(self, tokens: list[_Tokens]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Logits per task and the classifier inputs: ``(B, hidden)`` (cls) or ``(B, Q, hidden)``."""
        cls, memory, valid = self._encode(tokens)
        if self.classifier_kind == "cls":
            rep = self.dropout(cls)
            return self.heads(rep), rep
        # An item with no input at all (nothing valid in memory) would make the
        # attention's softmax 0/0; it reads every [CLS] instead, a constant.
        empty = ~valid.any(dim=1)
        if bool(empty.any()):
            valid = valid.clone()
            valid[empty] = True
            memory = memory.masked_fill(empty[:, None, None], 0.0)
        queries = self.queries.expand(memory.shape[0], -1, -1)
        decoded = self.decoder(queries, memory, memory_key_padding_mask=~valid)
        logits = self.class_mlp(decoded).squeeze(-1)
        out, start = {}, 0
        for task, units in zip(self.tasks, self.units):
            out[task] = logits[:, start:start + units]
            start += units
        return out, decoded

    def forward(self, batch, auxiliary: bool = False):
        batch = as_batch(batch)
        tokens = self._tokens(batch)
        logits, rep = self._classify(tokens)
        if not auxiliary:
            return logits
        terms = {}
        if self.align_weight:
            terms["align"] = self.align_weight * alignment_loss(tokens)
        if self.contrastive_weight:
            terms["contrastive"] = self.contrastive_weight * self._contrastive(rep, batch)
        return logits, terms

    def represent(self, batch) -> torch.Tensor:
        """What the heads read: ``(B, hidden)`` for ``cls``, ``(B, queries * hidden)`` for
        ``class-query``."""
        _, rep = self._classify(self._tokens(as_batch(batch)))
        return rep.flatten(1)

    def class_queries(self) -> dict[str, torch.Tensor] | None:
        """Each task's learned class queries ``(units, hidden)`` (the decoder's inputs, in
        the heads' class order), or None when the classifier reads ``[CLS]``."""
        if self.classifier_kind != "class-query":
            return None
        return {task: part.detach() for task, part in zip(self.tasks, self.queries.split(self.units))}

    def query_outputs(self, batch) -> dict[str, torch.Tensor]:
        """Each task's class queries' decoder outputs ``(B, units, hidden)`` (what the
        shared MLP turns into logits), for a class-query classifier."""
        if self.classifier_kind != "class-query":
            raise ValueError("query_outputs needs classifier=class-query")
        _, decoded = self._classify(self._tokens(as_batch(batch)))
        return dict(zip(self.tasks, decoded.split(self.units, dim=1)))

    def _contrastive(self, rep: torch.Tensor, batch: Batch) -> torch.Tensor:
        embeddings, labels, labelled = [], [], []
        query = 0
        for task, units in zip(self.tasks, self.units):
            target = batch.targets.get(task)
            classes = class_labels(target, units) if target is not None else None
            if classes is not None:
                mask = batch.target_masks.get(task)
                for c in range(units):
                    embeddings.append(rep if rep.dim() == 2 else rep[:, query + c])
                    labels.append(classes[:, c])
                    labelled.append(mask)
            query += units
        return contrastive_loss(embeddings, labels, labelled, anchor=rep)


def class_labels(target: torch.Tensor, units: int) -> torch.Tensor | None:
    """``(B, units)`` bool: whether each item has each class; None for regression.

    Multi-class targets are class indices (one-vs-rest), multi-label targets ``(B, C)``
    0/1 floats, binary targets ``(B,)`` 0/1 floats. A single-unit task whose targets are
    not all 0 or 1 is a regression (standardised values) and has no classes."""
    if target.dtype in (torch.long, torch.int32, torch.int64):
        return F.one_hot(target.long(), units).bool()
    if target.dim() == 2:
        return target > 0.5
    if units == 1 and bool(((target == 0) | (target == 1)).all()):
        return (target > 0.5)[:, None]
    return None


def pairwise_cosine(x: torch.Tensor) -> torch.Tensor:
    """``(..., N, N)`` cosine similarities of ``(..., N, d)`` rows (0 for a zero row)."""
    unit = F.normalize(x.float(), dim=-1, eps=1e-8)
    return unit @ unit.transpose(-1, -2)


def alignment_loss(tokens: list[_Tokens]) -> torch.Tensor:
    """Mean over inputs of the mean squared difference between the cosine similarities of
    an input's tokens and those of their projections, over pairs of distinct valid
    tokens: within each item for sequences, across items for vectors. Inputs with no
    such pair are left out; with none at all the loss is 0 (on the graph)."""
    losses = []
    for t in tokens:
        raw, projected, valid = t.raw, t.projected, t.valid
        if not t.sequence:  # one token per item: the batch's items are the set
            raw, projected, valid = raw.transpose(0, 1), projected.transpose(0, 1), valid.transpose(0, 1)
        pairs = valid[:, :, None] & valid[:, None, :]
        pairs &= ~torch.eye(pairs.shape[-1], dtype=torch.bool, device=pairs.device)
        count = pairs.sum()
        if int(count) == 0:
            continue
        error = (pairwise_cosine(raw.detach()) - pairwise_cosine(projected)).pow(2)
        losses.append((error * pairs).sum() / count)
    if not losses:
        return tokens[0].projected.sum() * 0.0
    return torch.stack(losses).mean()


def contrastive_loss(embeddings: list[torch.Tensor], labels: list[torch.Tensor], labelled: list, *, anchor: torch.Tensor) -> torch.Tensor:
    """Mean over classes of the mean over pairs ``i < j`` of labelled items of
    ``(1 - a_ij cos(e_i, e_j)) / 2``, with ``a_ij`` +1 where the two items agree on the
    class and -1 where they differ. ``labelled[k]`` (bool ``(B,)`` or None: all) says which
    items carry a label for class ``k``'s task. With no pair at all it is 0 (on the graph
    of ``anchor``)."""
    losses = []
    for e, y, mask in zip(embeddings, labels, labelled):
        if mask is not None:
            e, y = e[mask], y[mask]
        n = len(y)
        if n < 2:
            continue
        agreement = torch.where(y[:, None] == y[None, :], 1.0, -1.0)
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=y.device), diagonal=1)
        losses.append(((1.0 - agreement * pairwise_cosine(e)) / 2)[upper].mean())
    if not losses:
        return anchor.sum() * 0.0
    return torch.stack(losses).mean()
