"""Cutting one image into its test-time views.

``ten_crop`` is the one place views are made: the image is resized the way its backbone
resizes it (``CropGeometry.resize``: short side to the backbone's resize size), torchvision's
``TenCrop`` cuts the four corners and the centre at the backbone's input size and the
same five from the horizontally mirrored image, and each crop goes through the rest of
the backbone's preprocessing (``CropGeometry.finish``). Frozen-feature runs reach it
through ``mmtk.tta.backbone``; a run holding its own fine-tuned image tower
(``mmtk.finetune``) through ``ViewLoader``, which stands in for the tower's evaluation
loader and gives one view of each image, cut from that loader's own geometry
(``mmtk.backbones.images.crop_geometry``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

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


@dataclass
class ViewLoader:
    """A fine-tuned image input's loader for one test-time view: ``loader`` is the run's
    evaluation loader (``mmtk.finetune.pixels.ImageLoader``: ``crop_geometry()`` and
    ``blank()``), ``cut`` the method's view maker, ``index`` the view. Each call decodes
    the image and finishes only its view. Plain data, so it goes to DataLoader workers
    as the loader does."""

    loader: Any
    cut: Callable
    index: int
    _geometry: Any = field(default=None, init=False, repr=False)

    def __call__(self, path: str):
        from dataclasses import replace

        from mmtk.backbones.images import open_rgb

        if self._geometry is None:
            self._geometry = self.loader.crop_geometry()
        geometry = self._geometry
        crops = self.cut(open_rgb(path, draft_size=geometry.draft_size), replace(geometry, finish=_unchanged))
        return geometry.finish(crops[self.index])

    def blank(self):
        return self.loader.blank()


def _unchanged(crop):
    return crop
