"""Fusion models picked by name (``mmtk train --model NAME``).

``MODELS`` maps a name to a builder ``build(inputs, heads, **params)``: ``inputs`` is
``{name: InputSpec}`` (``mmtk.training.inputs``), ``heads`` ``{task: output units}``, and
the keyword-only parameters with their defaults are the model's ``--model-arg`` options.
The module's ``forward(batch)`` takes a ``mmtk.training.Batch`` (or a plain
``{name: tensor}`` dict) and gives logits per task. Capabilities are declared on the
registry entry, so callers ask them without building anything:

- ``explains``: the module has ``explain(batch) -> {input: (B,)}`` (``predict --explain``);
- ``sequences``: sequence inputs reach it unpooled, ``(B, T, d)`` with ``batch.masks``
  (otherwise they are pooled to vectors before training);
- ``missing``: it reads ``batch.present`` and ignores an absent modality
  (``--missing-modality mask``).

The builders import torch only when called, so listing the models stays cheap.
"""

from __future__ import annotations

import inspect

from mmtk.errors import UsageError
from mmtk.registry import Registry

MODELS: Registry = Registry("model")


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


def input_dims(inputs: dict) -> dict[str, int]:
    """``{name: width}`` of ``InputSpec``s (plain ints are accepted as widths)."""
    return {name: int(getattr(spec, "dim", spec)) for name, spec in inputs.items()}


def model_params(name: str) -> dict:
    """The ``--model-arg`` parameters of model ``name`` with their defaults."""
    signature = inspect.signature(MODELS.get(name))
    return {p.name: p.default for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_model_params(name: str, params: dict) -> dict:
    """``params`` with each value converted to its default's type; an unknown key or an
    unreadable value is a ``UsageError`` naming the valid ones."""
    defaults = model_params(name)
    checked = {}
    for key, value in params.items():
        if key not in defaults:
            valid = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) or "none"
            raise UsageError(f"model {name!r} has no parameter {key!r}", f"valid --model-arg keys: {valid}")
        checked[key] = _convert(name, key, value, defaults[key])
    return checked


def _convert(model: str, key: str, value, default):
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        return type(default)(value)
    except ValueError:
        raise UsageError(
            f"--model-arg {key}={value}: model {model!r} wants a {type(default).__name__} for {key}",
            f"e.g. --model-arg {key}={default!r}",
        ) from None


def supports_explain(model) -> bool:
    """Whether a built model can report per-modality weights (``predict --explain``)."""
    return callable(getattr(model, "explain", None))


def explainable_models() -> list[str]:
    """Names of the registered models that report per-modality weights."""
    return [name for name in MODELS.names() if MODELS.capabilities(name).get("explains")]
