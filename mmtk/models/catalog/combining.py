"""Multimodal-Toolkit's combining modules over any number of modalities
(``mmtk.models.combining`` says where each differs from the toolkit and why)."""

from __future__ import annotations

from mmtk.errors import UsageError
from mmtk.models import MODELS, input_dims


@MODELS.register(
    "mlp-concat", help="A hidden layer per modality, concatenated, then an MLP (Multimodal-Toolkit's individual MLPs then concat).",
    explains=False, sequences=False, missing=True,
)
def build_mlp_concat(inputs: dict, heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
    """Multimodal-Toolkit's individual MLPs then concat, for every modality."""
    from mmtk.models.combining import MLPThenConcat

    return MLPThenConcat(input_dims(inputs), heads, hidden=hidden, dropout=dropout)


@MODELS.register(
    "concat-mlp", help="The concatenated modalities through an MLP of `layers` hidden layers (layers=1 is concat).",
    explains=False, sequences=False, missing=True,
)
def build_concat_mlp(inputs: dict, heads: dict[str, int], *, hidden: int = 256, layers: int = 2, dropout: float = 0.2):
    """Multimodal-Toolkit's MLP on the concatenated features, over every modality."""
    from mmtk.models.combining import ConcatThenMLP

    if layers < 1:
        raise UsageError(f"--model-arg layers={layers}: concat-mlp needs at least one hidden layer", "e.g. --model-arg layers=2")
    return ConcatThenMLP(input_dims(inputs), heads, hidden=hidden, layers=layers, dropout=dropout)


@MODELS.register(
    "attention",
    help="Softmax attention over the modalities' projections, LeakyReLU scores against their mean "
    "(Multimodal-Toolkit's attention); --explain gives the weights.",
    explains=True, sequences=False, missing=True,
)
def build_attention(inputs: dict, heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
    """Multimodal-Toolkit's attention on the modality projections, keyed by their mean."""
    from mmtk.models.combining import AttentionCombiner

    return AttentionCombiner(input_dims(inputs), heads, hidden=hidden, dropout=dropout)


@MODELS.register(
    "gating",
    help="The primary input (default: the first) shifted by a gated sum of the others, at most beta of its norm "
    "(Multimodal-Toolkit's gating); --explain gives each modality's share.",
    explains=True, sequences=False, missing=True,
)
def build_gating(inputs: dict, heads: dict[str, int], *, primary: str = "", hidden: int = 256, beta: float = 0.2, dropout: float = 0.2):
    """Multimodal-Toolkit's gating then sum (a Multimodal Adaptation Gate) around ``primary``."""
    from mmtk.models.combining import GatingCombiner

    names = list(inputs)
    if primary and primary not in names:
        raise UsageError(f"--model-arg primary={primary}: gating has no input {primary!r}", f"name one of the --features: {', '.join(names)}")
    if not beta > 0:
        raise UsageError(f"--model-arg beta={beta:g}: gating needs beta > 0 (the shift's largest share of the primary's norm)", "e.g. --model-arg beta=0.2")
    return GatingCombiner(input_dims(inputs), heads, primary=primary, hidden=hidden, beta=beta, dropout=dropout)


@MODELS.register(
    "weighted-sum",
    help="The modalities' projections summed with learned per-feature weights (Multimodal-Toolkit's weighted sum); "
    "--explain gives each modality's share.",
    explains=True, sequences=False, missing=True,
)
def build_weighted_sum(inputs: dict, heads: dict[str, int], *, hidden: int = 256, dropout: float = 0.2):
    """Multimodal-Toolkit's weighted feature sum, every modality projected and weighted."""
    from mmtk.models.combining import WeightedSumCombiner

    return WeightedSumCombiner(input_dims(inputs), heads, hidden=hidden, dropout=dropout)
