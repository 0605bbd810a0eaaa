"""BERT encoders over word pieces and visual tokens: the ``visualbert`` teacher and the
``tinybert`` student of modality-specific distillation.

- ``VisualBertFusion`` implements VisualBERT (Li et al. 2019, "VisualBERT: A Simple and
  Performant Baseline for Vision and Language", arXiv:1908.03557) with transformers'
  ``VisualBertModel``: one BERT over the text's word pieces followed by visual tokens
  (visual token type, visual position embeddings), classified from the pooled [CLS].
- ``TinyBertFusion`` is a BERT of TinyBERT General 4L-312D's shape (Jiao et al. 2020,
  "TinyBERT: Distilling BERT for Natural Language Understanding", arXiv:1909.10351)
  over the same inputs: the projected visual tokens are appended to the word-piece
  embeddings with token type 1, as the MSD paper's student reads images (Jin et al.
  2021, "MSD: Saliency-aware Knowledge Distillation for Multimodal Understanding").

Where they differ from the papers, deliberately:
- Visual tokens come from any stored sequence (a CNN's grid, CLIP patches, DETR queries,
  video frames) through a learned linear map per input, where VisualBERT used detector
  region features; a vector input is one token. Each input is first LayerNorm-ed per
  step, because backbones emit features on very different scales.
- VisualBERT keeps its own convention: every visual token has visual position 0 (region
  features have no order). The TinyBERT student numbers each input's steps from 0 so
  that a grid or frame order is visible to it, and so that a visual token's position
  does not depend on how long the batch's texts are padded.
- Absent modalities are masked out of attention (``batch.present``): an absent image's
  visual tokens, an absent text's word pieces except [CLS] (which every item keeps, so
  attention always has a key). Padding is masked the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from mmtk.errors import UsageError
from mmtk.models.common import TaskHeads, item_norm
from mmtk.training.batch import as_batch


def split_inputs(inputs: dict, model: str) -> tuple[str, int, dict]:
    """``(word-piece input name, its vocabulary size, {visual input: spec})``; exactly
    one word-piece input (``tokens@COLUMN``) is required."""
    tokens = [name for name, spec in inputs.items() if getattr(spec, "kind", "vector") == "tokens"]
    if len(tokens) != 1:
        raise UsageError(
            f"model {model!r} needs exactly one word-piece input, got {len(tokens)}",
            "list one in --features, e.g. --features tokens@text,efficientnet-lite0:seq",
        )
    visual = {name: spec for name, spec in inputs.items() if name != tokens[0]}
    return tokens[0], int(inputs[tokens[0]].dim), visual


def text_mask(batch, name: str) -> torch.Tensor:
    """Bool ``(B, T)``: valid word pieces of present texts; [CLS] (position 0) always."""
    ids = batch.features[name]
    mask = batch.masks.get(name)
    if mask is None:  # a plain {name: ids} call: ids are padded with 0
        mask = ids != 0
    mask = mask.clone()
    present = batch.is_present(name)
    if present is not None:
        mask[:, 1:] &= present[:, None]
    mask[:, 0] = True
    return mask


def fit_positions(batch, name: str, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The word-piece ids and their ``text_mask``, cut to the model's ``positions`` (a
    ``--max-length`` above the checkpoint's position table drops the pieces past it)."""
    return batch.features[name][:, :positions], text_mask(batch, name)[:, :positions]


class VisualTokens(nn.Module):
    """Every non-word-piece input as tokens of ``width``: per-step LayerNorm, then a
    learned linear map per input; a vector is one token. ``forward`` gives the tokens
    ``(B, S, width)``, which are valid ``(B, S)`` (valid steps of present inputs), and
    each token's step within its input ``(B, S)``."""

    def __init__(self, specs: dict, width: int):
        super().__init__()
        self.names = list(specs)
        self.norms = nn.ModuleList(item_norm(int(specs[n].dim)) for n in self.names)
        self.projections = nn.ModuleList(nn.Linear(int(specs[n].dim), width) for n in self.names)

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if not self.names:
            return None
        tokens, masks, steps = [], [], []
        for name, norm, projection in zip(self.names, self.norms, self.projections):
            x = batch.features[name]
            mask = batch.masks.get(name)
            if x.dim() == 2:
                x = x[:, None, :]
                mask = None
            if mask is None:
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            present = batch.is_present(name)
            if present is not None:
                mask = mask & present[:, None]
            tokens.append(projection(norm(x)))
            masks.append(mask)
            steps.append(torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1))
        return torch.cat(tokens, dim=1), torch.cat(masks, dim=1), torch.cat(steps, dim=1)


class _BertFusion(nn.Module):
    """What both BERT fusions share: word pieces and visual tokens into ``encoder``, the
    pooled [CLS] (``represent``) through dropout into a head per task. ``built_from``
    (the architecture and where the weights came from) is recorded in the run so that
    loading it rebuilds the model without the source checkpoint."""

    def __init__(self, name: str, inputs: dict, heads: dict[str, int], encoder, visual_width: int, *, dropout: float, built_from: dict | None):
        super().__init__()
        self.tokens, _, visual = split_inputs(inputs, name)
        self.encoder = encoder
        self.visual = VisualTokens(visual, visual_width)
        self.dropout = nn.Dropout(dropout)
        self.heads = TaskHeads(encoder.config.hidden_size, heads)
        self.width = encoder.config.hidden_size
        self.built_from = built_from

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.heads(self.dropout(self.represent(batch)))


class VisualBertFusion(_BertFusion):
    """VisualBERT over word pieces and visual tokens; the pooled [CLS] feeds the heads."""

    def __init__(self, inputs: dict, heads: dict[str, int], config, *, dropout: float = 0.1, built_from: dict | None = None):
        from transformers import VisualBertModel

        encoder = VisualBertModel(config, add_pooling_layer=True)
        super().__init__("visualbert", inputs, heads, encoder, config.visual_embedding_dim, dropout=dropout, built_from=built_from)

    def represent(self, batch) -> torch.Tensor:
        """The pooled [CLS] ``(B, hidden)``."""
        batch = as_batch(batch)
        ids, mask = fit_positions(batch, self.tokens, self.encoder.config.max_position_embeddings)
        visual = self.visual(batch)
        extra = {}
        if visual is not None:
            tokens, valid, _ = visual
            extra = {
                "visual_embeds": tokens, "visual_attention_mask": valid.long(),
                "visual_token_type_ids": torch.ones_like(valid, dtype=torch.long),
            }
        out = self.encoder(input_ids=ids, attention_mask=mask.long(), **extra)
        return out.pooler_output


class TinyBertFusion(_BertFusion):
    """A BERT encoder over word-piece embeddings followed by projected visual tokens
    (token type 1, positions counted within each input); the pooled [CLS] feeds the
    heads."""

    def __init__(self, inputs: dict, heads: dict[str, int], config, *, dropout: float = 0.1, built_from: dict | None = None):
        from transformers import BertModel

        encoder = BertModel(config, add_pooling_layer=True)
        super().__init__("tinybert", inputs, heads, encoder, config.hidden_size, dropout=dropout, built_from=built_from)

    def represent(self, batch) -> torch.Tensor:
        """The pooled [CLS] ``(B, hidden)``."""
        batch = as_batch(batch)
        positions_table = self.encoder.config.max_position_embeddings
        ids, mask = fit_positions(batch, self.tokens, positions_table)
        embeds = self.encoder.embeddings.word_embeddings(ids)
        positions = torch.arange(ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
        types = torch.zeros_like(ids)
        visual = self.visual(batch)
        if visual is not None:
            tokens, valid, steps = visual
            embeds = torch.cat([embeds, tokens], dim=1)
            mask = torch.cat([mask, valid], dim=1)
            # Steps past the table (a longer video than any seen in training) share its last position.
            positions = torch.cat([positions, steps.clamp(max=positions_table - 1)], dim=1)
            types = torch.cat([types, torch.ones_like(steps)], dim=1)
        out = self.encoder(inputs_embeds=embeds, attention_mask=mask.long(), token_type_ids=types, position_ids=positions)
        return out.pooler_output
