"""RapidOCR (PP-OCR detector + recogniser on onnxruntime; the wheel carries the models).

It finds text over busy photos far better than Tesseract. The package is ``rapidocr``
(3.x), which depends on ``opencv-python-headless`` like mmtk: the older
``rapidocr-onnxruntime`` depends on the GUI build ``opencv-python``, and the two OpenCV
wheels then overwrite each other's ``cv2`` (uninstalling either breaks it).

Word spaces: the recogniser of rapidocr 3 (PP-OCRv6) writes them itself. The earlier
engine (rapidocr-onnxruntime 1.4) dropped them, and mmtk put them back from empty ink
columns inside each line; on 100 real memes (issue 17) that step, and a version of it
that also read yellow and cyan letters, only split words and handles wrongly
("Ground breaking", "@Faltu _username"): median CER 0.170 against 0.168 without it, so
it is gone.

Caption lines (issue 17, tuned on 100 real memes, checked on 100 others): a line the
recogniser scores under ``MIN_LINE_SCORE`` is mostly misread scenery, and one under
``MIN_LINE_HEIGHT`` of the tallest line is a watermark, a handle or a screenshot's
small print, which a meme's transcription leaves out; dropping both took the median
CER from 0.168 to 0.100.

Speed (issue 17, measured on 30 real memes, process CPU seconds per image, one thread):
RapidOCR's default scales every image so that its SHORT side is 736 px before the
detector, so a 225x225 meme was detected at 736x736 (1.02 s, most of it detection),
and it runs an angle classifier on every line, which upright captions never need.
Scaling the LONG side to 480 px instead (up or down; the short side kept at 240 px or
more for long screenshots) and no classifier took 0.42 s with
a lower median CER (0.134 against 0.137)."""

from __future__ import annotations

import os

import numpy as np

from mmtk.errors import UsageError
from mmtk.ocr.engines.base import NOTHING, Reading

# The detector sees the image with its long side at this many pixels (a multiple of 32),
# unless that leaves the short side under MIN_SHORT_SIDE (a long screenshot or a strip:
# its text would shrink to nothing), which then sets the scale, up to MAX_SIDE.
DETECT_SIDE = 480
MIN_SHORT_SIDE = 240
MAX_SIDE = 2000
MIN_LINE_SCORE = 0.9
MIN_LINE_HEIGHT = 0.4  # of the tallest line's height


class RapidOcrEngine:
    """Detector-based OCR for hard images (text over photos)."""

    name = "rapidocr"
    wants_binary = False

    def __init__(self, lang: str = "eng"):
        try:
            from rapidocr import RapidOCR
        except ImportError:
            raise UsageError(
                "--engine rapidocr needs the rapidocr and onnxruntime packages", "install them with `pip install 'mmtk[ocr]'`"
            ) from None
        threads = int(os.environ.get("OMP_THREAD_LIMIT", "1"))
        self._ocr = RapidOCR(params={
            # Its INFO/WARNING lines (model paths, "detection result is empty") would
            # interleave with mmtk's own output on stderr.
            "Global.log_level": "error",
            "Global.use_cls": False,
            # mmtk scales the image itself (detection_size); "max" then leaves it as it is.
            "Det.limit_type": "max",
            "Det.limit_side_len": MAX_SIDE,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })

    def read(self, image: np.ndarray) -> Reading:
        if image.size == 0 or int(image.min()) == int(image.max()):
            return NOTHING
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = _resize(image, detection_size(image.shape[1], image.shape[0]))
        try:
            output = self._ocr(image)
        except Exception:  # noqa: BLE001 - onnxruntime raises bare errors on odd inputs; one image must not end the run
            return NOTHING
        if not output.txts:
            return NOTHING
        lines = caption_lines([_box(quad) for quad in output.boxes], list(output.txts), [float(s) for s in output.scores])
        if not lines:
            return NOTHING
        return Reading("\n".join(text for text, _ in lines), 100.0 * float(np.mean([score for _, score in lines])))

    def close(self) -> None:
        self._ocr = None


def caption_lines(boxes: list[tuple[int, int, int, int]], texts: list[str], scores: list[float]) -> list[tuple[str, float]]:
    """(text, score) of the lines worth keeping, top to bottom: scored at least
    ``MIN_LINE_SCORE`` and at least ``MIN_LINE_HEIGHT`` of the tallest such line."""
    kept = [(box, text.strip(), score) for box, text, score in zip(boxes, texts, scores) if text.strip() and score >= MIN_LINE_SCORE]
    if not kept:
        return []
    tallest = max(box[3] - box[1] for box, _, _ in kept)
    kept = [line for line in kept if line[0][3] - line[0][1] >= MIN_LINE_HEIGHT * tallest]
    return [(text, score) for box, text, score in sorted(kept, key=lambda line: (line[0][1], line[0][0]))]


def detection_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) the detector gets: the long side at ``DETECT_SIDE``, or the short
    side at ``MIN_SHORT_SIDE`` where that is larger, the long side at most ``MAX_SIDE``."""
    scale = DETECT_SIDE / max(width, height)
    scale = max(scale, MIN_SHORT_SIDE / max(1, min(width, height)))
    scale = min(scale, MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    if abs(size[0] - width) <= 0.02 * width:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if size[0] > width else cv2.INTER_AREA)


def _box(quad) -> tuple[int, int, int, int]:
    points = np.asarray(quad, dtype=float)
    return int(points[:, 0].min()), int(points[:, 1].min()), int(points[:, 0].max()), int(points[:, 1].max())
