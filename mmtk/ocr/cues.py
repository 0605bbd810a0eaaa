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
    min_confidence: float = 72.0  # readings below this end a cue instead of extending it
    similarity: float = 0.8  # readings at least this similar are the same subtitle (OCR noise)
    min_chars: int = 2  # letters or digits a reading needs to count as text
    max_seconds: float = 12.0  # longer unchanged text is scenery (signs, logos), not a subtitle


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


def _best_text(readings: list[Reading]) -> tuple[str, float]:
    # Several frames of one cue read slightly differently; the text read most often (and
    # most confidently) is the most likely right one.
    votes: dict[str, list[Reading]] = defaultdict(list)
    for reading in readings:
        votes[normalise(reading.text)].append(reading)
    winner = max(votes.values(), key=lambda rs: (len(rs), sum(r.confidence for r in rs)))
    best = max(winner, key=lambda r: r.confidence)
    return best.text, sum(r.confidence for r in winner) / len(winner)


def merge_readings(
    samples: list[tuple[float, Reading | None]], interval: float, duration: float | None = None,
    settings: CueSettings = CueSettings(),
) -> list[Cue]:
    """Cues from ``(time, reading)`` samples taken every ``interval`` seconds.

    Consecutive similar readings form one cue; an empty, unreadable or low-confidence
    sample ends it. A cue starts and ends half an interval beyond its first and last
    sample, the expected position of the true change between two samples.
    """
    cues: list[Cue] = []
    group: list[tuple[float, Reading]] = []

    def close() -> None:
        if not group:
            return
        text, confidence = _best_text([r for _, r in group])
        start = max(0.0, group[0][0] - interval / 2)
        end = group[-1][0] + interval / 2
        if duration is not None:
            end = min(end, duration)
        if end - start <= settings.max_seconds:
            cues.append(Cue(start, end, text, confidence))
        group.clear()

    for time, reading in samples:
        if not _usable(reading, settings):
            close()
            continue
        if group and similar(reading.text, group[-1][1].text) < settings.similarity:
            close()
        group.append((time, reading))
    close()
    return cues
