"""What every backbone is made of: its frozen config, the encoder it builds, and the
fingerprint that keys its features in the store.

A backbone spec (``clip:ViT-B-32@laion2b_s34b_b79k``) resolves to a ``BackboneConfig``
without touching weights; ``config.build(device)`` loads them and returns an ``Encoder``.
Configs are plain picklable data (the builder is a module-level function), so extraction
can ship a config to worker processes and let each build its own model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import numpy as np

from mmtk.errors import BadInput, UsageError  # BadInput: re-exported, backbones raise it

# Bump when the way features are computed or stored changes for every backbone; it is part
# of every fingerprint, so old store entries stop matching instead of being silently mixed.
FEATURE_FORMAT_VERSION = 1

MODALITIES = ("image", "text", "audio")
#: A video column: encoded as frames through an image backbone (or as its audio track).
VIDEO = "video"

#: What an encoder returns per item: one vector (d,) or a sequence (T_i, d) of steps.
KINDS = ("vector", "sequence")


class Encoder(Protocol):
    """A loaded backbone. ``load`` runs on CPU (in worker processes), ``encode`` on the
    backbone's device."""

    dim: int

    def load(self, value: str) -> Any:
        """Decode one item (image path -> preprocessed CHW tensor, text -> str); raises
        ``BadInput`` for an item that cannot be used."""

    def collate(self, items: Sequence[Any]) -> Any:
        """Combine loaded items into one batch for ``encode``."""

    def encode(self, batch: Any) -> np.ndarray | list[np.ndarray]:
        """Return float32 features: shape (batch size, dim) for a ``vector`` backbone, or
        for a ``sequence`` backbone one (T_i, dim) array per item (lengths may differ)."""

    # Optional: ``close()`` ends what the encoder started beyond memory (a thread loading
    # weights, ``BackgroundModel``); ``close_resource`` calls it when it exists.


class Encoded(NamedTuple):
    """What ``encode`` returns for a backbone with companion feature sets
    (``BackboneConfig.companions``): its ``features`` as usual, and for each companion
    fingerprint one (T_i, d) array per item (the times of video frames)."""

    features: np.ndarray | list[np.ndarray]
    companions: dict[str, list[np.ndarray]]


@dataclass(frozen=True)
class FeatureOptions:
    """Extraction settings beyond the backbone spec that change what is stored, so they
    are part of the fingerprints of the features they affect (and only of those).

    ``max_length``: tokens kept by text backbones' sequence form (``--sequence``; the
    pooled forms keep their model's own limit). ``fps`` / ``frames``: how video frames
    are sampled for an image backbone over a video column: ``fps`` frames per second,
    or, when ``frames`` is set, the first frame of each of ``frames`` equal chunks.
    Training records them with each feature, so evaluation and prediction resolve the
    same fingerprints.
    """

    max_length: int = 128
    fps: float = 1.0
    frames: int | None = None

    def __post_init__(self):
        from mmtk.errors import UsageError

        if not (isinstance(self.max_length, int) and self.max_length >= 2):
            raise UsageError(f"--max-length {self.max_length!r} must be an integer >= 2", "pass e.g. --max-length 128")
        if not (isinstance(self.fps, (int, float)) and 0 < self.fps <= 1000):
            raise UsageError(f"--fps {self.fps!r} must be a number above 0", "pass e.g. --fps 1 or --fps 0.5")
        if self.frames is not None and not (isinstance(self.frames, int) and self.frames >= 1):
            raise UsageError(f"--frames {self.frames!r} must be an integer >= 1", "pass e.g. --frames 8")

    def to_json(self) -> dict:
        """Only the settings that differ from the defaults (run configs stay short)."""
        defaults = FeatureOptions()
        return {name: value for name, value in vars(self).items() if value != getattr(defaults, name)}

    @classmethod
    def from_json(cls, data: dict | None) -> FeatureOptions:
        return cls(**(data or {}))


@dataclass(frozen=True)
class BackboneConfig:
    """A resolved backbone spec: everything needed to build it, nothing loaded yet.

    ``settings`` holds the builder's arguments (model name, weights path, preprocessing);
    treat it as read-only. ``dim`` is None when it is only known once weights are loaded
    (a hub model that is not cached). ``cpu_batch_size`` / ``cuda_batch_size`` are the
    batch sizes ``--batch-size auto`` uses on each device. ``kind`` is ``"vector"`` (one
    (dim,) array per item) or ``"sequence"`` (one (T_i, dim) array per item, e.g. MFCC
    frames); extraction stores features under that kind. ``cpu_workers`` says how CPU
    extraction runs in parallel: ``"threads"`` sharing one encoder (torch and PIL release
    the GIL) or ``"processes"`` with one encoder each (work that holds the GIL).
    ``sequence_form(config, options)``, for vector backbones that have one, returns the
    config of the same backbone storing sequences (token states, a spatial grid) instead:
    what ``--sequence`` and ``BACKBONE:seq`` resolve to. ``companions`` maps the
    fingerprint of each side feature set the encoder returns with its features
    (``Encoded``) to its store meta; extraction commits them just before the features,
    so an item that has features has its companions too. ``trainable(config, device)``,
    for backbones that can be fine-tuned, builds what ``build_trainable`` returns.
    ``variant`` says how the
    stored features differ from the backbone's default form ("seq max_length=128",
    "frames fps=1"; empty for the default): the spec alone names the model, and ``store
    ls`` shows both so that a pooled and a sequence feature set can be told apart.
    """

    spec: str
    name: str
    modality: str
    fingerprint: str
    builder: Callable[["BackboneConfig", str], Encoder] = field(repr=False, compare=False)
    settings: dict = field(default_factory=dict, compare=False)
    dim: int | None = None
    cpu_batch_size: int = 16
    cuda_batch_size: int = 128
    channels_last: bool = False
    kind: str = "vector"
    cpu_workers: str = "threads"
    sequence_form: Callable[["BackboneConfig", FeatureOptions], "BackboneConfig"] | None = field(
        default=None, repr=False, compare=False
    )
    companions: dict = field(default_factory=dict, compare=False)
    variant: str = ""
    trainable: Callable[["BackboneConfig", str], Any] | None = field(default=None, repr=False, compare=False)

    def build(self, device: str = "cpu") -> Encoder:
        """Load the weights onto ``device`` ("cpu", "cuda", "cuda:1") and return the encoder."""
        return self.builder(self, device)

    def build_trainable(self, device: str = "cpu"):
        """The backbone as a trainable ``torch.nn.Module`` on ``device`` (a
        ``mmtk.finetune.towers`` tower): the same weights as ``build``, but with batch
        norms and dropout kept, in train mode, with real ``nn.Parameter``s and no
        inference mode, for ``mmtk train --finetune``. Backbones that cannot be
        fine-tuned raise ``UsageError`` naming those that can."""
        if self.trainable is None or self.kind != "vector" or self.modality not in ("text", "image"):
            from mmtk.finetune.towers_names import FINETUNABLE

            raise UsageError(
                f"backbone {self.spec!r}{' (' + self.variant + ')' if self.variant else ''} cannot be fine-tuned",
                f"fine-tune one of: {FINETUNABLE} (their pooled form), or train on its stored features without --finetune",
            )
        return self.trainable(self, device)


# How resolver errors name what a backbone reads: "encodes images, not text".
_ENCODES = {"image": "images", "text": "text", "audio": "audio"}


def require_modality(backbone: str, modality: str | None, encodes: str, hint: str) -> None:
    """Refuse a column of another modality (``modality`` None: resolving by name only)."""
    if modality not in (None, encodes):
        raise UsageError(f"backbone {backbone!r} encodes {_ENCODES[encodes]}, not {modality}", hint)


def require_no_argument(backbone: str, arg: str | None) -> None:
    """Refuse ``NAME:ARG`` for a backbone that takes no argument."""
    if arg:
        raise UsageError(f"backbone {backbone!r} takes no argument (got {arg!r})", f"write just --backbone {backbone}")


def make_fingerprint(name: str, identity: dict) -> str:
    """Hex sha256 over the backbone name, its weights identity and preprocessing settings
    (``identity``, JSON-serialisable) and ``FEATURE_FORMAT_VERSION``."""
    payload = json.dumps(
        {"backbone": name, "identity": identity, "feature_format": FEATURE_FORMAT_VERSION},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def package_version(distribution: str) -> str:
    """Installed version of a distribution, read from its metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not-installed"


def autocast_for(device: str):
    """fp16 autocast on CUDA (about twice the throughput; features agree with fp32 to
    about 1e-3 relative); a no-op on CPU, where fp32 is both faster and exact."""
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()



class BackgroundModel:
    """A model whose weights load in a background thread: ``load()`` builds and returns
    the forward callable. Calling the instance waits for the load, then runs it; a load
    error is raised there, in the thread that wanted the model.

    CPU extraction decodes the first few hundred items meanwhile (``mmtk.extract``),
    so the ~2 s of importing torch and reading the weights no longer leave a core idle
    (10-15% of a 1,000-image efficientnet-lite0 run). Use it only where nothing forks
    while it loads: the CUDA path's DataLoader forks workers, so it loads up front.

    ``close()`` waits for the load to end (an import cannot be cancelled). Whoever builds
    the encoder closes it; the thread is not a daemon either, so the interpreter waits
    for it too: a process that exited while the thread was still importing torch
    aborted with "terminate called without an active exception" (exit 134) after a bad
    item stopped extraction at once.
    """

    def __init__(self, load: Callable[[], Callable[..., Any]]):
        import threading

        self._forward: Callable[..., Any] | None = None
        self._error: BaseException | None = None
        self._loaded = threading.Event()
        self._thread = threading.Thread(target=self._load, args=(load,), name="mmtk-model-load")
        self._thread.start()

    def _load(self, load) -> None:
        try:
            self._forward = load()
        except BaseException as exc:  # handed to the caller of the model
            self._error = exc
        finally:
            self._loaded.set()

    def get(self) -> Callable[..., Any]:
        """The loaded forward, waiting for it."""
        self._loaded.wait()
        if self._error is not None:
            raise self._error
        return self._forward

    def close(self) -> None:
        """Wait for the loading thread to finish; a load error is not raised here."""
        self._thread.join()

    def __call__(self, *args, **kwargs):
        return self.get()(*args, **kwargs)


def close_resource(thing) -> None:
    """``thing.close()`` where it has one: encoders and models that hold more than
    memory (a loading thread) have it; the rest need nothing."""
    close = getattr(thing, "close", None)
    if callable(close):
        close()


def file_digest(path) -> str:
    """Digest of a file's bytes: the identity of local weights. It is the content key
    the store uses for media files (memoised on path, size, times and inode), so resolving the
    same spec twice in a process reads the weights once."""
    import os

    from mmtk.data.content import content_key

    # Any media modality selects content_key's file hashing; "image" is just one of them.
    return content_key(os.fspath(path), "image")


def directory_identity(directory, patterns: Sequence[str]) -> dict[str, str]:
    """Digest of every file in ``directory`` matching ``patterns`` (weights, configs,
    tokenizer files), keyed by file name: the identity of a local model directory."""
    from pathlib import Path

    root = Path(directory)
    files = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    return {p.name: file_digest(p) for p in files}
