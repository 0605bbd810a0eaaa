"""The backbone registry and spec parsing.

A resolver registered under a name takes the text after ``NAME:`` (or None) and the
modality of the column it will encode (or None for the backbone's default) and returns
a ``BackboneConfig`` without loading any weights.
"""

from __future__ import annotations

import os
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
    spec = absolute_spec(spec)
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
        if options.view is not None:
            raise UsageError(
                f"test-time view {options.view!r} of {spec!r} over a video column: views are cut from still images",
                "use --tta with runs whose image features read an image column",
            )
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
    if options.view is not None:
        from mmtk.tta.backbone import view_config

        config = view_config(config, options.view)
    return config


# open_clip's source for a model directory (``clip:local-dir:PATH``).
_LOCAL_DIR = "local-dir:"


def absolute_spec(spec: str) -> str:
    """``spec`` with a relative local path in its argument made absolute (``hf:./tinybert``
    -> ``hf:/home/me/tinybert``), without resolving anything else: the form runs record
    and the store lists, so a run evaluated from another folder finds the same model, and
    ``store info`` finds what ``store ls`` shows. The path is the whole argument (hf,
    detr, hf-audio), the part after ``local-dir:``, or a weights file after open_clip's
    ``MODEL@``; it counts as local when written as one (``./``, ``../``, ``~``) or when it
    is a directory (a weights file after ``@``), as the backbones tell a path from a hub name."""
    spec = spec.strip()
    name, sep, arg = spec.partition(":")
    if not arg:
        return spec
    if arg.startswith(_LOCAL_DIR):
        return f"{name}:{_LOCAL_DIR}{_absolute(arg[len(_LOCAL_DIR):])}"
    if _is_local(arg):
        return f"{name}:{_absolute(arg)}"
    model, at, weights = arg.rpartition("@")
    if at and model and weights and os.path.isfile(os.path.expanduser(weights)):
        return f"{name}:{model}@{_absolute(weights)}"
    return spec


def _is_local(path: str) -> bool:
    return path in (".", "..") or path.startswith(("./", "../", "~", "/")) or os.path.isdir(path)


def _absolute(path: str) -> str:
    # Symlinks resolved, as the backbones identify local models by their real directory.
    from pathlib import Path

    return str(Path(path).expanduser().resolve()) if path else path
