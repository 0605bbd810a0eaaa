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

- ``lr``, ``epochs``: the learning rate and epoch cap the model trains with when none
  is given (a pretrained transformer is fine-tuned far below the 1e-3 that trains a
  fusion head from scratch, for tens of epochs rather than the hundreds a small set gets
  by default, over which its schedule would barely move);
- ``auxiliary``: ``forward(batch, auxiliary=True)`` returns ``(logits, {term: loss})``
  with extra training losses (already weighted), which ``AuxiliaryObjective`` adds to the
  task losses as ``aux.TERM`` terms of ``train_log.jsonl``.
- ``fits="arrays"``: the model has no parameters; ``fit_arrays(features, targets,
  kinds, balanced=, seed=)`` fits it whole (``svm``, ``logreg``), which ``train`` calls
  instead of the gradient loop (tests that need gradients skip such models).
- ``fits="members"``: a stacking ensemble (``stack``), which ``train`` hands to its own
  recipe (``mmtk.stacking.train_stack``: member runs, out-of-fold scores, meta-estimators).
- ``interactions=False``: the model cannot learn a label that needs two inputs together
  (a linear model, ``logreg``); the zoo contract then asks it to learn a linearly
  separable task only.

Every model also has ``represent(batch) -> (B, width)`` (the fused representation its
task heads read) and ``width``, so that a model can be the trunk of ``multitask-heads``
and a distillation student whose hidden state a FitNet-style loss regresses.

The builders live in ``mmtk.models.catalog`` (one module per family) and import torch
only when called, so listing the models stays cheap.
"""

from __future__ import annotations

import inspect

from mmtk.errors import UsageError
from mmtk.registry import Registry

MODELS: Registry = Registry("model")


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


def model_capabilities(name: str, params: dict | None = None) -> dict:
    """The capabilities of model ``name`` built with ``params``: the registry entry's,
    refined by its builder's ``capabilities_for(params)`` where it has one (a model whose
    abilities are its trunk's, such as ``multitask-heads``)."""
    capabilities = MODELS.capabilities(name)
    refine = getattr(MODELS.get(name), "capabilities_for", None)
    if params is not None and callable(refine):
        capabilities.update(refine(params))
    return capabilities


def supports_explain(model) -> bool:
    """Whether a built model can report per-modality weights (``predict --explain``)."""
    return callable(getattr(model, "explain", None))


def explainable_models() -> list[str]:
    """Names of the registered models that report per-modality weights."""
    return [name for name in MODELS.names() if MODELS.capabilities(name).get("explains")]


# Registers every model family (the catalog imports MODELS and input_dims from here).
import mmtk.models.catalog  # noqa: E402,F401
