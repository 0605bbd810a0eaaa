"""Generated captions for OCR tests: frames and images with outlined text drawn by
OpenCV, and short videos with SRT subtitles burned in by ffmpeg where it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def tesseract_or_skip():
    from mmtk.errors import UsageError
    from mmtk.ocr.engines.tesseract import check_language

    try:
        check_language("eng")
    except UsageError as error:
        pytest.skip(f"Tesseract with English data is not installed ({error}); sudo apt-get install tesseract-ocr tesseract-ocr-eng")


@pytest.fixture
def tesseract():
    tesseract_or_skip()


@pytest.fixture
def ffmpeg_subtitles():
    """A function burning SRT text into a generated background; skips without ffmpeg/libass."""
    binary = shutil.which("ffmpeg")
    if binary is None:
        pytest.skip("ffmpeg is not installed (sudo apt-get install ffmpeg)")
    filters = subprocess.run([binary, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    if " subtitles " not in filters:
        pytest.skip("this ffmpeg has no subtitles filter (built without libass)")

    def burn(
        out: Path, srt: str, seconds: float, background: str = "testsrc2", size: str = "480x270",
        style: str | None = "FontName=DejaVu Sans",
    ) -> Path:
        """``background``: testsrc2, a colour, or any lavfi source with its options
        (``life=...``); ``style``: libass force_style, None for ffmpeg's default style."""
        srt_path = out.with_suffix(".srt")
        srt_path.write_text(srt, encoding="utf-8")
        if background == "testsrc2":
            source = f"testsrc2=size={size}:rate=25:duration={seconds}"
        elif "=" in background:
            source = background
        else:
            source = f"color=c={background}:size={size}:rate=25:duration={seconds}"
        # By default the font is named: libass's default for SRT is Arial, which fontconfig
        # maps to whatever is installed (DejaVu Sans on a bare Debian, Liberation Sans once
        # chromium's fonts are in), and the OCR figures most tests check were set on DejaVu.
        # style=None keeps that default, as users' videos have it.
        burn_filter = f"subtitles={srt_path}" + (f":force_style='{style}'" if style else "")
        subprocess.run(
            [binary, "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds), "-vf", burn_filter,
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)],
            check=True,
        )
        return out

    return burn


def _draw_caption(image: np.ndarray, text: str, center_x: int, baseline: int, scale: float = 1.0) -> np.ndarray:
    """White text with a black outline, the way subtitles and memes are drawn."""
    import cv2

    font = cv2.FONT_HERSHEY_DUPLEX
    (width, _), _ = cv2.getTextSize(text, font, scale, 2)
    origin = (center_x - width // 2, baseline)
    cv2.putText(image, text, origin, font, scale, (0, 0, 0), 6, cv2.LINE_AA)
    cv2.putText(image, text, origin, font, scale, (255, 255, 255), 2, cv2.LINE_AA)
    return image


def _busy_background(height: int = 360, width: int = 640, seed: int = 0) -> np.ndarray:
    """Saturated colour bars with noise, like ffmpeg's testsrc2: plain thresholding of the
    grey image fails on it, and it holds no pale areas (near-white scenery right against
    the letters is a harder case, measured in benchmarks/ rather than asserted here)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    colours = [(0, 0, 230), (0, 200, 0), (230, 0, 0), (0, 160, 230), (230, 0, 230), (200, 160, 0), (90, 90, 90)]
    step = width // len(colours)
    for i, colour in enumerate(colours):
        image[:, i * step : (i + 1) * step] = colour
    noise = rng.integers(-40, 40, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def draw_caption():
    return _draw_caption


@pytest.fixture
def busy_background():
    return _busy_background
