"""resolve_backbone: spec parsing, the registry, fingerprints; nothing gets loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmtk.backbones import BACKBONES, FEATURE_FORMAT_VERSION, resolve_backbone
from mmtk.errors import UsageError


def test_builtin_backbones_are_registered():
    assert {"clip", "efficientnet-lite0", "hf", "minilm"} <= set(BACKBONES.names())
    assert all(BACKBONES.describe()[name] for name in BACKBONES.names())


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UsageError) as error:
        resolve_backbone("resnet-9000")
    assert "resnet-9000" in str(error.value)
    assert "efficientnet-lite0" in str(error.value) and "minilm" in str(error.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("efficientnet-lite0:large", "takes no argument"),
        ("minilm:", "ends with ':'"),
        ("hf", "needs a model"),
        ("hf:./no/such/model", "not found"),
        ("clip:ViT-B-32", "names no pretrained weights"),
        ("clip:hf-hub:not-a-repo", "bad hub repo"),
        ("clip:local-dir:/no/such/dir", "open_clip_config.json"),
    ],
)
def test_malformed_specs_fail_with_a_hint(spec, message):
    with pytest.raises(UsageError) as error:
        resolve_backbone(spec)
    assert message in str(error.value)
    assert error.value.hint


def test_modality_must_fit_the_backbone():
    assert resolve_backbone("efficientnet-lite0", "image").modality == "image"
    with pytest.raises(UsageError, match="encodes images, not text"):
        resolve_backbone("efficientnet-lite0", "text")
    with pytest.raises(UsageError, match="encodes text, not image"):
        resolve_backbone("minilm", "image")


@pytest.mark.parametrize(
    "spec, modality, message",
    [
        ("efficientnet-lite0", "audio", "backbone 'efficientnet-lite0' encodes images, not audio"),
        ("pixels", "text", "backbone 'pixels' encodes images, not text"),
        ("clip-patches", "audio", "backbone 'clip-patches' encodes images, not audio"),
        ("detr", "text", "backbone 'detr' encodes images, not text"),
        ("minilm", "audio", "backbone 'minilm' encodes text, not audio"),
        ("hf:bert-base-uncased", "image", "backbone 'hf:bert-base-uncased' encodes text, not image"),
        ("mfcc", "image", "backbone 'mfcc' encodes audio, not image"),
        ("audio-stats", "text", "backbone 'audio-stats' encodes audio, not text"),
        ("hf-audio:facebook/wav2vec2-base", "text", "backbone 'hf-audio:facebook/wav2vec2-base' encodes audio, not text"),
    ],
)
def test_every_backbone_refuses_another_modality_by_name(spec, modality, message):
    # Refused while resolving, before any weights or hub are looked at.
    with pytest.raises(UsageError) as error:
        resolve_backbone(spec, modality)
    assert str(error.value).startswith(message)
    assert error.value.hint


@pytest.mark.parametrize("name", ["efficientnet-lite0", "minilm", "mfcc", "audio-stats"])
def test_backbones_without_arguments_refuse_one(name):
    with pytest.raises(UsageError) as error:
        resolve_backbone(f"{name}:extra")
    assert str(error.value).startswith(f"backbone {name!r} takes no argument (got 'extra')")
    assert error.value.hint == f"write just --backbone {name}"


def test_default_specs_are_canonical_and_know_their_dim():
    clip = resolve_backbone("clip")
    assert clip.spec == "clip:ViT-B-32@laion2b_s34b_b79k" and clip.modality == "image" and clip.dim == 512
    assert resolve_backbone(clip.spec).fingerprint == clip.fingerprint
    assert resolve_backbone("efficientnet-lite0").dim == 1280
    assert resolve_backbone("minilm").dim == 384


def test_fingerprints_separate_backbones_towers_and_weights():
    fingerprints = {
        resolve_backbone("efficientnet-lite0").fingerprint,
        resolve_backbone("minilm").fingerprint,
        resolve_backbone("clip").fingerprint,
        resolve_backbone("clip", "text").fingerprint,
        resolve_backbone("clip:ViT-B-16@laion2b_s34b_b88k").fingerprint,
        resolve_backbone("hf:bert-base-uncased").fingerprint,
    }
    assert len(fingerprints) == 6
    assert all(len(f) == 64 and int(f, 16) >= 0 for f in fingerprints)


def test_fingerprint_covers_the_feature_format_version(monkeypatch):
    from mmtk.backbones import base

    before = resolve_backbone("efficientnet-lite0").fingerprint
    monkeypatch.setattr(base, "FEATURE_FORMAT_VERSION", FEATURE_FORMAT_VERSION + 1)
    assert resolve_backbone("efficientnet-lite0").fingerprint != before


def test_local_weights_are_identified_by_content_not_path(tiny_clip_dir, tmp_path):
    import shutil

    original = resolve_backbone(f"clip:local-dir:{tiny_clip_dir}")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_dir, copy)
    moved = resolve_backbone(f"clip:local-dir:{copy}")
    assert moved.fingerprint == original.fingerprint
    assert moved.spec == f"clip:local-dir:{copy.resolve()}"
    weights = copy / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    assert resolve_backbone(f"clip:local-dir:{copy}").fingerprint != original.fingerprint


def test_resolving_imports_no_heavy_library():
    code = (
        "import sys; from mmtk.backbones import resolve_backbone\n"
        "for s in ['clip', 'minilm', 'efficientnet-lite0', 'hf:bert-base-uncased']: resolve_backbone(s)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'open_clip', 'cv2') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
