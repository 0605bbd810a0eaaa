"""``clip-patches[:SOURCE]``: an image as five open_clip embeddings, the whole picture
and its 2x2 quadrants, for models that look at parts of a meme or poster separately.

SOURCE is anything ``clip:`` takes (``MODEL@PRETRAINED``, ``hf-hub:ORG/NAME``,
``local-dir:PATH``; default the same as ``clip``). Each image is stored as a (5, d)
sequence of L2-normalised image embeddings, rows in the order whole, top-left,
top-right, bottom-left, bottom-right. The quadrants split the picture at
(width // 2, height // 2), so with odd sizes the right and bottom ones get the extra
pixel. Every crop goes through open_clip's own eval transform, so row 0 is exactly the
``clip`` feature of the image and each quadrant row is the ``clip`` feature of that
crop. ``train --features clip-patches`` pools the five rows by their mean.

JPEGs are draft-decoded as ``clip`` does for the whole picture; when that shrank the
picture below twice the input size, it is decoded again at twice the input size for
the quadrants, so each of them still covers at least the model's input.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from mmtk.backbones import clip
from mmtk.backbones.base import BackboneConfig, BadInput, make_fingerprint, require_modality
from mmtk.backbones.images import ImageEncoder, open_rgb
from mmtk.backbones.registry import BACKBONES

NAME = "clip-patches"
CROPS = ("whole", "top-left", "top-right", "bottom-left", "bottom-right")
#: How the crops are cut, for the fingerprint: change it whenever the code above changes.
LAYOUT = {
    "crops": list(CROPS),
    "split": "width // 2, height // 2",
    "jpeg_draft": "whole: input size; quadrants: 2x input size",
}


@BACKBONES.register(
    NAME,
    help="open_clip embeddings of the whole image and its 2x2 quadrants: clip-patches[:SOURCE as for clip] "
    "(image, sequence of 5)",
)
def resolve_clip_patches(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``clip-patches[:SOURCE]``; image columns only."""
    require_modality(NAME, modality, "image", "use clip for a text column, or pass --column with an image column")
    source = clip.resolve_source(arg, NAME)
    identity = {**clip.identity(source, "image"), "patches": LAYOUT}
    return BackboneConfig(
        spec=f"{NAME}:{source.canonical}",
        name=NAME,
        modality="image",
        fingerprint=make_fingerprint(NAME, identity),
        builder=build_clip_patches,
        settings=source.settings,
        dim=source.dim,
        # Five crops per image: 20 and 320 crops per forward, near clip's 16 and 256 images.
        cpu_batch_size=4,
        cuda_batch_size=64,
        kind="sequence",
        crop_views=True,
    )


def build_clip_patches(config: BackboneConfig, device: str) -> PatchEncoder:
    """Load the open_clip model as ``clip`` does and wrap its image tower."""
    model, preprocess, _ = clip.load_model(config.settings, device)
    tower = clip.image_encoder(model, preprocess, config.dim or clip.embed_dim(model), device)
    return PatchEncoder(tower, clip.input_size(model))


def quadrants(image) -> list:
    """The top-left, top-right, bottom-left and bottom-right quarters of a PIL image."""
    width, height = image.size
    mid_x, mid_y = width // 2, height // 2
    boxes = [(0, 0, mid_x, mid_y), (mid_x, 0, width, mid_y), (0, mid_y, mid_x, height), (mid_x, mid_y, width, height)]
    return [image.crop(box) for box in boxes]


class PatchEncoder:
    """Runs the five crops of each image through one open_clip image tower
    (``clip.image_encoder``) and returns one (5, dim) array per image."""

    def __init__(self, tower: ImageEncoder, input_size: int):
        self.tower = tower
        self.input_size = input_size
        self.dim = tower.dim

    def load(self, value: str):
        """Decode the image and preprocess its five crops: a (5, 3, H, W) tensor."""
        import torch

        whole = open_rgb(value, draft_size=self.input_size)
        detail = whole
        if min(whole.size) < 2 * self.input_size and whole.size != _stored_size(value):
            detail = open_rgb(value, draft_size=2 * self.input_size)
        if min(detail.size) < 2:
            raise BadInput(f"image {value} is {detail.size[0]}x{detail.size[1]} px, too small to split into quadrants")
        return torch.stack([self.tower.load_image(crop) for crop in (whole, *quadrants(detail))])

    def crop_geometry(self):
        """The tower's resize and crop (``ImageEncoder.crop_geometry``); each test-time
        view (``mmtk.tta``) becomes five crops as ``load`` makes them: the view whole
        and its quadrants, each through open_clip's transform."""
        import torch

        geometry = self.tower.crop_geometry()

        def finish(view):
            return torch.stack([geometry.finish(view), *(self.tower.load_image(crop) for crop in quadrants(view))])

        return replace(geometry, finish=finish)

    def collate(self, items: Sequence[Any]):
        import torch

        return torch.cat(list(items))

    def encode(self, batch) -> list[np.ndarray]:
        rows = self.tower.encode(batch)
        return list(rows.reshape(-1, len(CROPS), self.dim))


def _stored_size(path: str) -> tuple[int, int]:
    """Width and height in the file's header (no decode): a decoded picture of another
    size was shrunk by the JPEG draft."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size
