"""Text burned into video frames (subtitles) and still images (meme captions).

``ocr_video`` turns a video into timed cues, ``ocr_images`` reads images, ``ocr_dataset``
fills a text column from a dataset's video or image column; ``render`` writes SRT, WebVTT
or JSONL. Engines (Tesseract, RapidOCR) sit behind one interface in ``mmtk.ocr.engines``.
Heavy imports (OpenCV, the engines) happen inside functions.
"""

from __future__ import annotations

from mmtk.ocr.cues import Cue, CueSettings
from mmtk.ocr.dataset import DatasetOcrResult, ocr_dataset, write_rows
from mmtk.ocr.engines import ENGINES, OcrEngine, Reading, create_engine
from mmtk.ocr.images import ImageText, list_images, ocr_images
from mmtk.ocr.pool import OcrPool
from mmtk.ocr.regions import Region, parse_region
from mmtk.ocr.textmask import TextSettings
from mmtk.ocr.video import VideoOcrResult, VideoOcrSettings, ocr_video
from mmtk.ocr.writers import FORMATS, parse_srt, render

__all__ = [
    "Cue", "CueSettings", "DatasetOcrResult", "ENGINES", "FORMATS", "ImageText", "OcrEngine", "OcrPool", "Reading",
    "Region", "TextSettings", "VideoOcrResult", "VideoOcrSettings", "create_engine", "list_images", "ocr_dataset",
    "ocr_images", "ocr_video", "parse_region", "parse_srt", "render", "write_rows",
]
