"""Early and gated fusion of vectors, and attention pooling of sequences: the first models."""

from __future__ import annotations

from mmtk.models import MODELS, input_dims


@MODELS.register(
    "concat", help="MLP over the concatenated modality vectors (per-modality LayerNorm, one hidden layer).",
    explains=False, sequences=False, missing=True,
)
def build_concat(inputs: dict, heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
    """Early fusion: normalise each modality, concatenate, one hidden layer, a head per task."""
    from mmtk.models.concat import ConcatMLP

    return ConcatMLP(input_dims(inputs), heads, hidden=hidden, dropout=dropout)


@MODELS.register(
    "gmu", help="Gated Multimodal Unit (Arevalo et al. 2017) over any number of modalities; --explain gives its gates.",
    explains=True, sequences=False, missing=True,
)
def build_gmu(inputs: dict, heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
    """Gated fusion: per-modality tanh projections mixed by learned softmax gates."""
    from mmtk.models.gmu import GatedMultimodalUnit

    return GatedMultimodalUnit(input_dims(inputs), heads, hidden=hidden, dropout=dropout)


@MODELS.register(
    "attention-pool", help="Masked attention pooling over each sequence's steps, then an MLP over the pooled modalities.",
    explains=False, sequences=True, missing=True,
)
def build_attention_pool(inputs: dict, heads: dict[str, int], *, hidden: int = 128, dropout: float = 0.1):
    """A small sequence model: each sequence input is projected and pooled by learned
    attention over its valid steps (vectors are projected), then concatenated."""
    from mmtk.models.attention_pool import AttentionPool

    return AttentionPool(inputs, heads, hidden=hidden, dropout=dropout)
