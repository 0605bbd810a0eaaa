"""Text of still images (memes, screenshots): files, folders, or a list of paths."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from mmtk.errors import DataError
from mmtk.ocr.engines import NOTHING, Reading
from mmtk.ocr.pool import OcrPool
from mmtk.ocr.textmask import IMAGE_TEXT, TextSettings, find_text, ocr_image, text_blocks

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
# Images whose long side is shorter are scaled up to it before Tesseract's caption
# finding: real memes are often 225-px thumbnails whose letters are 6-10 px tall, too
# small for the stroke filters and for Tesseract (issue 17: on 100 real memes, median
# CER 0.393 as they are, 0.334 at 480 px, 0.341 at 600, 0.317 at 720).
UPSCALE_TO = 720
# A read line whose words average fewer letters than this is texture read as text
# ("= . ae a"): real caption words are longer (issue 17: median CER 0.341 -> 0.325).
MIN_WORD_LETTERS = 2.0
# The whole image's reading competes with the captions' only this sure (read_image_text).
WHOLE_MIN_CONFIDENCE = 50.0


@dataclass(frozen=True)
class ImageText:
    source: Path
    text: str
    confidence: float  # 0-100

    def to_dict(self) -> dict:
        return {"image": str(self.source), "text": self.text, "confidence": round(self.confidence, 1)}


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in named folders."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if p.is_file() and is_image(p)))
        else:
            found.append(item)
    return found


def load_image(path: Path) -> np.ndarray:
    """BGR pixels of an image file; DataError naming the file when it cannot be read or
    is over the pixel limit."""
    import cv2

    if not path.is_file():
        raise DataError(f"{path}: no such image file", "check the path")
    check_pixel_limit(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None and path.suffix.lower() == ".gif":
        capture = cv2.VideoCapture(str(path))  # OpenCV's imread has no GIF decoder
        ok, image = capture.read()
        capture.release()
        image = image if ok else None
    if image is None or image.size == 0:
        raise DataError(f"{path}: cannot decode image", "check that it is a complete JPEG/PNG/WebP/BMP/TIFF/GIF file")
    return image


def check_pixel_limit(path: Path) -> None:
    """Refuse an image whose header declares more pixels than PIL's ``MAX_IMAGE_PIXELS``,
    before any pixel is decoded, with extraction's own check (so both refuse the same
    images, in the same words).

    OpenCV's ``imread`` has no such limit short of 2**30 pixels: a 388 KB PNG of
    20000x20000 took over 180 s and 3.8 GB. PIL reads only the header here. A file PIL
    cannot identify is left to OpenCV, which then refuses it or decodes a format PIL
    lacks."""
    from PIL import Image, UnidentifiedImageError

    from mmtk.backbones.images import check_pixel_limit, silence_pil_bomb_warning
    from mmtk.errors import BadInput

    silence_pil_bomb_warning()
    try:
        with Image.open(path) as image:
            check_pixel_limit(str(path), image.size)
    except BadInput as error:
        raise DataError(str(error), _TOO_LARGE) from None
    except Image.DecompressionBombError:  # over twice the limit: PIL refuses to open it
        limit = Image.MAX_IMAGE_PIXELS
        raise DataError(f"image {path} has more than {2 * limit:,} pixels, over the {limit:,}-pixel limit", _TOO_LARGE) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return


_TOO_LARGE = "shrink the image, or leave it out (--on-error skip)"


def read_image_text(image: np.ndarray, pool: OcrPool, settings: TextSettings = IMAGE_TEXT) -> Reading:
    """Caption text of one BGR image. Tesseract engines get each caption block cleaned and
    binarised on its own (a meme's top and bottom text), once for light and once for
    dark letters, and the whole grey image as well, keeping the best-supported of the
    readings; detector engines get the image as is.

    The whole-image reading catches what the caption search misses: dark or coloured
    letters on plain panels, screenshots, captions without an outline. It competes only
    when Tesseract is at least ``WHOLE_MIN_CONFIDENCE`` sure of it: over noise or a
    busy photo it reads long garbage (confidence 14-28 on the tests' generated memes)
    that would outweigh a short caption. On 100 real memes (issue 17) this took the
    median CER from 0.321 to 0.213 (0.205 with no confidence floor; 0.267 when the
    whole image was read only after a caption reading under 70)."""
    if not pool.wants_binary:
        return pool.read(image)
    import cv2

    image = _upscale_small(image)
    whole = pool.submit(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image)
    candidates = []
    for polarity in settings.polarities:
        layer = find_text(image, image.shape[0], replace(settings, polarities=(polarity,)))
        if not layer.empty:
            futures = [pool.submit(ocr_image(image, layer, block)) for block in text_blocks(layer)]
            candidates.append(_join([f.result() for f in futures]))
    reading = _join([whole.result()])
    if reading.confidence >= WHOLE_MIN_CONFIDENCE:
        candidates.append(reading)
    return max(candidates, key=_evidence, default=NOTHING)


def _upscale_small(image: np.ndarray) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    scale = UPSCALE_TO / max(height, width, 1)
    if scale <= 1.0:
        return image
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_CUBIC)


def drop_noise_lines(text: str) -> str:
    """``text`` without the lines whose words average under ``MIN_WORD_LETTERS`` letters
    or digits."""
    kept = []
    for line in text.splitlines():
        words = line.split()
        if words and np.mean([sum(ch.isalnum() for ch in word) for word in words]) >= MIN_WORD_LETTERS:
            kept.append(line)
    return "\n".join(kept)


def _join(readings: list[Reading]) -> Reading:
    readings = [Reading(drop_noise_lines(r.text), r.confidence) for r in readings]
    readings = [r for r in readings if not r.empty]
    if not readings:
        return NOTHING
    weights = [len(r.text) for r in readings]
    confidence = float(np.average([r.confidence for r in readings], weights=weights))
    return Reading("\n".join(r.text for r in readings), confidence)


def _evidence(reading: Reading) -> float:
    # Confident letters: a reading of the outlines of white letters as dark text is
    # short and unsure, the reading of the letters themselves long and sure.
    return reading.confidence * sum(ch.isalnum() for ch in reading.text)


def ocr_images(
    paths: Iterable[str | Path],
    *,
    pool: OcrPool | None = None,
    engine: str = "tesseract",
    lang: str = "eng",
    workers: int | None = None,
    on_error: str = "fail",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ImageText], list[DataError]]:
    """Text of each image. Unreadable images raise DataError (``on_error="fail"``) or are
    returned in the second list (``"skip"``)."""
    paths = [Path(p) for p in paths]
    own_pool = pool is None
    pool = pool or OcrPool(engine, lang, workers)
    results, errors = [], []
    try:
        for n, path in enumerate(paths, start=1):
            try:
                reading = read_image_text(load_image(path), pool)
            except DataError as error:
                if on_error != "skip":
                    raise
                errors.append(error)
            else:
                results.append(ImageText(path, reading.text, reading.confidence))
            if progress is not None:
                progress(n, len(paths))
    finally:
        if own_pool:
            pool.close()
    return results, errors
