"""OCR jobs on a small pool of threads, one engine per thread.

Both engines release the GIL while they work (tesserocr and onnxruntime in native code,
pytesseract in a child process), so threads overlap OCR with frame decoding without
the cost of shipping frames to processes."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from mmtk.ocr.engines import OcrEngine, Reading, create_engine


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class OcrPool:
    """``submit(image) -> Future[Reading]``; use as a context manager."""

    def __init__(self, engine: str = "tesseract", lang: str = "eng", workers: int | None = None):
        self.engine_name, self.lang = engine, lang
        # Build one engine up front so a missing install fails before any decoding.
        first = create_engine(engine, lang)
        self.wants_binary = first.wants_binary
        self._engines: list[OcrEngine] = [first]
        self._spare = [first]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="mmtk-ocr")
        self.calls = 0

    def _engine(self) -> OcrEngine:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            with self._lock:
                engine = self._spare.pop() if self._spare else None
            if engine is None:
                engine = create_engine(self.engine_name, self.lang)
                with self._lock:
                    self._engines.append(engine)
            self._local.engine = engine
        return engine

    def _read(self, image: np.ndarray) -> Reading:
        return self._engine().read(image)

    def submit(self, image: np.ndarray) -> Future:
        self.calls += 1
        return self._executor.submit(self._read, image)

    def read(self, image: np.ndarray) -> Reading:
        return self.submit(image).result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for engine in self._engines:
            engine.close()

    def __enter__(self) -> "OcrPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
