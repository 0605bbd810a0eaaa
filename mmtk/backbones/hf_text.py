"""``hf:NAME_OR_PATH``: any transformers AutoModel text encoder, mean-pooled (128
tokens), or in its sequence form (``--sequence``, ``hf:NAME:seq``) the last hidden
state of every attended token, special tokens included, up to ``--max-length`` tokens.

A local directory (``hf:./my-bert``) is identified by the digests of its files, so the
same model under another path reuses the cache; a hub name is identified by its name and
the commit of the locally cached copy, when there is one.
"""

from __future__ import annotations

from functools import partial

from mmtk.backbones.base import BackboneConfig, make_fingerprint, require_modality
from mmtk.backbones.hub import TRANSFORMERS_FILES, json_field, load_cached_first, model_source, transformers_identity
from mmtk.backbones.registry import BACKBONES
from mmtk.backbones.text import TransformerTextEncoder, load_transformer, text_encoder, token_states_form
from mmtk.errors import UsageError

NAME = "hf"
MAX_LENGTH = 128
MODEL_FILES = (*TRANSFORMERS_FILES, "*.txt", "*.model")  # tokenizer files too


@BACKBONES.register(NAME, help="hf:NAME_OR_PATH: a transformers text encoder, mean-pooled or :seq token states (text)")
def resolve_hf(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``hf:NAME_OR_PATH`` (a hub model name or a local model directory)."""
    if not arg:
        raise UsageError("backbone 'hf' needs a model", "write hf:bert-base-uncased or hf:/path/to/model")
    require_modality(f"hf:{arg}", modality, "text", "use clip or efficientnet-lite0 for images")
    source, weights, local = model_source(arg, "hf", MODEL_FILES)
    dim = json_field(local / "config.json", "hidden_size") if local else None
    model_identity = transformers_identity(weights)
    identity = {
        **model_identity,
        "max_length": MAX_LENGTH,
        "pooling": "mean",
    }
    return BackboneConfig(
        spec=f"{NAME}:{source}",
        name=NAME,
        modality="text",
        fingerprint=make_fingerprint(NAME, identity),
        builder=build_hf,
        settings={"source": source},
        dim=dim,
        cpu_batch_size=32,
        cuda_batch_size=256,
        sequence_form=partial(token_states_form, identity=model_identity),
        trainable=trainable_hf,
    )


def _load(config: BackboneConfig, device: str):
    source = config.settings["source"]
    return load_cached_first(
        f"hf:{source}", lambda local_only: load_transformer(source, device, local_only=local_only),
        local_form=f"{NAME}:/path/to/model (a folder saved with save_pretrained)",
    )


def trainable_hf(config: BackboneConfig, device: str):
    """The model as a trainable ``TextTower`` (``--finetune text``), pooled by family."""
    from mmtk.finetune.towers import TextTower

    model, tokenizer = _load(config, device)
    return TextTower(model.train(), tokenizer, spec=config.spec, max_length=MAX_LENGTH)


def build_hf(config: BackboneConfig, device: str) -> TransformerTextEncoder:
    """Load tokenizer and model: local files first, the hub only when nothing is cached."""
    model, tokenizer = _load(config, device)
    return text_encoder(model, tokenizer, config, device, max_length=MAX_LENGTH)
