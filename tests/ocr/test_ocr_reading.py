"""Caption detection, preprocessing and the engines on generated frames and images."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.errors import UsageError
from mmtk.ocr.engines import NOTHING, create_engine
from mmtk.ocr.scoring import cer
from mmtk.ocr.textmask import IMAGE_TEXT, find_text, ocr_image


def test_centred_outlined_caption_is_found_and_off_centre_text_is_not(busy_background, draw_caption):
    frame = busy_background()
    draw_caption(frame, "Where did you put the keys?", 320, 320)
    draw_caption(frame, "OPEN 24 HOURS", 110, 250, scale=0.8)  # a shop sign at the left
    crop = frame[180:]
    layer = find_text(crop, frame.shape[0])
    assert len(layer.lines) == 1
    x0, y0, x1, y1 = layer.lines[0]
    assert x0 < 320 < x1 and y0 < 140 < y1  # the caption, around its baseline (320 - 180)
    assert not layer.mask[40:90].any()  # nothing kept around the sign's baseline (250 - 180)


def test_frames_without_captions_give_no_text(busy_background):
    assert find_text(busy_background()[180:], 360).empty
    assert find_text(np.zeros((180, 640, 3), np.uint8), 360).empty


def test_ocr_input_is_black_text_on_white(busy_background, draw_caption):
    frame = draw_caption(busy_background(), "Hold on tight", 320, 320)
    layer = find_text(frame[180:], 360)
    image = ocr_image(frame[180:], layer)
    assert image.dtype == np.uint8 and set(np.unique(image)) <= {0, 255}
    ink = (image == 0).mean()
    assert 0.02 < ink < 0.4  # letters, not a black slab or an empty page
    assert (image[:5] == 255).all()  # white margin


def test_tesseract_reads_a_caption_over_a_busy_background(tesseract, busy_background, draw_caption):
    frame = draw_caption(busy_background(), "Where did you put the keys?", 320, 320)
    layer = find_text(frame[180:], 360)
    engine = create_engine("tesseract")
    try:
        reading = engine.read(ocr_image(frame[180:], layer))
    finally:
        engine.close()
    assert cer("Where did you put the keys?", reading.text) <= 0.1
    assert reading.confidence > 60


def test_blank_and_degenerate_crops_never_raise(tesseract):
    # Tesseract 5.3 dies with SIGFPE on some blank crops; the engine must not call it.
    engine = create_engine("tesseract")
    try:
        for image in (np.full((40, 300), 255, np.uint8), np.zeros((0, 0), np.uint8), np.zeros((1, 1), np.uint8)):
            assert engine.read(image) == NOTHING
    finally:
        engine.close()


def test_pytesseract_fallback_reads_the_same_text(tesseract, busy_background, draw_caption, monkeypatch):
    import sys

    from mmtk.ocr.engines.tesseract import TesseractEngine

    frame = draw_caption(busy_background(), "Keep your eyes on the ball", 320, 320)
    layer = find_text(frame[180:], 360)
    image = ocr_image(frame[180:], layer)
    monkeypatch.setitem(sys.modules, "tesserocr", None)  # as if it were not installed
    engine = TesseractEngine("eng")
    assert not engine.in_process
    assert cer("Keep your eyes on the ball", engine.read(image).text) <= 0.1
    assert engine.read(np.full((40, 300), 255, np.uint8)) == NOTHING


def test_missing_language_data_names_the_install_command(tesseract):
    with pytest.raises(UsageError) as info:
        create_engine("tesseract", lang="xyz")
    message = str(info.value)
    assert "xyz" in message and ("apt-get install" in message or "brew install" in message)


def test_missing_tesseract_says_how_to_install_it(monkeypatch):
    from mmtk.ocr.engines import tesseract as module

    monkeypatch.setattr(module, "tessdata_dir", lambda: None)
    with pytest.raises(UsageError) as info:
        create_engine("tesseract")
    assert "not installed" in str(info.value)
    assert "tesseract-ocr" in str(info.value) or "brew install tesseract" in str(info.value)


def test_meme_caption_top_and_bottom(tesseract, busy_background, draw_caption):
    from mmtk.ocr.images import read_image_text
    from mmtk.ocr.pool import OcrPool

    meme = busy_background(480, 480, seed=3)
    draw_caption(meme, "ONE DOES NOT", 240, 60, scale=1.6)
    draw_caption(meme, "SIMPLY WALK IN", 240, 450, scale=1.6)
    assert len(find_text(meme, 480, IMAGE_TEXT).lines) >= 2
    with OcrPool("tesseract", workers=1) as pool:
        reading = read_image_text(meme, pool)
    assert cer("ONE DOES NOT\nSIMPLY WALK IN", reading.text) <= 0.15


def test_rapidocr_engine_reads_text_over_a_photo(busy_background, draw_caption):
    pytest.importorskip("rapidocr", reason="optional extra: pip install 'mmtk[ocr]'")
    image = draw_caption(busy_background(200, 640), "keep calm and carry on", 320, 110, scale=1.2)
    engine = create_engine("rapidocr")
    reading = engine.read(image)
    assert cer("keep calm and carry on", reading.text) <= 0.15
    assert engine.read(np.zeros((50, 50, 3), np.uint8)) == NOTHING
