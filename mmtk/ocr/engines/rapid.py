"""RapidOCR (PP-OCR detector + recogniser on onnxruntime; the wheel carries the models).

It finds text over busy photos far better than Tesseract. The package is ``rapidocr``
(3.x), which depends on ``opencv-python-headless`` like mmtk: the older
``rapidocr-onnxruntime`` depends on the GUI build ``opencv-python``, and the two OpenCV
wheels then overwrite each other's ``cv2`` (uninstalling either breaks it). Where the
recogniser drops the spaces between English words, they are put back from the gaps
between ink columns inside each detected line."""

from __future__ import annotations

import os

import numpy as np

from mmtk.errors import UsageError
from mmtk.ocr.engines.base import NOTHING, Reading

# A word space is wider than this fraction of the line height; letter gaps are narrower.
SPACE_GAP = 0.2


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
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })

    def read(self, image: np.ndarray) -> Reading:
        if image.size == 0 or int(image.min()) == int(image.max()):
            return NOTHING
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        try:
            output = self._ocr(image, return_word_box=True, return_single_char_box=True)
        except Exception:  # noqa: BLE001 - onnxruntime raises bare errors on odd inputs; one image must not end the run
            return NOTHING
        if not output.txts:
            return NOTHING
        chars = output.word_results or [()] * len(output.txts)
        lines = []
        for quad, text, score, line_chars in sorted(
            zip(output.boxes, output.txts, output.scores, chars), key=lambda r: (_box(r[0])[1], _box(r[0])[0])
        ):
            char_boxes = [entry[2] for entry in line_chars]
            lines.append((_with_spaces(image, _box(quad), text, char_boxes), float(score)))
        text = "\n".join(t for t, _ in lines if t.strip())
        return Reading(text, 100.0 * float(np.mean([s for _, s in lines]))) if text else NOTHING

    def close(self) -> None:
        self._ocr = None


def _box(quad) -> tuple[int, int, int, int]:
    points = np.asarray(quad, dtype=float)
    return int(points[:, 0].min()), int(points[:, 1].min()), int(points[:, 0].max()), int(points[:, 1].max())


def _with_spaces(image: np.ndarray, box: tuple[int, int, int, int], text: str, char_boxes) -> str:
    """Insert spaces at wide ink gaps of the line when the recogniser left them out."""
    from mmtk.ocr.textmask import DARK, LIGHT, _candidates, _odd, channel_spread

    if " " in text.strip() or len(text) < 2 or not char_boxes or len(char_boxes) != len(text):
        return text
    import cv2

    x0, y0, x1, y1 = box
    patch = image[max(0, y0) : y1, max(0, x0) : x1]
    if patch.size == 0:
        return text
    gray = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
    spread = channel_spread(patch)
    height = y1 - y0
    kernel = _odd(height * 0.6)
    masks = [_candidates(gray, spread, polarity, kernel, 50)[0] for polarity in (LIGHT, DARK)]
    ink = max(masks, key=lambda m: m.sum()).any(axis=0)
    gaps, start = [], None
    for x, has_ink in enumerate(ink):
        if not has_ink and start is None:
            start = x
        elif has_ink and start is not None:
            if start > 0 and x - start >= SPACE_GAP * height:
                gaps.append(x0 + (start + x) / 2)
            start = None
    centres = [np.asarray(b, dtype=float)[:, 0].mean() for b in char_boxes]
    cuts = sorted({int(np.searchsorted(np.sort(centres), g)) for g in gaps})
    pieces, last = [], 0
    for cut in cuts:
        if 0 < cut < len(text):
            pieces.append(text[last:cut])
            last = cut
    pieces.append(text[last:])
    return " ".join(p for p in pieces if p)
