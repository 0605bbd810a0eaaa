"""Image decoding and the one preprocessing recipe image backbones share, plus the
encoder that runs a vision model over batches of preprocessed images.

The resize method is fixed here (PIL, antialiased, bicubic by default) and recorded in
each backbone's fingerprint: OpenCV's bilinear resize and PIL's antialiased resize give
efficientnet-lite0 features with cosine similarity as low as 0.970 (median 0.984) for
1280 px photos (BENCHMARKS.md, "Resize method and the fingerprint"), so mixing them would
poison a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mmtk.backbones.base import BadInput, autocast_for, close_resource
from mmtk.errors import UsageError

# Name of the resize method recorded in fingerprints; change it when the code changes.
PIL_RESIZE = "pil-antialias"


def open_rgb(path: str, draft_size: int | None = None):
    """Open an image file as an RGB PIL image, or raise ``BadInput`` saying why not.

    ``draft_size`` lets the JPEG decoder scale down by a power of two while keeping both
    sides >= draft_size: large photos then decode several times faster, and since the
    draft depends only on the file and the size, the result stays deterministic.

    An image whose header declares more pixels than PIL's ``MAX_IMAGE_PIXELS`` (89.5
    million by default, the limit OCR applies too) is refused before decoding, as one
    bad item, instead of PIL's raw ``DecompressionBombWarning`` on stderr followed by a
    decode of up to twice that (about 0.5 GiB per image, per decoder thread).
    """
    from PIL import Image, UnidentifiedImageError

    silence_pil_bomb_warning()
    try:
        image = Image.open(path)
        check_pixel_limit(path, image.size)
        if draft_size is not None:
            image.draft("RGB", (draft_size, draft_size))
        image.load()
    except BadInput:
        raise
    except FileNotFoundError:
        raise BadInput(f"image file not found: {path}") from None
    except Image.DecompressionBombError:
        limit = Image.MAX_IMAGE_PIXELS
        raise BadInput(f"image {path} has more than {2 * limit:,} pixels, over the {limit:,}-pixel limit") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"cannot decode image {path}: {exc}") from None
    if image.mode != "RGB":
        # Transparent areas become white rather than whatever colour hides under alpha 0.
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
    return image


def check_pixel_limit(path: str, size: tuple[int, int]) -> None:
    """Refuse an image over PIL's pixel limit from its header size, before decoding
    (extraction and OCR share it, so both refuse the same images in the same words)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    width, height = size
    if limit is not None and width * height > limit:  # None: the caller switched PIL's limit off
        raise BadInput(f"image {path} is {width}x{height} ({width * height:,} pixels), over the {limit:,}-pixel limit")


def silence_pil_bomb_warning() -> None:
    """PIL warns for images over its limit before ``check_pixel_limit`` refuses them,
    so its warning would only repeat that refusal as a raw line on stderr. The filter is
    process-wide: decoder threads cannot each scope one (``catch_warnings`` is not
    thread-safe before Python 3.14). It is put back when missing, because a caller's
    ``catch_warnings`` block (pytest wraps every test in one) drops it on exit."""
    import warnings

    from PIL import Image

    if ("ignore", None, Image.DecompressionBombWarning, None, 0) not in warnings.filters:
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class CropGeometry:
    """An image encoder's preprocessing cut in two around its crop: ``resize`` (PIL image
    -> PIL image, short side to the backbone's resize size), the crop ``size``, and
    ``finish`` (a ``size`` x ``size`` crop -> what ``collate`` takes), plus the JPEG
    ``draft_size`` its decoding uses. Test-time views (``mmtk.tta.views``) crop between
    the two."""

    size: int
    resize: Callable[[Any], Any]
    finish: Callable[[Any], Any]
    draft_size: int | None = None


def crop_geometry(transform, draft_size: int | None = None) -> CropGeometry:
    """How an image preprocessing ``transform`` resizes and crops, for test-time views
    (``mmtk.tta``): ``ResizeCrop``, or a torchvision ``Compose`` that starts with a
    short-side ``Resize`` and a square ``CenterCrop`` (open_clip's eval transform in its
    default ``shortest`` mode). Other transforms are refused: views cut out of them would
    not be what the model saw in training. A transform that knows its own geometry (a
    fine-tuned tower's, ``mmtk.finetune.pixels``) has a ``crop_geometry(draft_size)``."""
    if callable(getattr(transform, "crop_geometry", None)):
        return transform.crop_geometry(draft_size)
    if isinstance(transform, ResizeCrop):
        return CropGeometry(transform.size, transform.resize_short_side, np.asarray, draft_size)
    steps = list(getattr(transform, "transforms", []))
    if [type(step).__name__ for step in steps[:2]] == ["Resize", "CenterCrop"]:
        resize, crop = steps[0], steps[1]
        short = resize.size[0] if isinstance(resize.size, (list, tuple)) and len(resize.size) == 1 else resize.size
        side = crop.size if isinstance(crop.size, int) else (crop.size[0] if crop.size[0] == crop.size[1] else None)
        if isinstance(short, int) and side is not None and getattr(resize, "max_size", None) is None:
            from torchvision.transforms import Compose

            return CropGeometry(int(side), resize, Compose(steps[2:]), draft_size)
    raise UsageError(
        f"image preprocessing {type(transform).__name__} has no short-side resize and square crop to cut test-time views from",
        "use --tta none with this run, or image features such as efficientnet-lite0 or clip (default resize mode)",
    )


@dataclass(frozen=True)
class ResizeCrop:
    """Resize the short side to ``resize`` (PIL, antialiased), centre-crop ``size``: the
    eval transform of ImageNet-style CNNs. Returns the crop as an HWC uint8 array;
    ``ImageEncoder`` scales and normalises whole batches with ``mean`` and ``std``, which
    costs a quarter of the per-image float work in numpy and moves 4x fewer bytes."""

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

    def __call__(self, image) -> np.ndarray:
        image = self.resize_short_side(image)
        left = (image.size[0] - self.size) // 2
        top = (image.size[1] - self.size) // 2
        return np.asarray(image.crop((left, top, left + self.size, top + self.size)))

    def resize_short_side(self, image):
        """The resize step alone: short side to ``resize``, neither side below ``size``
        (test-time crops, ``mmtk.tta``, cut their views from this)."""
        from PIL import Image

        width, height = image.size
        scale = self.resize / min(width, height)
        new_size = (max(self.size, round(width * scale)), max(self.size, round(height * scale)))
        resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[self.interpolation]
        return image.resize(new_size, resample=resample)


class ImageEncoder:
    """Runs ``forward`` (a batch of NCHW float images -> (B, dim) pooled features, or
    (B, T, dim) for a spatial grid) on ``device``.

    ``transform`` turns one RGB PIL image into the model's input: either a normalised
    CHW float tensor (open_clip's transforms), or, with ``normalize=(mean, std)``, an HWC
    uint8 array (``ResizeCrop``) that ``collate`` stacks and ``encode`` converts on the
    device. Such uint8 batches come out channels_last for free (NHWC memory viewed as
    NCHW), the layout oneDNN runs CNNs fastest in; with ``channels_last`` other batches
    are converted to it. On CUDA the forward runs under fp16 autocast and the output is
    returned as float32. ``draft_size`` is passed to ``open_rgb`` for JPEG draft decoding.

    ``decode_ahead_items``: how many decoded images CPU extraction may hold ahead of the
    forward passes (``mmtk.extract.executors.threads``): 256 uint8 crops of 224 px are 38 MiB;
    float tensors are four times larger, and larger for bigger models, so fewer.
    """

    def __init__(
        self,
        forward: Callable[[Any], Any],
        transform: Callable[[Any], Any],
        dim: int,
        device: str,
        *,
        draft_size: int | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
        channels_last: bool = False,
    ):
        self.forward = forward
        self.transform = transform
        self.dim = dim
        self.device = device
        self.draft_size = draft_size
        self.normalize = normalize
        self.channels_last = channels_last
        self.decode_ahead_items = 256 if normalize is not None else 32
        self._scale_shift: dict[str, tuple[Any, Any]] = {}

    def close(self) -> None:
        """Wait for weights loading in the background (``BackgroundModel``), if any."""
        close_resource(self.forward)

    def load(self, value: str):
        """Decode and preprocess the image file at ``value``."""
        return self.transform(open_rgb(value, draft_size=self.draft_size))

    def load_image(self, image):
        """Preprocess an already decoded PIL image (a video frame, a crop)."""
        return self.transform(image if image.mode == "RGB" else image.convert("RGB"))

    def crop_geometry(self) -> CropGeometry:
        """This encoder's ``crop_geometry`` (module function), for test-time views."""
        return crop_geometry(self.transform, self.draft_size)

    def collate(self, items: Sequence[Any]):
        import torch

        if self.normalize is not None:
            # (B, H, W, 3) uint8 viewed as (B, 3, H, W): a channels_last tensor, no copy.
            return torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2)
        return torch.stack(list(items))

    def encode(self, batch) -> np.ndarray:
        import torch

        batch = batch.to(self.device, non_blocking=True)
        if self.normalize is not None:
            scale, shift = self._scale_shift_on(batch.device)
            # (x / 255 - mean) / std as one multiply-add; .float() keeps channels_last.
            batch = torch.addcmul(shift, batch.float(), scale)
        elif self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast_for(self.device):
            features = self.forward(batch)
        return features.float().cpu().numpy()

    def _scale_shift_on(self, device):
        import torch

        key = str(device)
        if key not in self._scale_shift:
            mean = torch.tensor(self.normalize[0], dtype=torch.float32)
            std = torch.tensor(self.normalize[1], dtype=torch.float32)
            scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1).to(device)
            shift = (-mean / std).view(1, 3, 1, 1).to(device)
            self._scale_shift[key] = (scale, shift)
        return self._scale_shift[key]
