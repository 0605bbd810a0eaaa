"""Cheap test of whether the caption changed since the last frame that was OCR'd.

It compares the caption *text pixels* (``TextLayer.mask``), not grey levels: a grey-level
difference misses a subtitle replaced by one of similar length and fires on every cut
or flicker of the footage behind an unchanged subtitle."""

from __future__ import annotations

import numpy as np

# Share of text pixels that may differ (after a one-pixel tolerance for compression
# noise) while still being the same caption; different captions differ by far more.
SAME_TEXT_TOLERANCE = 0.15


def _grow(mask: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def text_changed(current: np.ndarray | None, previous: np.ndarray | None, tolerance: float = SAME_TEXT_TOLERANCE) -> bool:
    """True when two text masks hold different text (or one holds none)."""
    current_any = current is not None and bool(current.any())
    previous_any = previous is not None and bool(previous.any())
    if not current_any or not previous_any:
        return current_any != previous_any
    if current.shape != previous.shape:
        return True
    missing = np.count_nonzero(current & ~_grow(previous)) + np.count_nonzero(previous & ~_grow(current))
    return missing > tolerance * (np.count_nonzero(current) + np.count_nonzero(previous))
