"""Cue files: SubRip (.srt), WebVTT (.vtt) and JSON Lines with confidence."""

from __future__ import annotations

import json
from typing import Iterable

from mmtk.ocr.cues import Cue

FORMATS = ("srt", "vtt", "jsonl")


def _timestamp(seconds: float, separator: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _lines(text: str) -> str:
    # A blank line ends a cue in both SRT and VTT, so it must never appear inside one.
    return "\n".join(line for line in text.splitlines() if line.strip())


def to_srt(cues: Iterable[Cue]) -> str:
    blocks = [
        f"{n}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{_lines(c.text)}\n"
        for n, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    blocks = [
        # "-->" inside cue text would be read as a timing line.
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{_lines(c.text).replace('-->', '->')}\n"
        for c in cues
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_jsonl(cues: Iterable[Cue], **extra) -> str:
    return "".join(json.dumps({**extra, **c.to_dict()}, ensure_ascii=False) + "\n" for c in cues)


def render(cues: list[Cue], fmt: str, **extra) -> str:
    """Cues in ``fmt`` (srt, vtt or jsonl); ``extra`` fields go into every JSONL record."""
    if fmt == "srt":
        return to_srt(cues)
    if fmt == "vtt":
        return to_vtt(cues)
    if fmt == "jsonl":
        return to_jsonl(cues, **extra)
    raise ValueError(f"unknown cue format {fmt!r}")


_SRT_TIME = r"(\d+):(\d\d):(\d\d)[,.](\d{3})"


def parse_srt(text: str) -> list[Cue]:
    """Cues of a SubRip file (used to read reference subtitles and to check our output)."""
    import re

    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.splitlines()
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue
        times = re.findall(_SRT_TIME, lines[timing])
        if len(times) != 2:
            continue
        start, end = (int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in times)
        cues.append(Cue(start, end, "\n".join(lines[timing + 1 :]).strip(), 100.0))
    return cues
