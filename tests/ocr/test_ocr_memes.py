"""Meme captions (issue 17): outlined text over photograph-like noise, small text on
thumbnails, and what each engine keeps of what it reads."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from mmtk.ocr.scoring import cer

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def photo_like(size: int, seed: int) -> np.ndarray:
    """Smooth random colour fields (pale, dark and saturated patches, like a photo out of
    focus) under strong pixel noise: unlike colour bars, near-white areas touch the
    letters, and the noise gives the stroke filters texture to mistake for text."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 28, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def meme(size: int, top: str, bottom: str, font_px: int, seed: int) -> np.ndarray:
    """BGR meme: white capitals with a black outline at top and bottom (Pillow, DejaVu Sans Bold)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(FONT, font_px)
    except OSError:
        pytest.skip(f"{FONT} is not installed (sudo apt-get install fonts-dejavu-core)")
    image = Image.fromarray(photo_like(size, seed))
    draw = ImageDraw.Draw(image)
    for text, y in ((top, size * 0.03), (bottom, size - font_px * 1.4)):
        width = draw.textlength(text, font=font)
        draw.text(((size - width) / 2, y), text, font=font, fill="white", stroke_width=max(1, font_px // 10), stroke_fill="black")
    return np.asarray(image)[:, :, ::-1].copy()


def read_meme(image: np.ndarray) -> str:
    from mmtk.ocr.images import read_image_text
    from mmtk.ocr.pool import OcrPool

    with OcrPool("tesseract", workers=1) as pool:
        return read_image_text(image, pool).text


def test_outlined_caption_over_photograph_like_noise(tesseract):
    image = meme(480, "WHEN THE CODE WORKS", "ON THE FIRST TRY", 28, seed=2)
    assert cer("WHEN THE CODE WORKS\nON THE FIRST TRY", read_meme(image)) <= 0.1


def test_small_caption_on_a_thumbnail_is_read(tesseract):
    # 225-px memes with 9-px capitals: the size of many real memes found on the web.
    # Read as they are, three of these four came back garbled ("WHEN THE CODE Ore",
    # or only the bottom line); scaled up first, three of the four read (CER <= 0.06).
    truth = "WHEN THE CODE COMPILES\nON THE FIRST TRY"
    errors = [cer(truth, read_meme(meme(225, *truth.split("\n"), 13, seed))) for seed in range(4)]
    assert statistics.median(errors) <= 0.1


def test_noise_lines_are_dropped_and_caption_lines_kept():
    from mmtk.ocr.images import drop_noise_lines

    text = "ns wo . = e a\nBETI TUM GAALI TOH NHI DETI\n' ~ |\nI am a big fan"
    assert drop_noise_lines(text) == "BETI TUM GAALI TOH NHI DETI\nI am a big fan"
    assert drop_noise_lines("") == ""


def test_rapidocr_keeps_confident_caption_sized_lines_top_to_bottom():
    from mmtk.ocr.engines.rapid import caption_lines

    boxes = [
        (10, 300, 400, 340),  # bottom caption, 40 px
        (10, 10, 400, 50),  # top caption
        (300, 200, 390, 212),  # a watermark: 12 px, under 0.4 of the captions
        (20, 120, 300, 160),  # caption-sized, but the recogniser is unsure: scenery
    ]
    texts = ["SIMPLY WALK IN", "ONE DOES NOT", "@memefactory", "iiil ll"]
    scores = [0.97, 0.95, 0.99, 0.62]
    assert caption_lines(boxes, texts, scores) == [("ONE DOES NOT", 0.95), ("SIMPLY WALK IN", 0.97)]
    assert caption_lines(boxes[2:], texts[2:], [0.5, 0.5]) == []  # nothing sure: nothing kept
    # The height rule is relative: a meme whose text is all small keeps it.
    assert caption_lines([(0, 0, 90, 12)], ["tiny but sure"], [0.93]) == [("tiny but sure", 0.93)]


def test_rapidocr_reads_a_small_meme_thumbnail():
    pytest.importorskip("rapidocr", reason="optional extra: pip install 'mmtk[ocr]'")
    from mmtk.ocr.engines import create_engine

    engine = create_engine("rapidocr")
    try:
        reading = engine.read(meme(225, "WHEN THE CODE COMPILES", "ON THE FIRST TRY", 13, seed=1))
    finally:
        engine.close()
    assert cer("WHEN THE CODE COMPILES\nON THE FIRST TRY", reading.text.upper()) <= 0.1


def test_rapidocr_detector_size_keeps_text_of_long_screenshots_readable():
    from mmtk.ocr.engines.rapid import detection_size

    assert detection_size(225, 225) == (480, 480)  # thumbnails scaled up
    assert detection_size(1200, 900) == (480, 360)  # large photos scaled down
    # A 400x3000 screenshot at a 480-px long side would be 64 px wide: its short side
    # sets the scale instead.
    assert detection_size(400, 3000) == (240, 1800)
    assert max(detection_size(100, 5000)) == 2000  # never past the detector's limit
