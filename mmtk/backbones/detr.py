"""``detr[:NAME_OR_PATH]``: an image as the embeddings of the objects DETR finds in it.

DETR (transformers' ``DetrForObjectDetection``) decodes a fixed set of object queries
(100 for the released models); each query's decoder output (``d_model`` wide, 256)
either describes one object or predicts the extra "no object" class. The store keeps,
per image, a (T, d_model) sequence: the decoder's last hidden state of the queries
whose most probable class (softmax over the logits; the last index is "no object") is
a real class, in query order. Those rows are the detected objects, so a mean over them
(``train --features detr``) describes what is in the picture, not the empty slots that
outnumber them (a photo rarely has more than a handful of the 100). When every query
says "no object" (an abstract picture, a screenshot of text), the 4 queries with the
highest probability of some real class are kept instead, also in query order: each
query is a learned slot with its own position and size prior, so rows in slot order
mean the same whatever rule kept them, and no image has an empty sequence.

Sources: ``detr`` is ``facebook/detr-resnet-50``, loaded from the hub repo's
``no_timm`` branch, which holds the same weights with transformers' own ResNet backbone
(its ``main`` branch builds the backbone with timm, not a dependency of mmtk);
``facebook/detr-resnet-101`` likewise. ``detr:NAME`` names another hub checkpoint (its
``main`` branch), ``detr:/path/to/dir`` a directory saved with ``save_pretrained``
(model and image processor), identified by the digests of its files. Hub loading is
cache first, with one clear error when the hub is unreachable.

Preprocessing is the checkpoint's own ``AutoImageProcessor`` (shortest side 800,
longest at most 1333 for the released models), after a JPEG draft decode to at least
the shortest side. Images are not padded into batches: each forward runs the images of
one input size, because zero padding changes what the convolutions see near the
border, and features must not depend on which images shared a batch. DETR at 800 px
is slow on CPU (seconds per image), hence the small batches there.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any, Sequence

import numpy as np

from mmtk.backbones.base import BackboneConfig, autocast_for, make_fingerprint, require_modality
from mmtk.backbones.hub import (
    TRANSFORMERS_FILES, cached_revision, json_field, load_cached_first, model_source, transformers_identity,
)
from mmtk.backbones.images import open_rgb
from mmtk.backbones.registry import BACKBONES
from mmtk.errors import UsageError

NAME = "detr"
DEFAULT = "facebook/detr-resnet-50"
#: Hub checkpoints with a branch that needs no timm: the same weights, loaded from there.
NO_TIMM_BRANCHES = {"facebook/detr-resnet-50": "no_timm", "facebook/detr-resnet-101": "no_timm"}
#: Queries kept when all of them predict "no object".
FALLBACK_QUERIES = 4
OUTPUT = (
    "decoder last_hidden_state of queries whose argmax class is not no-object, query order; "
    "none: top-4 by best class probability, query order"
)


@BACKBONES.register(
    NAME,
    help="detr[:NAME_OR_PATH]: DETR decoder states of the detected objects "
    "(image, sequence; 256-d for the default facebook/detr-resnet-50, loaded without timm)",
)
def resolve_detr(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``detr[:NAME_OR_PATH]`` (a hub checkpoint or a local directory)."""
    require_modality(NAME, modality, "image", "use it on an image column (pass --column with one)")
    source, weights, local = model_source(arg or DEFAULT, NAME, TRANSFORMERS_FILES)
    revision = None if local else NO_TIMM_BRANCHES.get(source)
    if revision:
        weights = {"hub": source, "branch": revision, "revision": cached_revision(source, revision)}
    identity = {
        **transformers_identity(weights),
        "preprocess": {"processor": "AutoImageProcessor", "jpeg_draft": "shortest-edge", "padding": "none"},
        "output": OUTPUT,
    }
    return BackboneConfig(
        spec=f"{NAME}:{source}",
        name=NAME,
        modality="image",
        fingerprint=make_fingerprint(NAME, identity),
        builder=build_detr,
        settings={"source": source, "revision": revision},
        dim=json_field(local / "config.json", "d_model") if local else None,
        cpu_batch_size=2,
        cuda_batch_size=16,
        kind="sequence",
    )


def build_detr(config: BackboneConfig, device: str) -> DetrEncoder:
    """Load the checkpoint's config (checked first: a DETR, loadable without timm when
    timm is missing), then model and image processor: local files first, the hub only
    when they are not cached."""
    source, revision = config.settings["source"], config.settings["revision"]
    where = {"revision": revision} if revision else {}

    def load_config(local_only: bool):
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(source, local_files_only=local_only, **where)

    local_form = f"{NAME}:/path/to/model (a folder saved with save_pretrained)"
    model_config = load_cached_first(config.spec, load_config, local_form=local_form)
    _check_loadable(model_config, config.spec)

    def load(local_only: bool):
        from transformers import AutoImageProcessor, DetrForObjectDetection
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        model = DetrForObjectDetection.from_pretrained(
            source, config=model_config, local_files_only=local_only, **where
        )
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only, **where)
        return model.eval().to(device), processor

    model, processor = load_cached_first(config.spec, load, local_form=local_form)
    return DetrEncoder(model, processor, device)


def _check_loadable(model_config, spec: str) -> None:
    model_type = getattr(model_config, "model_type", None)
    if model_type != "detr":
        raise UsageError(
            f"{spec} is a {model_type} model, not DETR",
            "detr: takes DetrForObjectDetection checkpoints, e.g. detr:facebook/detr-resnet-50",
        )
    backbone = getattr(model_config, "backbone_config", None)
    # transformers 4 flags a timm backbone on the config, 5 with a timm backbone config.
    needs_timm = bool(getattr(model_config, "use_timm_backbone", False)) or (
        getattr(backbone, "model_type", None) == "timm_backbone"
    )
    if needs_timm and find_spec("timm") is None:
        raise UsageError(
            f"{spec} builds its ResNet backbone with timm, which is not installed",
            "pip install timm, or use a checkpoint saved without it (the default detr is)",
        )


def kept_queries(hidden, logits):
    """The rows of ``hidden`` (queries, d) that DETR assigns a real class, in query order;
    when none, the ``FALLBACK_QUERIES`` with the highest real-class probability, in query
    order. ``logits`` (queries, classes + 1) ends with the "no object" class."""
    # Log-probabilities rank as probabilities do, without underflowing to ties at 0
    # when "no object" dominates.
    log_probs = logits.float().log_softmax(-1)
    no_object = log_probs.shape[-1] - 1
    keep = log_probs.argmax(-1) != no_object
    if bool(keep.any()):
        return hidden[keep]
    best = log_probs[:, :no_object].max(-1).values
    top = best.topk(min(FALLBACK_QUERIES, best.shape[0])).indices
    return hidden[top.sort().values]


class DetrEncoder:
    """Image -> the decoder states of its detected objects, one (T_i, d_model) array."""

    def __init__(self, model, processor, device: str):
        self.model = model
        self.processor = processor
        self.device = device
        self.dim = int(model.config.d_model)
        self.draft_size = _draft_size(processor)

    def load(self, value: str):
        """Decode and preprocess one image: a (3, H, W) tensor at the processor's size."""
        image = open_rgb(value, draft_size=self.draft_size)
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def collate(self, items: Sequence[Any]) -> list:
        # Sizes differ with aspect ratios; encode groups equal sizes instead of padding.
        return list(items)

    def encode(self, batch: list) -> list[np.ndarray]:
        import torch

        by_size: dict[tuple, list[int]] = {}
        for index, pixels in enumerate(batch):
            by_size.setdefault(tuple(pixels.shape), []).append(index)
        out: list[np.ndarray | None] = [None] * len(batch)
        with torch.inference_mode(), autocast_for(self.device):
            for indices in by_size.values():
                pixels = torch.stack([batch[i] for i in indices]).to(self.device, non_blocking=True)
                outputs = self.model(pixel_values=pixels)
                for i, hidden, logits in zip(indices, outputs.last_hidden_state, outputs.logits):
                    out[i] = kept_queries(hidden, logits).float().cpu().numpy()
        return out


def _draft_size(processor) -> int | None:
    """The smallest side the processor resizes to, for JPEG draft decoding: the
    shortest edge, or the larger of a fixed height and width."""
    size = getattr(processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
    if get("shortest_edge"):
        return int(get("shortest_edge"))
    sides = [int(get(key)) for key in ("height", "width") if get(key)]
    return max(sides) if sides else None
