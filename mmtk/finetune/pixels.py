"""Image files to the float pixel tensors an image tower reads, in DataLoader workers.

Evaluation uses the backbone's own deterministic preprocessing (efficientnet-lite0's
resize + centre crop, open_clip's eval transform), so a fine-tuned run sees at predict
time what it was validated on. Training augments instead: a small rotation, a random
resized crop and a horizontal flip (torchvision.transforms.v2), then the same
normalisation. Loaders are plain data, so they pickle to worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Training augmentation: rotation range in degrees, the random crop's area range.
ROTATION_DEGREES = 10.0
CROP_SCALE = (0.5, 1.0)


@dataclass
class ImageLoader:
    """``loader(path) -> (3, size, size) float32`` tensor, normalised by ``mean``/``std``.
    ``recipe``: the tower's preprocessing record (``size``, ``mean``, ``std``,
    ``draft_size`` and ``eval``: ``{"kind": "resize-crop", "resize", "interpolation"}``
    or ``{"kind": "open_clip", "resize_mode", "interpolation"}``)."""

    recipe: dict
    train: bool = False
    _transform: Any = field(default=None, init=False, repr=False)

    @classmethod
    def from_record(cls, recipe: dict, *, train: bool) -> ImageLoader:
        return cls(dict(recipe), train)

    @property
    def size(self) -> int:
        return int(self.recipe["size"])

    def __call__(self, path: str):
        from mmtk.backbones.images import open_rgb

        return self.pixels(open_rgb(path, draft_size=self.recipe.get("draft_size")))

    def pixels(self, image):
        """Preprocess a decoded RGB PIL image."""
        if self._transform is None:
            self._transform = self._build()
        return self._transform(image)

    def blank(self):
        """The input of an item without an image (``present`` False): zeros."""
        import torch

        return torch.zeros(3, self.size, self.size)

    def _build(self):
        mean, std = tuple(self.recipe["mean"]), tuple(self.recipe["std"])
        if self.train:
            from torchvision.transforms import InterpolationMode, v2

            import torch

            return v2.Compose([
                v2.RandomRotation(ROTATION_DEGREES, interpolation=InterpolationMode.BILINEAR),
                v2.RandomResizedCrop(self.size, scale=CROP_SCALE, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean, std),
            ])
        recipe = self.recipe["eval"]
        if recipe["kind"] == "open_clip":
            import open_clip

            return open_clip.image_transform(
                self.size, is_train=False, mean=mean, std=std,
                resize_mode=recipe.get("resize_mode", "shortest"), interpolation=recipe.get("interpolation", "bicubic"),
            )
        from mmtk.backbones.images import ResizeCrop

        crop = ResizeCrop(size=self.size, resize=int(recipe["resize"]), mean=mean, std=std, interpolation=recipe["interpolation"])
        return _Normalized(crop, np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32))


@dataclass(frozen=True)
class _Normalized:
    """A transform giving HWC uint8 arrays (``ResizeCrop``), then scaled to [0, 1] and
    normalised as a CHW float tensor."""

    crop: Any
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, image):
        import torch

        pixels = (np.asarray(self.crop(image), dtype=np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
