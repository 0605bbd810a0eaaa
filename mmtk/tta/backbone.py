"""Each test-time view of an image feature as its own feature set in the store.

``resolve_backbone(..., options=FeatureOptions(view="ten-crop:top-left"))`` wraps the
image backbone's config with ``view_config``: its fingerprint covers the image
backbone's fingerprint, the method and the view, so views never mix with each other or
with the plain features, and the store contract (one fingerprint, one meaning) holds.
The config's companions are the method's other views, so extracting any one view
decodes each image once and commits all of them (companions first, as for frame
times): a rerun finds them cached.

Why stored rather than computed on the fly: the views cost ten forward passes of the
backbone per image, which dominates everything else evaluation does, and a second
``--tta`` evaluation or a ``predict`` after an ``evaluate`` of the same data then only
reads them (measured on the bundled example in BENCHMARKS.md, "Test-time augmentation").
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple, Sequence

import numpy as np

from mmtk.backbones.base import BackboneConfig, Encoded, close_resource, make_fingerprint, package_version
from mmtk.errors import UsageError

NAME = "tta-view"
#: How views are cut, for the fingerprint: change it whenever ``mmtk.tta.views`` changes.
LAYOUT = "torchvision v2.TenCrop of the backbone's short-side resize; mirror = hflip before cropping"


def view_fingerprint(image: BackboneConfig, method: str, view: str) -> str:
    """The store fingerprint of ``view`` of ``method`` over the image backbone ``image``."""
    identity = {"image": image.fingerprint, "tta": method, "view": view, "layout": LAYOUT, "torchvision": package_version("torchvision")}
    return make_fingerprint(NAME, identity)


def view_config(image: BackboneConfig, view: str) -> BackboneConfig:
    """The config of one view (``TTA:VIEW``) of ``image``, a resolved image backbone
    (pooled or a sequence form) whose encoder can be cropped (``crop_views``)."""
    from mmtk.tta import parse_view, view_name

    method, name = parse_view(view)
    if image.modality != "image" or not image.crop_views:
        raise UsageError(
            f"--tta {method.name}: backbone {image.spec!r} ({image.modality}) has no crop to cut test-time views from",
            "run --tta with features of efficientnet-lite0, clip or clip-patches over an image column, or drop --tta",
        )
    fingerprints = {v: view_fingerprint(image, method.name, v) for v in method.views}

    def variant(v: str) -> str:
        return ", ".join(part for part in (image.variant, f"{method.name} {v}") if part)

    companions = {
        fingerprints[v]: {"backbone": image.spec, "modality": "image", "kind": image.kind, "dim": image.dim, "variant": variant(v)}
        for v in method.views if v != name
    }
    return replace(
        image,
        fingerprint=fingerprints[name],
        builder=build_views,
        settings={"image": image, "view": view_name(method, name), "views": [fingerprints[v] for v in method.views]},
        # One image is ten crops: batches of images ten times smaller keep the crops per forward.
        cpu_batch_size=max(1, image.cpu_batch_size // len(method.views)),
        cuda_batch_size=max(1, image.cuda_batch_size // len(method.views)),
        sequence_form=None,
        companions=companions,
        variant=variant(name),
        crop_views=False,
    )


class ViewBatch(NamedTuple):
    """Several images' views as one batch of the image encoder, images in order."""

    images: int
    batch: Any


class ViewsEncoder:
    """Runs an image encoder over every view of each image: ``load`` decodes an image
    once and cuts its views (``mmtk.tta.views``), ``encode`` returns the features of
    this config's view, with the other views' as companions (``Encoded``)."""

    def __init__(self, image_encoder, method, fingerprints: Sequence[str], main: str):
        self.image = image_encoder
        self.method = method
        self.geometry = image_encoder.crop_geometry() if callable(getattr(image_encoder, "crop_geometry", None)) else None
        if self.geometry is None:
            raise UsageError(
                f"{type(image_encoder).__name__} cannot cut test-time views (it has no crop_geometry)",
                "drop --tta for this run",
            )
        self.fingerprints = list(fingerprints)
        self.main = main
        self.dim = image_encoder.dim
        # Extraction holds this many decoded items ahead: each item here is ten crops.
        self.decode_ahead_items = getattr(image_encoder, "decode_ahead_items", 0) // len(self.fingerprints)

    def close(self) -> None:
        close_resource(self.image)

    def load(self, value: str) -> list[Any]:
        from mmtk.backbones.images import open_rgb

        return self.method.cut(open_rgb(value, draft_size=self.geometry.draft_size), self.geometry)

    def collate(self, items: Sequence[list[Any]]) -> ViewBatch:
        return ViewBatch(len(items), self.image.collate([view for views in items for view in views]))

    def encode(self, batch: ViewBatch) -> Encoded:
        encoded = self.image.encode(batch.batch)
        rows = list(encoded) if isinstance(encoded, list) else encoded
        count = len(self.fingerprints)
        per_view = {fp: [np.asarray(rows[i * count + k], dtype=np.float32) for i in range(batch.images)] for k, fp in enumerate(self.fingerprints)}
        return Encoded(features=per_view.pop(self.main), companions=per_view)


def build_views(config: BackboneConfig, device: str) -> ViewsEncoder:
    from mmtk.tta import parse_view

    method, _ = parse_view(config.settings["view"])
    return ViewsEncoder(config.settings["image"].build(device), method, config.settings["views"], config.fingerprint)
