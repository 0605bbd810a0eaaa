"""The one interface every OCR engine implements, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Reading:
    """Text read from one image; ``confidence`` is 0-100 (0 when nothing was read)."""

    text: str
    confidence: float

    @property
    def empty(self) -> bool:
        return not self.text.strip()


NOTHING = Reading("", 0.0)


class OcrEngine(Protocol):
    """An OCR engine. ``wants_binary`` engines (Tesseract) get mmtk's cleaned black-on-white
    crop of the caption lines; detector engines get the original colour pixels and find
    the text themselves."""

    name: str
    wants_binary: bool

    def read(self, image: np.ndarray) -> Reading:
        """Text in a uint8 image (grey or BGR); never raises for a blank or odd image."""
        ...

    def close(self) -> None:
        """Free native resources."""
        ...
