"""Transformer fusion over token sequences: ``mm-transformer`` (the MAMI framework)."""

from __future__ import annotations

from mmtk.errors import UsageError
from mmtk.models import MODELS


def check_choice(model: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    """A ``--model-arg`` with a fixed set of values: anything else is a usage error."""
    if value not in choices:
        raise UsageError(f"--model-arg {key}={value}: model {model!r} has no such {key}", f"choose one of: {', '.join(choices)}")


def check_positive(model: str, **values: float) -> None:
    """Sizes and counts must be at least 1 (a weight or rate may be 0)."""
    for key, value in values.items():
        if value < 1:
            raise UsageError(f"--model-arg {key}={value}: model {model!r} needs {key} >= 1", f"e.g. --model-arg {key}=2")


@MODELS.register(
    "mm-transformer",
    help=(
        "MAMI multi-modal transformer (Codec, SemEval-2022 Task 5) over every input's tokens: encoder=shared|multi, "
        "classifier=cls|class-query, auxiliary losses align and contrastive."
    ),
    explains=False, sequences=True, missing=True, auxiliary=True,
)
def build_mm_transformer(
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
    """Transformer over every input's tokens (a vector is one token): ``hidden`` width,
    ``num_heads`` attention heads, ``layers`` encoder layers (per input with
    ``encoder=multi``), ``decoder_layers`` for ``classifier=class-query``; auxiliary losses
    weighted by ``align_weight`` and ``contrastive_weight`` (0 turns one off)."""
    from mmtk.models.mm_transformer import CLASSIFIERS, ENCODERS, MultimodalTransformer

    name = "mm-transformer"
    check_choice(name, "encoder", encoder, ENCODERS)
    check_choice(name, "classifier", classifier, CLASSIFIERS)
    check_positive(name, hidden=hidden, num_heads=num_heads, layers=layers, decoder_layers=decoder_layers, feedforward=feedforward)
    if hidden % num_heads:
        raise UsageError(
            f"--model-arg hidden={hidden} is not divisible by num_heads={num_heads} (model {name!r})",
            "pick hidden as a multiple of num_heads, e.g. hidden=128 num_heads=4",
        )
    if not 0 <= dropout < 1 or align_weight < 0 or contrastive_weight < 0:
        raise UsageError(f"model {name!r}: dropout must be in [0, 1) and loss weights >= 0", "e.g. --model-arg align_weight=0.1")
    return MultimodalTransformer(
        inputs, heads, hidden=hidden, num_heads=num_heads, layers=layers, decoder_layers=decoder_layers,
        feedforward=feedforward, dropout=dropout, encoder=encoder, classifier=classifier,
        align_weight=align_weight, contrastive_weight=contrastive_weight,
    )
