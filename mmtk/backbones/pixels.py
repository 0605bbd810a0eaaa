"""``pixels[:SIZE][:rgb]``: the image itself as a feature, resized to SIZE x SIZE
(default 16) with PIL's antialiased bilinear resize, grayscale unless ``:rgb``, flattened
row by row (channels last) and scaled to [0, 1]. A cheap baseline that needs no
weights; on tiny images such as scikit-learn's 8x8 digits it beats ImageNet backbones.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmtk.backbones.base import BackboneConfig, make_fingerprint, require_modality
from mmtk.backbones.images import PIL_RESIZE, open_rgb
from mmtk.backbones.registry import BACKBONES
from mmtk.errors import UsageError

NAME = "pixels"
DEFAULT_SIZE = 16
MAX_SIZE = 256


@BACKBONES.register(NAME, help="pixels[:SIZE][:rgb]: the image resized to SIZExSIZE (default 16), gray, flattened, [0,1]")
def resolve_pixels(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``pixels``, ``pixels:8``, ``pixels:32:rgb`` (image columns only)."""
    require_modality(NAME, modality, "image", "use it on an image column")
    size, rgb = _parse(arg)
    channels = 3 if rgb else 1
    identity = {"size": size, "channels": channels, "resize": PIL_RESIZE + "-bilinear", "scale": "x/255"}
    return BackboneConfig(
        spec=NAME + (f":{arg}" if arg else ""),
        name=NAME,
        modality="image",
        fingerprint=make_fingerprint(NAME, identity),
        builder=build_pixels,
        settings={"size": size, "rgb": rgb},
        dim=size * size * channels,
        cpu_batch_size=64,
        cuda_batch_size=64,
        # Decoding a tiny image is mostly Python overhead under the GIL.
        cpu_workers="processes",
    )


def _parse(arg: str | None) -> tuple[int, bool]:
    parts = arg.split(":") if arg else []
    rgb = False
    if parts and parts[-1].lower() in ("rgb", "gray"):
        rgb = parts.pop().lower() == "rgb"
    if len(parts) > 1 or (parts and not parts[0].isdigit()) or (parts and not 1 <= int(parts[0]) <= MAX_SIZE):
        raise UsageError(
            f"backbone spec pixels:{arg} is not pixels[:SIZE][:rgb|gray]", f"write e.g. pixels, pixels:8 or pixels:32:rgb (SIZE 1-{MAX_SIZE})"
        )
    return (int(parts[0]) if parts else DEFAULT_SIZE), rgb


class PixelsEncoder:
    """Image path -> flattened resized pixels in [0, 1] (float32)."""

    def __init__(self, size: int, rgb: bool):
        self.size = size
        self.rgb = rgb
        self.dim = size * size * (3 if rgb else 1)

    def load(self, value: str) -> np.ndarray:
        return self.load_image(open_rgb(value))

    def load_image(self, image) -> np.ndarray:
        """The features of an already decoded PIL image (a video frame)."""
        from PIL import Image

        mode = "RGB" if self.rgb else "L"
        if image.mode != mode:
            image = image.convert(mode)
        resized = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.float32).reshape(-1) / 255.0

    def collate(self, items: Sequence[Any]) -> np.ndarray:
        return np.stack(items)

    def encode(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(batch, dtype=np.float32)


def build_pixels(config: BackboneConfig, device: str) -> PixelsEncoder:
    return PixelsEncoder(config.settings["size"], config.settings["rgb"])
