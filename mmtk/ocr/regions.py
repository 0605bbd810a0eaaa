"""Which part of a frame holds the subtitles: a named band or an explicit rectangle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtk.errors import UsageError

# Named bands as (top, height) fractions of the frame; subtitles sit at the bottom.
_BANDS = {
    "full": (0.0, 1.0),
    "lower-half": (0.5, 0.5),
    "lower-third": (2 / 3, 1 / 3),
}


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame: either fractions of its size (named bands) or pixels."""

    spec: str
    x: float
    y: float
    w: float
    h: float
    in_pixels: bool

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels for a frame of this size, clipped to the frame."""
        if self.in_pixels:
            x0, y0, x1, y1 = self.x, self.y, self.x + self.w, self.y + self.h
        else:
            x0, y0 = self.x * width, self.y * height
            x1, y1 = x0 + self.w * width, y0 + self.h * height
        x0, x1 = int(max(0, min(width, round(x0)))), int(max(0, min(width, round(x1))))
        y0, y1 = int(max(0, min(height, round(y0)))), int(max(0, min(height, round(y1))))
        return x0, y0, x1, y1

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """The region's pixels (a view, not a copy)."""
        x0, y0, x1, y1 = self.box(frame.shape[1], frame.shape[0])
        return frame[y0:y1, x0:x1]


def parse_region(spec: str) -> Region:
    """``lower-half``, ``lower-third``, ``full`` or ``X,Y,W,H`` in pixels."""
    spec = spec.strip()
    if spec in _BANDS:
        top, height = _BANDS[spec]
        return Region(spec, 0.0, top, 1.0, height, in_pixels=False)
    parts = spec.split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        x = y = w = h = -1
    if len(parts) != 4 or min(x, y) < 0 or min(w, h) <= 0:
        raise UsageError(
            f"--region {spec!r} is not a region",
            f"use one of {', '.join(_BANDS)} or X,Y,W,H in pixels such as 0,400,1280,320",
        )
    return Region(spec, float(x), float(y), float(w), float(h), in_pixels=True)
