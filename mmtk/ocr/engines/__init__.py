"""OCR engines behind one interface (``OcrEngine``), picked by name from ``ENGINES``."""

from __future__ import annotations

from typing import Callable

from mmtk.ocr.engines.base import NOTHING, OcrEngine, Reading
from mmtk.registry import Registry

ENGINES: Registry[Callable[..., OcrEngine]] = Registry("OCR engine")


@ENGINES.register("tesseract", help="Tesseract LSTM (default); in-process with tesserocr, else pytesseract")
def _tesseract(lang: str = "eng") -> OcrEngine:
    from mmtk.ocr.engines.tesseract import TesseractEngine

    return TesseractEngine(lang)


@ENGINES.register("rapidocr", help="PP-OCR detector+recogniser on onnxruntime (pip install 'mmtk[ocr]'); better on busy photos")
def _rapidocr(lang: str = "eng") -> OcrEngine:
    from mmtk.ocr.engines.rapid import RapidOcrEngine

    return RapidOcrEngine(lang)


def create_engine(name: str, lang: str = "eng") -> OcrEngine:
    """A ready engine by registry name; unknown names and missing installs raise UsageError."""
    return ENGINES.get(name)(lang)


__all__ = ["ENGINES", "NOTHING", "OcrEngine", "Reading", "create_engine"]
