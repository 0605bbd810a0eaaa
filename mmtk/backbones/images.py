"""Image decoding and the one preprocessing recipe image backbones share, plus the
encoder that runs a vision model over batches of preprocessed images.

The resize method is fixed here (PIL, antialiased, bicubic by default) and recorded in
each backbone's fingerprint: OpenCV's bilinear resize and PIL's antialiased resize give
features with cosine similarity as low as 0.94, so mixing them would poison a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mmtk.backbones.base import BadInput, autocast_for

# Name of the resize method recorded in fingerprints; change it when the code changes.
PIL_RESIZE = "pil-antialias"


def open_rgb(path: str, draft_size: int | None = None):
    """Open an image file as an RGB PIL image, or raise ``BadInput`` saying why not.

    ``draft_size`` lets the JPEG decoder scale down by a power of two while keeping both
    sides >= draft_size: large photos then decode several times faster, and since the
    draft depends only on the file and the size, the result stays deterministic.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        if draft_size is not None:
            image.draft("RGB", (draft_size, draft_size))
        image.load()
    except FileNotFoundError:
        raise BadInput(f"image file not found: {path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"cannot decode image {path}: {exc}") from None
    if image.mode != "RGB":
        # Transparent areas become white rather than whatever colour hides under alpha 0.
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
    return image


@dataclass(frozen=True)
class ResizeCrop:
    """Resize the short side to ``resize`` (PIL, antialiased), centre-crop ``size``,
    scale to [0, 1] and normalise: the eval transform of ImageNet-style CNNs."""

    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def identity(self) -> dict:
        """The settings that change the features, for the fingerprint."""
        return {
            "size": self.size, "resize": self.resize, "mean": self.mean, "std": self.std,
            "interpolation": self.interpolation, "resize_method": PIL_RESIZE,
            "crop": "center", "jpeg_draft": self.resize,
        }

    def __call__(self, path: str):
        import torch
        from PIL import Image

        image = open_rgb(path, draft_size=self.resize)
        width, height = image.size
        scale = self.resize / min(width, height)
        new_size = (max(self.size, round(width * scale)), max(self.size, round(height * scale)))
        resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[self.interpolation]
        image = image.resize(new_size, resample=resample)
        left = (new_size[0] - self.size) // 2
        top = (new_size[1] - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class ImageEncoder:
    """Runs ``forward`` (a batch of CHW images -> (B, dim) features) on ``device``.

    CNNs run in channels_last layout, which oneDNN executes faster on CPU; on CUDA the
    forward runs under fp16 autocast and the output is returned as float32.
    """

    def __init__(
        self,
        forward: Callable[[Any], Any],
        preprocess: Callable[[str], Any],
        dim: int,
        device: str,
        channels_last: bool = False,
    ):
        self.forward = forward
        self.preprocess = preprocess
        self.dim = dim
        self.device = device
        self.channels_last = channels_last

    def load(self, value: str):
        return self.preprocess(value)

    def collate(self, items: Sequence[Any]):
        import torch

        return torch.stack(list(items))

    def encode(self, batch) -> np.ndarray:
        import torch

        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast_for(self.device):
            features = self.forward(batch)
        return features.float().cpu().numpy()

