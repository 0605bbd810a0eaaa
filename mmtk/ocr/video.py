"""Burned-in subtitles of a video as timed cues."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mmtk.ocr.change import SAME_TEXT_TOLERANCE, text_changed
from mmtk.ocr.cues import Cue, CueSettings, Sample, merge_readings
from mmtk.ocr.engines import Reading
from mmtk.ocr.frames import sample_frames, video_info
from mmtk.ocr.pool import OcrPool
from mmtk.ocr.regions import Region, parse_region
from mmtk.ocr.textmask import TextSettings, find_text, ocr_image


@dataclass(frozen=True)
class VideoOcrSettings:
    fps: float = 1.0
    region: str = "lower-half"
    text: TextSettings = field(default_factory=TextSettings)
    cues: CueSettings = field(default_factory=CueSettings)
    # Off only to measure what change detection saves: then every frame with text is OCR'd.
    skip_unchanged: bool = True
    change_tolerance: float = SAME_TEXT_TOLERANCE
    # Text must stay this long (at least one sample) before it is read: shorter-lived
    # text is moving scenery. 0.5 s is below any subtitle's display time.
    min_cue_seconds: float = 0.5
    # Extra reads of an unchanged caption whose reading fell below the confidence bar.
    retries: int = 2


@dataclass
class VideoOcrResult:
    source: Path
    cues: list[Cue]
    duration: float  # seconds of video
    frames_sampled: int
    ocr_calls: int  # engine calls actually made
    seconds: float  # wall-clock time spent

    def summary(self) -> dict:
        return {
            "video": str(self.source),
            "cues": len(self.cues),
            "duration": round(self.duration, 3),
            "frames_sampled": self.frames_sampled,
            "ocr_calls": self.ocr_calls,
            "seconds": round(self.seconds, 3),
        }


def ocr_video(
    path: str | Path,
    settings: VideoOcrSettings = VideoOcrSettings(),
    *,
    pool: OcrPool | None = None,
    engine: str = "tesseract",
    lang: str = "eng",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VideoOcrResult:
    """Read the burned-in subtitles of one video.

    Frames are sampled at ``settings.fps`` and cropped to the region; caption text pixels
    are found in each crop and the OCR engine only runs when they differ from those of
    the last frame it read, in parallel threads. Pass ``pool`` to share engines across
    videos. Raises DataError for a missing or undecodable video.
    """
    started = time.perf_counter()
    path = Path(path)
    region: Region = parse_region(settings.region)
    info = video_info(path)
    own_pool = pool is None
    pool = pool or OcrPool(engine, lang, workers)
    calls_before = pool.calls
    try:
        # Each sample refers to the future of the OCR call that read its caption (None: no text).
        samples: list[object] = []
        times: list[float] = []
        captions: list[int | None] = []
        caption = 0
        last_mask = last_future = None
        # New text waits until it has been seen on ``needed`` samples in a row: scenery
        # that moves (a dog, a passing car) never holds still that long, a subtitle does.
        needed = max(1, int(settings.min_cue_seconds * settings.fps))
        pending: list[int] = []
        pending_mask = None
        retries = 0
        expected = max(1, int(info.duration * settings.fps) + 1)
        for n, frame in enumerate(sample_frames(path, settings.fps), start=1):
            crop = region.crop(frame.image)
            layer = find_text(crop, frame.image.shape[0], settings.text)
            times.append(frame.time)
            samples.append(None)
            captions.append(None)
            unchanged = last_future is not None and not text_changed(layer.mask, last_mask, settings.change_tolerance)
            if layer.empty:
                last_mask = last_future = None
                pending = []
            elif settings.skip_unchanged and unchanged and not (
                retries < settings.retries and last_future.done() and _unsure(last_future.result(), settings)
            ):
                samples[-1] = last_future
                captions[-1] = caption
            elif unchanged:
                # Same caption, but its reading was unsure (scenery showing through the
                # letters on that frame): read this frame again.
                retries += 1
                last_future = pool.submit(_image_for(pool, crop, layer))
                samples[-1] = last_future
                captions[-1] = caption
            else:
                if not (pending and not text_changed(layer.mask, pending_mask, settings.change_tolerance)):
                    pending, pending_mask = [], layer.mask
                pending.append(len(samples) - 1)
                last_mask = last_future = None
                if len(pending) >= needed:
                    # The newest frame of the run: it has just proved the caption stable.
                    last_future, last_mask, retries = pool.submit(_image_for(pool, crop, layer)), pending_mask, 0
                    caption += 1
                    for index in pending:
                        samples[index] = last_future
                        captions[index] = caption
                    pending = []
            if progress is not None:
                progress(n, max(n, expected))
        readings = [
            Sample(t, f.result() if f is not None else None, c) for t, f, c in zip(times, samples, captions)
        ]
    finally:
        if own_pool:
            pool.close()
    duration = info.duration or (times[-1] + 1.0 / settings.fps if times else 0.0)
    cues = merge_readings(readings, 1.0 / settings.fps, duration, settings.cues)
    return VideoOcrResult(path, cues, duration, len(samples), pool.calls - calls_before, time.perf_counter() - started)


def _image_for(pool: OcrPool, crop, layer):
    return ocr_image(crop, layer) if pool.wants_binary else crop.copy()


def _unsure(reading: Reading, settings: VideoOcrSettings) -> bool:
    return reading.confidence < settings.cues.min_confidence
