"""``clip``: open_clip models, image tower for image columns, text tower for text.

Specs, as open_clip names its sources:
  ``clip``                          ViT-B-32 with laion2b_s34b_b79k weights
  ``clip:MODEL@PRETRAINED``         a built-in architecture and a pretrained tag
                                    (or a local weights file in place of the tag)
  ``clip:hf-hub:ORG/NAME``          config and weights from a hub repo
  ``clip:local-dir:PATH``           a directory with open_clip_config.json + weights
Features are the L2-normalised joint-space embeddings (``encode_image/encode_text``
with ``normalize=True``), so image and text vectors of one model are comparable.
Preprocessing is open_clip's own eval transform (PIL resize, antialiased; bicubic for
the released models), after a JPEG draft decode to at least the model's input size.

Backbones built on an open_clip model (``clip-patches``) reuse the source resolution
(``resolve_source``), the fingerprint payload (``identity``) and the model loading
(``load_model``, ``image_encoder``) from here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmtk.backbones.base import (
    BackboneConfig, autocast_for, directory_identity, file_digest, make_fingerprint, package_version,
)
from mmtk.backbones.hub import cached_revision, hub_file, limit_hub_waits, load_cached_first
from mmtk.backbones.images import PIL_RESIZE, ImageEncoder
from mmtk.backbones.registry import BACKBONES
from mmtk.backbones.text import checked_text
from mmtk.errors import UsageError

NAME = "clip"
DEFAULT = "ViT-B-32@laion2b_s34b_b79k"
HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pth", "*.pt")


def spec_hint(name: str = NAME) -> str:
    """How to write a spec of ``name`` (clip, or a backbone that takes clip's sources)."""
    return f"write {name}, {name}:MODEL@PRETRAINED, {name}:hf-hub:ORG/NAME or {name}:local-dir:PATH"


@dataclass(frozen=True)
class ClipSource:
    """Where an open_clip model comes from, resolved without loading it: the canonical
    source text, the builder's settings, the weights identity for fingerprints, and the
    embedding width when it is known without the weights."""

    canonical: str
    settings: dict
    weights: dict
    dim: int | None


def resolve_source(arg: str | None, name: str = NAME) -> ClipSource:
    """Resolve the part of a spec after ``NAME:`` (None: ``DEFAULT``) as open_clip names
    sources; ``name`` is the backbone the spec belongs to, for error messages."""
    arg = arg or DEFAULT
    if arg.startswith(LOCAL_DIR):
        source = _resolve_local_dir(arg[len(LOCAL_DIR):], name)
    elif arg.startswith(HF_HUB):
        repo = arg[len(HF_HUB):].strip("/")
        if repo.count("/") != 1:
            raise UsageError(f"bad hub repo in {name} spec {arg!r}", spec_hint(name))
        weights = {"hub": repo, "revision": cached_revision(repo)}
        source = ClipSource(HF_HUB + repo, {"source": "hf-hub", "repo": repo}, weights, None)
    else:
        source = _resolve_builtin(arg, name)
    # The backbone's name, for the hint of a hub that cannot be reached (``local_form``).
    return replace(source, settings={**source.settings, "backbone": name})


def local_form(settings: dict) -> str:
    """The spec that loads an open_clip model from a folder, for this backbone."""
    return f"{settings.get('backbone', NAME)}:{LOCAL_DIR}/path/to/model (open_clip_config.json and weights)"


def identity(source: ClipSource, tower: str) -> dict:
    """What makes features of ``tower`` ("image" or "text") of this model what they are:
    the fingerprint payload of ``clip``, which backbones built on it extend."""
    return {
        "weights": source.weights,
        "open_clip": package_version("open_clip_torch"),
        "tower": tower,
        "preprocess": {"resize_method": PIL_RESIZE, "jpeg_draft": "input-size", "from": "open_clip eval transform"},
        "pooling": "embedding-l2",
    }


@BACKBONES.register(NAME, help="open_clip: clip[:MODEL@PRETRAINED | :hf-hub:ORG/NAME | :local-dir:PATH] (image or text)")
def resolve_clip(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve a clip spec; ``modality`` "text" selects the text tower (default: image)."""
    modality = modality or "image"
    source = resolve_source(arg)
    return BackboneConfig(
        spec=f"{NAME}:{source.canonical}",
        name=NAME,
        modality=modality,
        fingerprint=make_fingerprint(NAME, identity(source, modality)),
        builder=build_clip,
        settings=source.settings,
        dim=source.dim,
        # ViTs, unlike small CNNs, gain from batching on CPU (bigger matrix products).
        cpu_batch_size=16 if modality == "image" else 64,
        cuda_batch_size=256,
        trainable=trainable_clip if modality == "image" else None,
    )


def _resolve_builtin(arg: str, name: str) -> ClipSource:
    model, sep, pretrained = arg.partition("@")
    if not sep or not model or not pretrained:
        raise UsageError(f"{name} spec {arg!r} names no pretrained weights", f"{spec_hint(name)} (e.g. {name}:{DEFAULT})")
    settings = {"source": "builtin", "model": model, "pretrained": pretrained}
    if os.path.isfile(pretrained):
        path = str(Path(pretrained).resolve())
        settings["pretrained"] = path
        weights = {"model": model, "file": file_digest(path)}
    else:
        weights = {"model": model, "pretrained": pretrained}
    return ClipSource(f"{model}@{settings['pretrained']}", settings, weights, _builtin_embed_dim(model))


def _resolve_local_dir(path_text: str, name: str) -> ClipSource:
    directory = Path(path_text).expanduser()
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise UsageError(f"no {CONFIG_FILE} in {name} local-dir {directory}", "point local-dir: at a folder saved in open_clip's layout")
    if not any(directory.glob(pattern) for pattern in WEIGHT_FILES):
        raise UsageError(f"no weights file in {name} local-dir {directory}", "put the .safetensors/.bin checkpoint next to " + CONFIG_FILE)
    resolved = str(directory.resolve())
    settings = {"source": "local-dir", "directory": resolved}
    weights = {"local": directory_identity(directory, (CONFIG_FILE, *WEIGHT_FILES))}
    try:
        dim = int(json.loads(config_path.read_text())["model_cfg"]["embed_dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{config_path} is not an open_clip config ({exc})", "it needs model_cfg.embed_dim") from None
    return ClipSource(LOCAL_DIR + resolved, settings, weights, dim)


def _builtin_embed_dim(model: str) -> int | None:
    """embed_dim from open_clip's bundled config file, read without importing torch."""
    spec = find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    config = Path(list(spec.submodule_search_locations)[0]) / "model_configs" / f"{model}.json"
    try:
        return int(json.loads(config.read_text())["embed_dim"])
    except (OSError, ValueError, KeyError):
        return None


def build_clip(config: BackboneConfig, device: str):
    """Create the open_clip model (cached weights first, hub only when missing) and wrap
    the tower that ``config.modality`` asks for."""
    model, preprocess, model_name = load_model(config.settings, device)
    # Both towers project into one joint space, so one embedding width serves both.
    dim = config.dim or embed_dim(model)
    if config.modality == "text":
        import open_clip

        tokenizer = load_cached_first(
            f"the tokenizer of {config.spec}", lambda local_only: open_clip.get_tokenizer(model_name),
            local_form=local_form(config.settings),
        )
        return ClipTextEncoder(model, tokenizer, device, dim)
    return image_encoder(model, preprocess, dim, device)


def trainable_clip(config: BackboneConfig, device: str):
    """The image tower as a trainable ``ClipImageTower`` (``--finetune image``), with
    what rebuilds it offline: the architecture config and the eval preprocessing."""
    import open_clip

    from mmtk.finetune.towers import ClipImageTower

    model, _, model_name = load_model(config.settings, device)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    size = preprocess.get("size", 224)
    size = max(size) if isinstance(size, (tuple, list)) else int(size)
    recipe = {
        "size": size, "mean": list(preprocess["mean"]), "std": list(preprocess["std"]), "draft_size": size,
        "eval": {"kind": "open_clip", "resize_mode": preprocess.get("resize_mode", "shortest"),
                 "interpolation": preprocess.get("interpolation", "bicubic")},
    }
    visual = model.visual
    dim = config.dim or embed_dim(model)
    del model  # the text tower is not trained; only the image tower is kept
    return ClipImageTower(visual.train(), config.spec, dim, recipe, _architecture(config.settings, model_name)).to(device)


def _architecture(settings: dict, model_name: str) -> dict:
    """open_clip's ``model_cfg`` of the model (embed_dim, vision_cfg, quick_gelu...)."""
    import open_clip

    if model_name.startswith(LOCAL_DIR):
        config = json.loads((Path(model_name[len(LOCAL_DIR):]) / CONFIG_FILE).read_text())["model_cfg"]
    else:
        config = open_clip.get_model_config(model_name)
    config = dict(config)
    if settings.get("source") == "builtin":
        _, create = _model_source(settings)
        config["quick_gelu"] = bool(config.get("quick_gelu") or create.get("force_quick_gelu"))
    return config


def load_model(settings: dict, device: str) -> tuple[Any, Any, str]:
    """The open_clip model in eval mode on ``device``, its eval transform and the model
    name open_clip knows it by, from ``ClipSource.settings``."""
    limit_hub_waits()
    import open_clip

    model_name, create_kwargs = _model_source(settings)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, device=device, **create_kwargs)
    return model.eval(), preprocess, model_name


def input_size(model) -> int:
    """The longer side of the image tower's input, in pixels."""
    import open_clip

    size = open_clip.get_model_preprocess_cfg(model).get("size", 224)
    return max(size) if isinstance(size, (tuple, list)) else int(size)


def image_encoder(model, preprocess, dim: int, device: str) -> ImageEncoder:
    """The image tower as an ``ImageEncoder``: open_clip's eval transform per image,
    L2-normalised embeddings; JPEGs draft-decoded to at least the input size."""

    def embed(images):
        return model.encode_image(images, normalize=True)

    return ImageEncoder(embed, preprocess, dim, device, draft_size=input_size(model))


def embed_dim(model) -> int:
    """The joint-space width, from a probe image (for sources that do not state it)."""
    import torch

    with torch.inference_mode():
        size = getattr(model.visual, "image_size", 224)
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        probe = torch.zeros(1, 3, *size, device=next(model.parameters()).device)
        return int(model.encode_image(probe).shape[-1])


def _model_source(settings: dict) -> tuple[str, dict[str, Any]]:
    """The open_clip model name and create() arguments, with weights already local."""
    import open_clip

    if settings["source"] == "local-dir":
        return LOCAL_DIR + settings["directory"], {}
    if settings["source"] == "hf-hub":
        return LOCAL_DIR + _hub_snapshot(settings["repo"], local_form(settings)), {}
    model, pretrained = settings["model"], settings["pretrained"]
    if model not in open_clip.list_models():
        raise UsageError(f"unknown open_clip model {model!r}", "see open_clip.list_models(), or use clip:local-dir:PATH")
    if os.path.isfile(pretrained):
        return model, {"pretrained": pretrained}
    tag = open_clip.get_pretrained_cfg(model, pretrained)
    if not tag:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise UsageError(f"unknown pretrained tag {pretrained!r} for clip model {model}", f"choose one of: {tags}")
    checkpoint = _tag_checkpoint(model, pretrained, tag, local_form(settings))
    preprocess = {
        f"image_{key}": tag[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in tag
    }
    return model, {"pretrained": checkpoint, "force_quick_gelu": bool(tag.get("quick_gelu", False)), **preprocess}


def _tag_checkpoint(model: str, pretrained: str, tag: dict, local: str) -> str:
    """Local path of a pretrained tag's checkpoint (safetensors preferred, as open_clip)."""
    import open_clip

    hub = tag.get("hf_hub", "")
    if not hub:
        return load_cached_first(
            f"clip:{model}@{pretrained}", lambda local_only: open_clip.download_pretrained(tag, prefer_hf_hub=False),
            local_form=local,
        )
    # open_clip writes 'org/name/' for the repo's default file, 'org/name/file' otherwise.
    repo, filename = os.path.split(hub)
    filename = filename or "open_clip_pytorch_model.bin"
    if filename == "open_clip_pytorch_model.bin":
        safe = "open_clip_model.safetensors"
    else:
        safe = str(Path(filename).with_suffix(".safetensors"))
    return _first_hub_file(repo, [safe, filename], local)


def _hub_snapshot(repo: str, local: str) -> str:
    """Folder holding the repo's open_clip config and weights in the local hub cache."""
    config = hub_file(repo, CONFIG_FILE, local_form=local)
    _first_hub_file(repo, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"], local)
    return str(Path(config).parent)


def _first_hub_file(repo: str, filenames: Sequence[str], local: str) -> str:
    error: UsageError | None = None
    for filename in filenames:
        try:
            return hub_file(repo, filename, local_form=local)
        except UsageError as exc:
            error = exc
    assert error is not None
    raise error


class ClipTextEncoder:
    """The text tower: open_clip tokenizer + ``encode_text(normalize=True)``."""

    def __init__(self, model, tokenizer, device: str, dim: int):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dim = dim

    def load(self, value: Any) -> str:
        return checked_text(value)

    def collate(self, items: Sequence[str]):
        return self.tokenizer(list(items))

    def encode(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode(), autocast_for(self.device):
            features = self.model.encode_text(batch.to(self.device, non_blocking=True), normalize=True)
        return features.float().cpu().numpy()
