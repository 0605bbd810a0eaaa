"""Burned-in subtitles of a video as timed cues."""

from __future__ import annotations

import time
from contextlib import contextmanager
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mmtk.ocr.change import SAME_TEXT_TOLERANCE, text_changed
from mmtk.ocr.cues import Cue, CueSettings, Sample, merge_readings
from mmtk.ocr.frames import sample_frames, video_info
from mmtk.ocr.pool import OcrPool
from mmtk.ocr.regions import Region, parse_region
from mmtk.ocr.textmask import TextLayer, TextSettings, find_text, ocr_image, text_blocks


# Captions with capitals under this height (pixels in the frame; 8 px in 240-line video,
# 12 px in 360-line) are misread now and then even upscaled (a dropped period, "1s" for
# "is"), differently on each frame, so they are read more than once and voted on.
SMALL_LETTER_PX = 10
# Frames taller than this are scaled down first. Measured on the two 1280x720 videos of
# the default-style benchmark (load average ~8): full size CER 0.022/0.004 at 0.096/0.079
# CPU s per video s, 480 rows 0.009/0.000 at 0.079/0.070, 360 rows 0.015/0.013 at
# 0.068/0.047; decoding alone is ~0.035 of it.
MAX_LINES = 480


@dataclass(frozen=True)
class VideoOcrSettings:
    # Two samples a second see every subtitle shown for 0.5 s or more; the frames between
    # samples then place its edges (see _place_change).
    fps: float = 2.0
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
    # Taller frames are scaled down to this many rows before anything else: captions
    # scale with the frame, so 720p letters are still ~17 px tall at 480 rows, and
    # finding them costs less than half. None: full size.
    max_lines: int | None = MAX_LINES


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
        with _single_threaded_opencv():
            readings = _follow_captions(path, region, settings, _CaptionTracker(pool, settings), info, progress)
    finally:
        if own_pool:
            pool.close()
    duration = info.duration or (readings[-1].time + 1.0 / settings.fps if readings else 0.0)
    cues = merge_readings(readings, 1.0 / settings.fps, duration, settings.cues)
    return VideoOcrResult(path, cues, duration, len(readings), pool.calls - calls_before, time.perf_counter() - started)


def _follow_captions(path: Path, region: Region, settings: VideoOcrSettings, tracker, info, progress) -> list[Sample]:
    """Every sampled frame through the tracker; caption changes placed between samples."""
    expected = max(1, int(info.duration * settings.fps) + 1)
    previous: tuple[float, TextLayer] | None = None
    for n, frame in enumerate(sample_frames(path, settings.fps, settings.max_lines), start=1):
        crop = region.crop(frame.image)
        layer = find_text(crop, frame.image.shape[0], settings.text)
        tracker.observe(frame.time, crop, layer)
        if previous is not None and tracker.changed(layer.mask, previous[1].mask):
            edges = _place_change(previous, (frame.time, layer), frame.between, region, settings, tracker.changed)
            tracker.place_change(*edges)
        previous = (frame.time, layer)
        if progress is not None:
            progress(n, max(n, expected))
    return tracker.samples()


@contextmanager
def _single_threaded_opencv():
    # OpenCV's own threads cost ~45% more CPU than they save on caption-sized crops,
    # and the OCR workers and the decoder already keep the cores busy.
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _place_change(
    previous, current, between, region: Region, settings: VideoOcrSettings, changed: Callable
) -> tuple[float, float]:
    """(when the previous sample's text went away, when the current sample's appeared),
    found by bisecting the frames decoded between the two samples with the pixel test
    (no OCR): a few cheap tests give cue edges within a video frame or two instead of
    half a sampling interval. Text held between the samples is assumed to change once
    (twice when one caption gives way to another with a gap between them)."""
    layers: dict[int, TextLayer] = {}

    def layer_at(i: int) -> TextLayer:
        if i not in layers:
            image = between[i].image(settings.max_lines)
            layers[i] = find_text(region.crop(image), image.shape[0], settings.text)
        return layers[i]

    def first(shows_new) -> int:
        # Smallest index of ``between`` (len: none) from which ``shows_new`` holds.
        lo, hi = -1, len(between)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if shows_new(mid) else (mid, hi)
        return hi

    times = [previous[0], *(f.time for f in between), current[0]]

    def midpoint(index: int) -> float:  # between the last frame before ``index`` and it
        return (times[index] + times[index + 1]) / 2

    # Only the caption's own box is compared: scenery that passes for text elsewhere in
    # the region (moving footage) changes from frame to frame and made the pixel test
    # fire between two frames of one caption, placing a 0.66 s cue at 0.27 s.
    old, new = previous[1], current[1]
    if not old.empty:
        old_box = _caption_box(old)
        gone = first(lambda i: changed(layer_at(i).mask & old_box, old.mask & old_box))
    if not new.empty:
        new_box = _caption_box(new)
        appeared = first(lambda i: not changed(layer_at(i).mask & new_box, new.mask & new_box))
    if old.empty:
        return midpoint(appeared), midpoint(appeared)
    if new.empty:
        return midpoint(gone), midpoint(gone)
    return midpoint(gone), midpoint(appeared)


def _caption_box(layer: TextLayer):
    """The pixels of the lowest block of text lines (subtitles sit at the bottom of
    the region, scenery anywhere), with half a letter's margin."""
    import numpy as np

    block = text_blocks(layer)[-1]
    margin = int(round(layer.letter_height / 2)) + 1
    box = np.zeros(layer.mask.shape, dtype=bool)
    x0, y0 = max(0, min(b[0] for b in block) - margin), max(0, min(b[1] for b in block) - margin)
    box[y0 : max(b[3] for b in block) + margin, x0 : max(b[2] for b in block) + margin] = True
    return box


class _CaptionTracker:
    """Decides, frame by frame, whether the OCR engine has to run.

    Each sampled frame gets the future of the OCR call that reads its caption (None: no
    caption) and a caption number (frames the pixel test calls unchanged share one).
    """

    def __init__(self, pool: OcrPool, settings: VideoOcrSettings):
        self.pool, self.settings = pool, settings
        self.times: list[float] = []
        self.futures: list[Future | None] = []
        self.captions: list[int | None] = []
        self.begins: list[float | None] = []
        self.ends: list[float | None] = []
        self.caption = 0
        self.last_mask = self.last_future = None  # the caption last sent to OCR
        self.retries = 0
        # New text waits until it has been seen on ``needed`` samples in a row: scenery
        # that moves (a dog, a passing car) never holds still that long, a subtitle does.
        self.needed = max(1, int(settings.min_cue_seconds * settings.fps))
        self.pending: list[int] = []
        self.pending_mask = None
        # Samples without text since the last caption, and how many of them may pass
        # before it counts as gone (about half a second).
        self.blank: list[int] = []
        self.bridge = max(1, int(round(0.5 * settings.fps)))

    def changed(self, mask, reference) -> bool:
        """The pixel test: do two text masks hold different text?"""
        return text_changed(mask, reference, self.settings.change_tolerance)

    def place_change(self, old_ends: float, new_begins: float) -> None:
        """Precise times, between the last two samples, of the change of caption."""
        self.ends[-2], self.begins[-1] = old_ends, new_begins

    def observe(self, time: float, crop, layer: TextLayer) -> None:
        self.times.append(time)
        self.futures.append(None)
        self.captions.append(None)
        self.begins.append(None)
        self.ends.append(None)
        if layer.empty:
            # The caption may only be hidden on this frame (letters lost against pale
            # scenery): it is remembered for ``bridge`` samples, and frames between two
            # that show it count as showing it.
            self.blank.append(len(self.times) - 1)
            if len(self.blank) > self.bridge:
                self.last_mask = self.last_future = None
                self.blank = []
            self.pending = []
            return
        if self.last_future is not None and not self.changed(layer.mask, self.last_mask):
            # Frames whose text pixels flickered (a passing shadow) or vanished between
            # two frames of this caption still showed it; left unread they would split
            # its cue.
            for index in self.pending + self.blank:
                self.futures[index], self.captions[index] = self.last_future, self.caption
            self.pending, self.blank = [], []
            if self.settings.skip_unchanged and not self._unsure(layer):
                self.futures[-1], self.captions[-1] = self.last_future, self.caption
                return
            # Same caption, but its reading was unsure (scenery showing through the
            # letters on that frame, or letters too small to trust): read this frame
            # again; the cue takes the text most of its readings agree on.
            self.retries += 1
            self.last_future = self.pool.submit(self._image(crop, layer))
            self.futures[-1], self.captions[-1] = self.last_future, self.caption
            return
        self.blank = []
        if not self.pending or self.changed(layer.mask, self.pending_mask):
            self.pending, self.pending_mask = [], layer.mask
        self.pending.append(len(self.times) - 1)
        if len(self.pending) >= self.needed:
            # Read the newest frame of the run: it has just proved the caption stable.
            self.last_future, self.last_mask = self.pool.submit(self._image(crop, layer)), self.pending_mask
            self.caption += 1
            self.retries = 0
            for index in self.pending:
                self.futures[index], self.captions[index] = self.last_future, self.caption
            self.pending = []

    def _unsure(self, layer: TextLayer) -> bool:
        if self.retries >= self.settings.retries:
            return False
        if layer.letter_height < SMALL_LETTER_PX:
            return True
        # Only a finished reading is judged; waiting for it would stall decoding.
        return self.last_future.done() and self.last_future.result().confidence < self.settings.cues.min_confidence

    def _image(self, crop, layer: TextLayer):
        return ocr_image(crop, layer) if self.pool.wants_binary else crop.copy()

    def samples(self) -> list[Sample]:
        """Every sampled frame with its reading, once all OCR calls have finished."""
        return [
            Sample(t, f.result() if f is not None else None, c, b, e)
            for t, f, c, b, e in zip(self.times, self.futures, self.captions, self.begins, self.ends)
        ]
