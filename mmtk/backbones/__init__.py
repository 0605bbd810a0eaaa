"""Backbones: pretrained encoders picked by name (``clip``, ``hf:NAME``, ``minilm``,
``efficientnet-lite0``), resolved to frozen configs and built on demand.

Importing this package registers the built-in backbones; none of them imports torch,
transformers or open_clip until ``BackboneConfig.build`` is called.
"""

from __future__ import annotations

from mmtk.backbones import audio, clip, efficientnet_lite, hf_audio, hf_text, minilm, pixels  # noqa: F401  (register built-ins)
from mmtk.backbones import clip_patches, detr  # noqa: F401  (image backbones storing several vectors)
from mmtk.backbones import finetuned  # noqa: F401  (a run's fine-tuned tower: finetuned:RUN)
from mmtk.backbones.base import FEATURE_FORMAT_VERSION, BackboneConfig, BadInput, Encoder, FeatureOptions
from mmtk.backbones.registry import BACKBONES, resolve_backbone

__all__ = [
    "BACKBONES", "FEATURE_FORMAT_VERSION", "BackboneConfig", "BadInput", "Encoder", "FeatureOptions", "resolve_backbone",
]
