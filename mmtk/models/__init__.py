"""Fusion models picked by name (``mmtk train --model NAME``).

``MODELS`` maps a name to a builder ``build(input_dims, heads, *, hidden, dropout)`` that
returns an ``nn.Module``; ``forward(features: dict[str, Tensor])`` gives logits per task,
and models with per-modality weights also have ``explain(features)``. The builders import
torch only when called, so listing the models (``mmtk list models``) stays cheap.
"""

from __future__ import annotations

from mmtk.registry import Registry

MODELS: Registry = Registry("model")


@MODELS.register("concat", help="MLP over the concatenated modality vectors (per-modality LayerNorm, one hidden layer).")
def build_concat(input_dims: dict[str, int], heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
    """Early fusion: normalise each modality, concatenate, one hidden layer, a head per task."""
    from mmtk.models.concat import ConcatMLP

    return ConcatMLP(input_dims, heads, hidden=hidden, dropout=dropout)


@MODELS.register("gmu", help="Gated Multimodal Unit (Arevalo et al. 2017) over any number of modalities; --explain gives its gates.")
def build_gmu(input_dims: dict[str, int], heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
    """Gated fusion: per-modality tanh projections mixed by learned softmax gates."""
    from mmtk.models.gmu import GatedMultimodalUnit

    return GatedMultimodalUnit(input_dims, heads, hidden=hidden, dropout=dropout)


# Whether a model's modules have ``explain(features)``: read from the builder so that
# ``predict --explain`` can name the models that support it without building any.
build_concat.explains = False
build_gmu.explains = True


def supports_explain(model) -> bool:
    """Whether a built model can report per-modality weights (``predict --explain``)."""
    return callable(getattr(model, "explain", None))


def explainable_models() -> list[str]:
    """Names of the registered models that report per-modality weights."""
    return [name for name in MODELS.names() if getattr(MODELS.get(name), "explains", False)]
