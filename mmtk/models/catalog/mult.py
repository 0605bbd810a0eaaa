"""The Multimodal Transformer (``mult``) over sequence features."""

from __future__ import annotations

from mmtk.errors import UsageError
from mmtk.models import MODELS


@MODELS.register(
    "mult",
    help="Multimodal Transformer (Tsai et al. 2019): crossmodal attention between every pair of sequence inputs, "
         "then late fusion by concat (MulT-Concat) or gmu (MulT-GMU; --explain gives its gates).",
    explains=True, sequences=True, missing=True,
)
def build_mult(inputs: dict, heads: dict[str, int], *, width: int = 30, num_heads: int = 5, layers: int = 5,
               self_layers: int = 5, kernel_size: int = 1, embed_dropout: float = 0.25, attn_dropout: float = 0.1,
               relu_dropout: float = 0.1, res_dropout: float = 0.1, hidden: int = 128, dropout: float = 0.0,
               pool: str = "last", fusion: str = "concat", cross_attn_dropout: str = ""):
    """MulT over sequence inputs (at least one ``:seq`` feature; vector inputs join at
    late fusion). ``width``: the common width of the temporal convolution projections
    (kernel ``kernel_size``, odd); ``num_heads`` attention heads (``heads`` names the
    tasks); ``layers`` crossmodal blocks per ordered pair of sequence inputs;
    ``self_layers`` self-attention blocks per target over its concatenated crossmodal
    outputs; ``pool`` ``last`` (last valid step) or ``mean`` (mean of valid steps);
    ``fusion`` ``concat`` (a residual block of inner width ``hidden``) or ``gmu`` (a
    GMU of width ``hidden``; ``predict --explain`` gives its gates); ``dropout`` after
    late fusion; ``cross_attn_dropout`` ``INPUT=P[,INPUT=P...]`` gives the crossmodal
    transformers into a target input their own attention dropout (the others use
    ``attn_dropout``; the reference's defaults are 0.1 into text, 0 into audio and
    vision). Defaults are the reference implementation's (CMU-MOSEI settings)."""
    from mmtk.models.mult import FUSIONS, POOLS, GatedMultimodalTransformer, MultimodalTransformer

    sequences = [name for name, spec in inputs.items() if getattr(spec, "is_sequence", False)]
    if not sequences:
        raise UsageError(
            f"model 'mult' needs at least one sequence input, and {', '.join(inputs) or 'no input'} are vectors",
            "add a stored sequence with :seq, e.g. --features minilm:seq,efficientnet-lite0:seq (or use a vector model such as gmu)",
        )
    positive = {"width": width, "num_heads": num_heads, "layers": layers, "self_layers": self_layers, "hidden": hidden}
    for key, value in positive.items():
        if value < 1:
            raise UsageError(f"--model-arg {key}={value}: mult needs a positive {key}", f"e.g. --model-arg {key}=5")
    if width % num_heads:
        raise UsageError(f"--model-arg width={width} is not a multiple of num_heads={num_heads}",
                         "each head takes width / num_heads features: e.g. width=30 num_heads=5")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise UsageError(f"--model-arg kernel_size={kernel_size}: the temporal convolution needs an odd size",
                         "e.g. kernel_size=1 (the reference's) or 3")
    for key, value, valid in (("pool", pool, POOLS), ("fusion", fusion, FUSIONS)):
        if value not in valid:
            raise UsageError(f"--model-arg {key}={value} is not a mult {key}", f"choose one of: {', '.join(valid)}")
    for key, value in {"embed_dropout": embed_dropout, "attn_dropout": attn_dropout, "relu_dropout": relu_dropout,
                       "res_dropout": res_dropout, "dropout": dropout}.items():
        if not 0.0 <= value < 1.0:
            raise UsageError(f"--model-arg {key}={value} is not a dropout probability", "give a value in [0, 1)")
    cross = _target_dropouts(cross_attn_dropout, sequences)
    cls = GatedMultimodalTransformer if fusion == "gmu" else MultimodalTransformer
    return cls(inputs, heads, width=width, num_heads=num_heads, layers=layers, self_layers=self_layers,
               kernel_size=kernel_size, embed_dropout=embed_dropout, attn_dropout=attn_dropout,
               relu_dropout=relu_dropout, res_dropout=res_dropout, hidden=hidden, dropout=dropout, pool=pool, fusion=fusion,
               cross_attn_dropout=cross)


def _target_dropouts(spec: str, sequences: list[str]) -> dict[str, float]:
    """``INPUT=P,INPUT=P`` as ``{input: p}`` (input names never hold a comma: ``--features``
    splits on it)."""
    dropouts: dict[str, float] = {}
    hint = f"write --model-arg cross_attn_dropout=INPUT=P[,INPUT=P], INPUT one of: {', '.join(sequences)}"
    for part in filter(None, (piece.strip() for piece in spec.split(","))):
        name, equals, value = part.rpartition("=")
        if not equals or name.strip() not in sequences:
            raise UsageError(f"--model-arg cross_attn_dropout={spec}: {part!r} does not name a sequence input", hint)
        try:
            p = float(value)
        except ValueError:
            raise UsageError(f"--model-arg cross_attn_dropout={spec}: {value!r} is not a number", hint) from None
        if not 0.0 <= p < 1.0:
            raise UsageError(f"--model-arg cross_attn_dropout={spec}: {p} is not a dropout probability", "give a value in [0, 1)")
        dropouts[name.strip()] = p
    return dropouts
