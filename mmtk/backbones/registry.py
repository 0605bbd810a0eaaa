"""The backbone registry and spec parsing.

A resolver registered under a name takes the text after ``NAME:`` (or None) and the
modality of the column it will encode (or None for the backbone's default) and returns
a ``BackboneConfig`` without loading any weights.
"""

from __future__ import annotations

from typing import Callable

from mmtk.backbones.base import MODALITIES, BackboneConfig
from mmtk.errors import UsageError
from mmtk.registry import Registry

Resolver = Callable[[str | None, str | None], BackboneConfig]

BACKBONES: Registry[Resolver] = Registry("backbone")


def resolve_backbone(spec: str, modality: str | None = None) -> BackboneConfig:
    """Parse ``NAME[:ARG]`` (``clip:ViT-B-32@laion2b_s34b_b79k``, ``hf:./my-bert``) into a
    ``BackboneConfig``; nothing is loaded. ``modality`` ("image" or "text") picks the
    tower of a backbone that has both (clip); None means the backbone's default.
    An unknown name raises ``UsageError`` listing the registered names."""
    spec = spec.strip()
    name, sep, arg = spec.partition(":")
    if not name:
        raise UsageError(f"empty backbone spec {spec!r}", f"choose one of: {', '.join(BACKBONES.names())}")
    if modality is not None and modality not in MODALITIES:
        raise UsageError(f"unknown modality {modality!r} for backbone {spec!r}", f"choose one of: {', '.join(MODALITIES)}")
    resolver = BACKBONES.get(name)
    if sep and not arg:
        raise UsageError(f"backbone spec {spec!r} ends with ':'", f"write {name} or {name}:ARGUMENT")
    return resolver(arg or None, modality)
