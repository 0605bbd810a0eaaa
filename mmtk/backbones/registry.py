"""The backbone registry and spec parsing.

A resolver registered under a name takes the text after ``NAME:`` (or None) and the
modality of the column it will encode (or None for the backbone's default) and returns
a ``BackboneConfig`` without loading any weights.
"""

from __future__ import annotations

from typing import Callable

from mmtk.backbones.base import MODALITIES, VIDEO, BackboneConfig, FeatureOptions
from mmtk.errors import UsageError
from mmtk.registry import Registry

Resolver = Callable[[str | None, str | None], BackboneConfig]

BACKBONES: Registry[Resolver] = Registry("backbone")


def resolve_backbone(
    spec: str, modality: str | None = None, *, sequence: bool = False, options: FeatureOptions | None = None
) -> BackboneConfig:
    """Parse ``NAME[:ARG]`` (``clip:ViT-B-32@laion2b_s34b_b79k``, ``hf:./my-bert``) into a
    ``BackboneConfig``; nothing is loaded. ``modality`` ("image", "text", "audio") picks
    the tower of a backbone that has both (clip); None means the backbone's default;
    "video" runs an image backbone over sampled frames (``options.fps``/``frames``).
    ``sequence`` asks for the backbone's sequence form (``--sequence``, ``BACKBONE:seq``);
    backbones that only make sequences (mfcc) are that form already.
    An unknown name raises ``UsageError`` listing the registered names."""
    spec = spec.strip()
    options = options or FeatureOptions()
    name, sep, arg = spec.partition(":")
    if not name:
        raise UsageError(f"empty backbone spec {spec!r}", f"choose one of: {', '.join(BACKBONES.names())}")
    if modality is not None and modality not in (*MODALITIES, VIDEO):
        raise UsageError(
            f"unknown modality {modality!r} for backbone {spec!r}", f"choose one of: {', '.join((*MODALITIES, VIDEO))}"
        )
    resolver = BACKBONES.get(name)
    if sep and not arg:
        raise UsageError(f"backbone spec {spec!r} ends with ':'", f"write {name} or {name}:ARGUMENT")
    if modality == VIDEO:
        if sequence:
            raise UsageError(
                f"backbone {spec!r} over a video column already stores a sequence (one vector per frame)",
                "drop :seq / --sequence for video columns",
            )
        from mmtk.backbones.frames import frames_config

        return frames_config(resolver(arg or None, "image"), options)
    config = resolver(arg or None, modality)
    if sequence and config.kind == "vector":
        if config.sequence_form is None:
            raise UsageError(
                f"backbone {config.spec!r} has no sequence form, only its pooled vector",
                f"drop :seq / --sequence for {config.spec}",
            )
        config = config.sequence_form(config, options)
    return config
