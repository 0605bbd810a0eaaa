"""Tesseract through its in-process API (``tesserocr``) where installed, else through
``pytesseract``, which starts one ``tesseract`` process per call (about 117 ms against
10 ms here, for identical text)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from mmtk.errors import UsageError
from mmtk.ocr.engines.base import NOTHING, Reading

# Page segmentation mode 6: one uniform block of text, right for one or two caption lines.
PSM_BLOCK = 6
_COMMON_TESSDATA = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)


def install_hint(lang: str = "eng") -> str:
    """The command that installs Tesseract and a language on this platform."""
    if sys.platform == "darwin":
        return "install it with `brew install tesseract`" + ("" if lang == "eng" else " tesseract-lang")
    if sys.platform.startswith("win"):
        return "install Tesseract from https://github.com/UB-Mannheim/tesseract/wiki and add it to PATH"
    package = f"tesseract-ocr-{lang.split('+')[0]}"
    return f"install it with `sudo apt-get install tesseract-ocr {package}`"


@lru_cache(maxsize=1)
def tessdata_dir() -> Path | None:
    """Where the installed ``*.traineddata`` files are (the tesserocr wheel bundles its
    own library but no language data, so it must be told)."""
    candidates = []
    if os.environ.get("TESSDATA_PREFIX"):
        candidates.append(os.environ["TESSDATA_PREFIX"])
    binary = shutil.which("tesseract")
    if binary:
        try:
            listing = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30)
            found = re.search(r'"(.+?)"', listing.stdout + listing.stderr)
            if found:
                candidates.append(found.group(1))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.extend(_COMMON_TESSDATA)
    for candidate in candidates:
        path = Path(candidate)
        for folder in (path, path / "tessdata"):
            if any(folder.glob("*.traineddata")):
                return folder
    return None


def check_language(lang: str) -> Path:
    """The tessdata folder, after checking that every language of ``lang`` is installed."""
    folder = tessdata_dir()
    if folder is None:
        raise UsageError("Tesseract is not installed (no tesseract binary or language data found)", install_hint(lang))
    for code in lang.split("+"):
        if not (folder / f"{code}.traineddata").is_file():
            raise UsageError(f"Tesseract has no language data for {code!r} in {folder}", install_hint(code))
    return folder


def _blank(image: np.ndarray) -> bool:
    # Tesseract 5.3 with some page segmentation modes dies with SIGFPE on blank crops,
    # which in-process would end the whole run: never hand it an image without ink.
    return image.size == 0 or int(image.min()) == int(image.max())


class TesseractEngine:
    """Tesseract LSTM on mmtk's binarised caption crops."""

    name = "tesseract"
    wants_binary = True

    def __init__(self, lang: str = "eng"):
        # Tesseract's OpenMP threads fight the frame workers on small machines; one
        # thread each halved its time on 2 cores here.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        self.lang = lang
        self.tessdata = check_language(lang)
        self._api = None
        try:
            import tesserocr
        except ImportError:
            tesserocr = None
        if tesserocr is not None:
            self._api = tesserocr.PyTessBaseAPI(
                path=str(self.tessdata), lang=lang, psm=PSM_BLOCK, oem=tesserocr.OEM.LSTM_ONLY
            )
        elif shutil.which("tesseract") is None:
            raise UsageError("the tesseract binary is not on PATH", install_hint(lang))

    @property
    def in_process(self) -> bool:
        return self._api is not None

    def read(self, image: np.ndarray) -> Reading:
        if _blank(image):
            return NOTHING
        if self._api is not None:
            return self._read_in_process(np.ascontiguousarray(image))
        return self._read_subprocess(image)

    def _read_in_process(self, image: np.ndarray) -> Reading:
        channels = 1 if image.ndim == 2 else image.shape[2]
        if channels == 3:
            image = image[:, :, ::-1].copy()  # BGR -> RGB
        height, width = image.shape[:2]
        self._api.SetImageBytes(image.tobytes(), width, height, channels, width * channels)
        text = _tidy(self._api.GetUTF8Text())
        return Reading(text, float(self._api.MeanTextConf()) if text else 0.0)

    def _read_subprocess(self, image: np.ndarray) -> Reading:
        import pytesseract

        try:
            data = pytesseract.image_to_data(
                image, lang=self.lang, config=f"--psm {PSM_BLOCK} --oem 1", output_type=pytesseract.Output.DICT
            )
        except pytesseract.TesseractNotFoundError:
            raise UsageError("the tesseract binary is not on PATH", install_hint(self.lang)) from None
        except (pytesseract.TesseractError, RuntimeError, OSError):
            # A crash on one odd crop (SIGFPE) is that frame's problem, not the run's.
            return NOTHING
        lines: dict[tuple, list[str]] = {}
        confidences = []
        for word, conf, block, par, line in zip(
            data["text"], data["conf"], data["block_num"], data["par_num"], data["line_num"]
        ):
            if word.strip():
                lines.setdefault((block, par, line), []).append(word.strip())
                confidences.append(float(conf))
        text = "\n".join(" ".join(words) for words in lines.values())
        return Reading(text, float(np.mean(confidences)) if confidences else 0.0)

    def close(self) -> None:
        if self._api is not None:
            self._api.End()
            self._api = None


def _tidy(text: str) -> str:
    lines = (line.split() for line in text.splitlines())
    # Tesseract reads a capital I standing alone as a pipe, which captions never hold.
    return "\n".join(" ".join("I" if word == "|" else word for word in words) for words in lines if words)
