"""Autoencoder fusion: ``mmae`` (a multimodal autoencoder beside attention weighting)."""

from __future__ import annotations

from mmtk.errors import UsageError
from mmtk.models import MODELS, input_dims
from mmtk.models.catalog.transformers import check_positive


def parse_weights(model: str, key: str, value: str, count: int) -> list[float]:
    """``"W"`` (every input) or ``"W1,W2,..."`` (one per input, in input order) as floats >= 0."""
    try:
        weights = [float(part) for part in str(value).split(",")]
    except ValueError:
        weights = []
    if not weights or any(not w >= 0 for w in weights) or len(weights) not in (1, count):
        raise UsageError(
            f"--model-arg {key}={value}: model {model!r} wants one weight >= 0, or one per input ({count})",
            f"e.g. --model-arg {key}=1 or {key}={','.join(['1'] * count)} (in the order of --features)",
        )
    return weights * count if len(weights) == 1 else weights


@MODELS.register(
    "mmae",
    help=(
        "Multimodal autoencoder (the codes reconstruct every input: auxiliary losses recon.INPUT) beside attention "
        "over the inputs (--explain gives its weights); the classifier reads both."
    ),
    explains=True, sequences=False, missing=True, auxiliary=True,
)
def build_mmae(
    inputs: dict, heads: dict[str, int], *, hidden: int = 128, code: int = 32, dropout: float = 0.2, recon_weights: str = "1"
):
    """Autoencoder codes (``code`` wide per input) plus attention fusion (``hidden``);
    ``recon_weights`` is one weight for every input's reconstruction loss or one per
    input in input order (0 drops an input's term)."""
    from mmtk.models.mmae import MultimodalAutoencoder

    check_positive("mmae", hidden=hidden, code=code)
    if not 0 <= dropout < 1:
        raise UsageError(f"--model-arg dropout={dropout}: model 'mmae' needs a dropout in [0, 1)", "e.g. --model-arg dropout=0.2")
    dims = input_dims(inputs)
    weights = parse_weights("mmae", "recon_weights", recon_weights, len(dims))
    return MultimodalAutoencoder(dims, heads, hidden=hidden, code=code, dropout=dropout, recon_weights=weights)
