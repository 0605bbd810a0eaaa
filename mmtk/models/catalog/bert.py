"""BERT encoders over word pieces (``tokens@COLUMN``) and visual tokens: the VisualBERT
teacher and the TinyBERT-shaped student of ``mmtk distill``, also plain zoo models."""

from __future__ import annotations

from mmtk.errors import UsageError
from mmtk.models import MODELS

#: VisualBERT pre-trained on COCO for NLVR2 (the MSD paper's teacher family).
VISUALBERT_DEFAULT = "uclanlp/visualbert-nlvr2-coco-pre"
VISUALBERT_HUB_HINT = (
    "pass --model-arg weights=minilm (VisualBERT on the packaged offline MiniLM) "
    "or weights=/path/to/a/checkpoint (a BERT or VisualBERT saved with save_pretrained)"
)
TINYBERT_HUB_HINT = "pass --model-arg weights=minilm (offline), weights=random, or weights=/path/to/a/BERT/checkpoint"


def _rebuilt(saved: dict, model: str) -> dict | None:
    """The ``built_from`` record a loaded run passes back (``mmtk.runs.load_run``)."""
    unknown = sorted(set(saved) - {"built_from"})
    if unknown:
        raise TypeError(f"{model}: unexpected arguments {unknown}")
    return saved.get("built_from")


@MODELS.register(
    "visualbert",
    help="VisualBERT (Li et al. 2019) over word pieces (tokens@COLUMN) and projected visual tokens; "
    "weights=minilm builds it on the packaged MiniLM offline.",
    explains=False, sequences=True, missing=True, tokens=True, lr=1e-4, epochs=30,
)
def build_visualbert(inputs: dict, heads: dict[str, int], *, weights: str = VISUALBERT_DEFAULT, visual_dim: int = 0, dropout: float = 0.1, **saved):
    """VisualBERT teacher. ``weights``: a hub name (default, where a hub is reachable), a
    directory holding a VisualBERT or BERT checkpoint, or ``minilm`` (VisualBERT on the
    packaged MiniLM: 6 layers, 384 wide, BERT's vocabulary, its embeddings, layers and
    pooler copied by name). ``visual_dim``: width the learned projection maps each visual
    input to (0: the checkpoint's ``visual_embedding_dim``, or its hidden size for a
    BERT). ``dropout`` before the task heads."""
    from transformers import VisualBertConfig

    from mmtk.models.bert import VisualBertFusion, split_inputs
    from mmtk.models.bert_weights import ARCHITECTURE_KEYS, architecture, check_vocab, copy_bert, load_source

    built = _rebuilt(saved, "visualbert")
    if built is not None:
        return VisualBertFusion(inputs, heads, VisualBertConfig(**built["architecture"]), dropout=dropout, built_from=built)
    _, vocab, _ = split_inputs(inputs, "visualbert")
    if weights == "random":
        raise UsageError("visualbert has no random initialisation here", VISUALBERT_HUB_HINT)
    source = load_source(weights, allow_visual=True, hub_hint=VISUALBERT_HUB_HINT)
    check_vocab(source, vocab, "visualbert")
    shape = {key: getattr(source.config, key) for key in ARCHITECTURE_KEYS}
    if source.is_visual:
        config = VisualBertConfig(**{**shape, **{k: getattr(source.config, k) for k in ("visual_embedding_dim", "bypass_transformer")}})
    else:
        config = VisualBertConfig(**shape, visual_embedding_dim=source.config.hidden_size)
    if visual_dim:
        config.visual_embedding_dim = int(visual_dim)
    _check_positions(inputs, config.max_position_embeddings, "visualbert", visual=False)
    built = {"architecture": architecture(config, visual=True)}
    model = VisualBertFusion(inputs, heads, config, dropout=dropout, built_from=built)
    state = source.model.state_dict()
    if source.is_visual:
        # The checkpoint's own visual projection fits only its visual_embedding_dim.
        left = copy_bert(state, model.encoder, config.num_hidden_layers)
        what = "embeddings, visual embeddings, all layers and pooler"
    else:
        left = [key for key in copy_bert(state, model.encoder, config.num_hidden_layers) if not key.startswith(VISUAL_FROM_TEXT)]
        _visual_init(model.encoder)
        what = f"embeddings, {config.num_hidden_layers} layers and pooler copied by name; visual embeddings from its text ones"
    built["initialised_from"] = f"{source.description}: {what}; new: {', '.join(_groups(left)) or 'nothing'}"
    return model


VISUAL_FROM_TEXT = ("embeddings.visual_token_type_embeddings", "embeddings.visual_position_embeddings")


def _visual_init(encoder) -> None:
    """VisualBERT's own initialisation of its visual token-type and position embeddings
    (``special_visual_initialize``): copies of the text ones, here the loaded ones."""
    import torch

    embeddings = encoder.embeddings
    with torch.no_grad():
        embeddings.visual_token_type_embeddings.weight.copy_(embeddings.token_type_embeddings.weight)
        embeddings.visual_position_embeddings.weight.copy_(embeddings.position_embeddings.weight)


def _groups(keys: list[str]) -> list[str]:
    """Parameter names shortened to their modules (``embeddings.visual_projection``)."""
    return sorted({key.rsplit(".", 1)[0] for key in keys})


@MODELS.register(
    "tinybert",
    help="TinyBERT-shaped BERT (4 layers, 312 wide) over word pieces (tokens@COLUMN) and projected visual tokens; "
    "weights=minilm projects MiniLM into it.",
    explains=False, sequences=True, missing=True, tokens=True, lr=2e-4, epochs=30,
)
def build_tinybert(
    inputs: dict, heads: dict[str, int], *, weights: str = "minilm", layers: int = 4, hidden: int = 312,
    attention_heads: int = 12, intermediate: int = 1200, dropout: float = 0.1, **saved,
):
    """TinyBERT student (TinyBERT General 4L-312D's shape by default). ``weights``: a
    BERT checkpoint directory or hub name (e.g. huawei-noah/TinyBERT_General_4L_312D),
    copied when its widths equal the student's and otherwise projected into it; ``minilm``
    (the packaged MiniLM's embeddings and first layers, projected 384 -> ``hidden``:
    ``mmtk.models.bert_weights``); or ``random``. ``layers``, ``hidden``,
    ``attention_heads``, ``intermediate``: the student's size (``hidden`` divisible by
    ``attention_heads``). ``dropout`` before the task heads."""
    from transformers import BertConfig

    from mmtk.models.bert import TinyBertFusion, split_inputs
    from mmtk.models.bert_weights import RANDOM, architecture, check_vocab, load_source, project_bert

    built = _rebuilt(saved, "tinybert")
    if built is not None:
        return TinyBertFusion(inputs, heads, BertConfig(**built["architecture"]), dropout=dropout, built_from=built)
    _, vocab, _ = split_inputs(inputs, "tinybert")
    for name, value in (("layers", layers), ("hidden", hidden), ("attention_heads", attention_heads), ("intermediate", intermediate)):
        if int(value) < 1:
            raise UsageError(f"tinybert: {name}={value} must be at least 1", f"pass e.g. --model-arg {name}=4")
    if hidden % attention_heads:
        raise UsageError(
            f"tinybert: hidden={hidden} is not divisible by attention_heads={attention_heads}",
            f"pass a multiple, e.g. --model-arg hidden={attention_heads * max(1, round(hidden / attention_heads))}",
        )
    shape = {
        "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": attention_heads,
        "intermediate_size": intermediate,
    }
    source = None
    if weights != RANDOM:
        source = load_source(weights, allow_visual=False, hub_hint=TINYBERT_HUB_HINT)
        check_vocab(source, vocab, "tinybert")
        src = source.config
        shape.update({
            "max_position_embeddings": src.max_position_embeddings, "type_vocab_size": src.type_vocab_size,
            "hidden_act": src.hidden_act, "layer_norm_eps": src.layer_norm_eps, "pad_token_id": src.pad_token_id,
        })
    config = BertConfig(**shape)
    _check_positions(inputs, config.max_position_embeddings, "tinybert", visual=True)
    built = {"architecture": architecture(config, visual=False)}
    model = TinyBertFusion(inputs, heads, config, dropout=dropout, built_from=built)
    if source is None:
        built["initialised_from"] = "random (BERT's initialisation)"
    else:
        built["initialised_from"] = project_bert(source, model.encoder, layers)
    return model


def _check_positions(inputs: dict, positions: int, model: str, *, visual: bool) -> None:
    """Word pieces (and, where the model numbers them, visual steps) must fit the
    checkpoint's position table."""
    for name, spec in inputs.items():
        kind = getattr(spec, "kind", "vector")
        longest = getattr(spec, "max_len", None)
        if longest is None or (kind != "tokens" and not (visual and kind == "sequence")):
            continue
        if int(longest) > positions:
            raise UsageError(
                f"{model}: input {name} has up to {longest} steps but the model has {positions} positions",
                "lower --max-length (word pieces), or sample fewer steps (--frames)",
            )
