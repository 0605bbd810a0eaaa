"""Cutting one image into its test-time views.

``ten_crop`` is the one place views are made: the image is resized the way its backbone
resizes it (``CropGeometry.resize``: short side to the backbone's resize size), torchvision's
``TenCrop`` cuts the four corners and the centre at the backbone's input size and the
same five from the horizontally mirrored image, and each crop goes through the rest of
the backbone's preprocessing (``CropGeometry.finish``). Frozen-feature runs reach it
through ``mmtk.tta.backbone``. A run holding its own trainable image tower (fine-tuning)
plugs in with ``geometry = mmtk.backbones.images.crop_geometry(its transform)``, its tower
over ``collate(ten_crop(image, geometry))``, its heads over the ten feature rows, and
``mmtk.tta.combine.average_log_probs`` over the ten logits.
"""

from __future__ import annotations

from typing import Any

#: TenCrop's order. ``mirror-*`` are crops of the mirrored image: ``mirror-top-left`` is
#: the original's top-right corner, flipped.
TEN_CROP_VIEWS = (
    "top-left", "top-right", "bottom-left", "bottom-right", "center",
    "mirror-top-left", "mirror-top-right", "mirror-bottom-left", "mirror-bottom-right", "mirror-center",
)


def ten_crop(image, geometry) -> list[Any]:
    """The ten views of a PIL ``image`` as model inputs, in ``TEN_CROP_VIEWS`` order.

    ``geometry`` is a ``mmtk.backbones.images.CropGeometry`` (or anything with ``size``,
    ``resize`` and ``finish``) whose ``resize`` leaves both sides at least ``size``, as
    the backbones' own do (``ResizeCrop`` keeps both sides >= its crop; open_clip resizes
    the short side to its crop size): TenCrop refuses a smaller image."""
    from torchvision.transforms import v2

    crops = v2.TenCrop(geometry.size)(geometry.resize(image))
    return [geometry.finish(crop) for crop in crops]
