"""Turn per-frame readings into subtitle cues with start and end times."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import asdict, dataclass

from mmtk.ocr.engines.base import Reading


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str
    confidence: float  # 0-100, mean over the frames that agreed with ``text``

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CueSettings:
    min_confidence: float = 60.0  # readings below this end a cue instead of extending it
    similarity: float = 0.8  # readings at least this similar are the same subtitle (OCR noise)
    min_chars: int = 2  # letters or digits a reading needs to count as text
    max_seconds: float = 12.0  # longer unchanged text is scenery (signs, logos), not a subtitle
    # Shorter text is scenery passing through (a sign seen for a frame or two): subtitles
    # stay up 0.5 s or more, and their edges are placed within a frame or two. All five
    # one-frame cues of the default-style benchmark ("we", "af", "WAL") lasted 0.07-0.33 s.
    min_seconds: float = 0.4
    # Near-identical cues at most this many sampling intervals apart are one cue whose
    # caption went unseen on a frame or two (two subtitles of the same words shown
    # within that time of each other merge too: rare, and the cheaper error).
    max_gap: float = 1.5


def normalise(text: str) -> str:
    """Lower-case, single-spaced text for comparing readings."""
    return " ".join(text.lower().split())


def similar(a: str, b: str) -> float:
    """0-1 similarity of two readings (difflib ratio on normalised text)."""
    return difflib.SequenceMatcher(None, normalise(a), normalise(b), autojunk=False).ratio()


def _usable(reading: Reading | None, settings: CueSettings) -> bool:
    return (
        reading is not None
        and reading.confidence >= settings.min_confidence
        and len(re.findall(r"\w", reading.text)) >= settings.min_chars
    )


def _without_stray_lines(reading: Reading, settings: CueSettings) -> Reading:
    """The reading without lines of less than ``min_chars`` letters or digits: specks of
    scenery above or below a caption come back as lines such as ">, « . .", which no
    subtitle line is."""
    lines = [line for line in reading.text.splitlines() if len(re.findall(r"\w", line)) >= settings.min_chars]
    return reading if len(lines) == len(reading.text.splitlines()) else Reading("\n".join(lines), reading.confidence)


def _best_text(readings: list[Reading]) -> tuple[str, float]:
    # Several frames of one cue read slightly differently; the text closest to all the
    # readings (a soft majority: each reading votes for every text by its similarity to
    # it) is the most likely right one. With three different misreadings of a small
    # caption ("Seales", "Scales", "Scalcs") the one in the middle wins, where a plain
    # count would fall back on Tesseract's confidence.
    votes: dict[str, list[Reading]] = defaultdict(list)
    for reading in readings:
        votes[normalise(reading.text)].append(reading)

    def support(text: str) -> tuple[float, float]:
        agreement = sum(len(rs) * (1.0 if other == text else similar(text, other)) for other, rs in votes.items())
        return agreement, sum(r.confidence for r in votes[text])

    winner = votes[max(votes, key=support)]
    best = max(winner, key=lambda r: r.confidence)
    return best.text, sum(r.confidence for r in winner) / len(winner)


@dataclass(frozen=True)
class Sample:
    """One sampled frame: its time, what was read, and which caption it showed (frames
    the pixel test found unchanged share a caption number; None: no caption)."""

    time: float
    reading: Reading | None
    caption: int | None = None
    # When what this frame shows appeared and went away, where the frames between
    # samples placed it; None: half a sampling interval either side.
    begins: float | None = None
    ends: float | None = None


def merge_readings(
    samples: list[Sample], interval: float, duration: float | None = None, settings: CueSettings = CueSettings()
) -> list[Cue]:
    """Cues from samples taken every ``interval`` seconds.

    Frames showing one caption (by the pixel test) form one cue, read as the text most
    frames agreed on; consecutive captions whose readings are near-identical (OCR noise,
    a flicker of the pixel test) merge too. A sample without usable text (empty,
    unreadable, low confidence) ends a cue, but two cues of near-identical text at most
    ``settings.max_gap`` sampling intervals apart are one: on moving footage a frame or
    two where the caption was not found split it. A cue starts and ends half an interval
    beyond its first and last sample, the expected place of the change between two samples,
    unless the samples carry more precise times (``Sample.begins``/``ends``).
    """
    runs: list[tuple[float, float, list[Reading]]] = []  # (start, end, usable readings)
    group: list[Sample] = []

    def close() -> None:
        usable = [_without_stray_lines(s.reading, settings) for s in group if _usable(s.reading, settings)]
        if usable:
            first, last = group[0], group[-1]
            start = max(0.0, first.time - interval / 2 if first.begins is None else first.begins)
            end = last.time + interval / 2 if last.ends is None else last.ends
            if duration is not None:
                end = min(end, duration)
            runs.append((start, end, usable))
        group.clear()

    for sample in samples:
        same_caption = bool(group) and sample.caption is not None and sample.caption == group[-1].caption
        if same_caption:
            group.append(sample)
            continue
        if not _usable(sample.reading, settings):
            close()
            if sample.caption is not None:
                group.append(sample)  # a caption read badly here may still be read on a later frame
            continue
        last = next((s.reading for s in reversed(group) if _usable(s.reading, settings)), None)
        if last is None or similar(sample.reading.text, last.text) < settings.similarity:
            close()
        group.append(sample)
    close()
    cues = []
    for start, end, readings in _join_interrupted(runs, settings.max_gap * interval, settings):
        if settings.min_seconds <= end - start <= settings.max_seconds:
            cues.append(Cue(start, end, *_best_text(readings)))
    return cues


def _join_interrupted(runs, max_gap: float, settings: CueSettings):
    """Runs of near-identical text separated by at most ``max_gap`` seconds, joined."""
    joined: list[tuple[float, float, list[Reading]]] = []
    for start, end, readings in runs:
        if joined and start - joined[-1][1] <= max_gap:
            previous = joined[-1]
            if similar(_best_text(previous[2])[0], _best_text(readings)[0]) >= settings.similarity:
                joined[-1] = (previous[0], end, previous[2] + readings)
                continue
        joined.append((start, end, readings))
    return joined
