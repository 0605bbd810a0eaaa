"""Regions, cue merging, cue files, scoring and change detection: no OCR engine needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmtk.errors import UsageError
from mmtk.ocr.change import text_changed
from mmtk.ocr.cues import Cue, CueSettings, Sample, merge_readings
from mmtk.ocr.engines import ENGINES, Reading, create_engine
from mmtk.ocr.regions import parse_region
from mmtk.ocr.scoring import cer, score_cues
from mmtk.ocr.writers import parse_srt, render, to_srt, to_vtt


def test_named_regions_and_pixel_rectangles():
    frame = np.zeros((300, 400, 3), np.uint8)
    assert parse_region("lower-half").box(400, 300) == (0, 150, 400, 300)
    assert parse_region("lower-third").box(400, 300) == (0, 200, 400, 300)
    assert parse_region("full").crop(frame).shape == (300, 400, 3)
    assert parse_region("10,20,100,50").crop(frame).shape == (50, 100, 3)
    # A rectangle reaching past the frame is clipped, not an error.
    assert parse_region("350,250,100,100").box(400, 300) == (350, 250, 400, 300)


@pytest.mark.parametrize("spec", ["bottom", "1,2,3", "a,b,c,d", "0,0,0,10", "-1,0,5,5"])
def test_bad_region_is_a_usage_error_with_the_choices(spec):
    with pytest.raises(UsageError) as info:
        parse_region(spec)
    assert spec in str(info.value) and "lower-half" in str(info.value)


def R(text, confidence=90.0):
    return Reading(text, confidence)


def test_consecutive_and_near_identical_readings_merge_into_one_cue():
    samples = [
        Sample(0.0, None), Sample(1.0, R("Hello there")), Sample(2.0, R("Hel1o there")), Sample(3.0, R("Hello there")),
        Sample(4.0, None), Sample(5.0, R("Goodbye now")), Sample(6.0, R("Something else entirely")),
    ]
    cues = merge_readings(samples, interval=1.0, duration=7.0)
    assert [c.text for c in cues] == ["Hello there", "Goodbye now", "Something else entirely"]
    # Boundaries half an interval beyond the first and last sample that showed the text.
    assert (cues[0].start, cues[0].end) == (0.5, 3.5)
    assert cues[2].end == 6.5


def test_edges_placed_between_samples_replace_the_half_interval_guess():
    samples = [Sample(0.0, None), Sample(1.0, R("Hello there"), 1, begins=0.12), Sample(2.0, R("Hello there"), 1, ends=2.9)]
    cues = merge_readings(samples, interval=1.0, duration=5.0)
    assert [(c.start, c.end) for c in cues] == [(0.12, 2.9)]


def test_empty_and_low_confidence_frames_end_a_cue():
    samples = [Sample(0.0, R("Same words")), Sample(1.0, R("Same words", 20.0)), Sample(2.0, None), Sample(3.0, R("Same words"))]
    cues = merge_readings(samples, 1.0, settings=CueSettings(min_confidence=60))
    assert [(c.start, c.end) for c in cues] == [(0.0, 0.5), (2.5, 3.5)]
    assert merge_readings([Sample(0.0, R("x")), Sample(1.0, R("  "))], 1.0) == []  # under min_chars


def test_a_caption_unseen_on_one_frame_stays_one_cue():
    # Moving footage hides a subtitle's letters on a frame now and then; the two halves
    # of the same words around that frame are one cue, a different text is not.
    samples = [Sample(0.0, R("Can you hear me now?")), Sample(0.5, None), Sample(1.0, R("Gan you hear me now?")),
               Sample(1.5, R("Can you hear me now?")), Sample(2.0, None), Sample(2.5, R("Something else"))]
    cues = merge_readings(samples, 0.5)
    assert [(c.start, c.end, c.text) for c in cues] == [(0.0, 1.75, "Can you hear me now?"), (2.25, 2.75, "Something else")]


def test_one_caption_stays_one_cue_even_when_a_frame_reads_differently():
    samples = [Sample(0.0, R("Why not?"), 1), Sample(0.25, R("Why new", 75), 1), Sample(0.5, R("Why not?"), 1)]
    cues = merge_readings(samples, 0.25)
    assert len(cues) == 1 and cues[0].text == "Why not?"


def test_text_that_stays_too_long_is_scenery():
    samples = [Sample(float(t), R("SHOP OPEN")) for t in range(30)]
    assert merge_readings(samples, 1.0, settings=CueSettings(max_seconds=12)) == []


def test_srt_and_vtt_round_trip_and_follow_the_formats():
    cues = [Cue(0.5, 2.25, "Hello there,\nhow are you?", 91.0), Cue(3661.001, 3662.0, "One hour later", 80.0)]
    srt = to_srt(cues)
    assert srt.startswith("1\n00:00:00,500 --> 00:00:02,250\nHello there,\nhow are you?\n\n2\n01:01:01,001 --> ")
    assert [(c.start, c.end, c.text) for c in parse_srt(srt)] == [(c.start, c.end, c.text) for c in cues]
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.250\n")
    lines = [json.loads(line) for line in render(cues, "jsonl", video="a.mp4").splitlines()]
    assert lines[0] == {"video": "a.mp4", "start": 0.5, "end": 2.25, "text": "Hello there,\nhow are you?", "confidence": 91.0}


def test_blank_lines_inside_cue_text_cannot_break_the_file():
    srt = to_srt([Cue(0, 1, "one\n\n\ntwo", 90)])
    assert parse_srt(srt)[0].text == "one\ntwo"


def test_character_error_rate():
    assert cer("hello", "hello") == 0
    assert cer("hello", "hallo") == pytest.approx(0.2)
    assert cer("two\nlines", "two lines") == 0  # line breaks count as spaces
    assert cer("abc", "") == 1


def test_cue_scoring_counts_recall_short_cues_spurious_and_boundaries():
    reference = [Cue(1, 3, "Hello there", 100), Cue(5, 6, "Quick", 100), Cue(8, 10, "Missed one", 100)]
    found = [Cue(1.2, 3.1, "Hello there", 90), Cue(5.1, 5.9, "Quick", 90), Cue(20, 21, "junk", 90)]
    score = score_cues(reference, found)
    assert (score.found, score.references, score.short_found, score.short_references) == (2, 3, 1, 1)
    assert score.spurious == 1
    assert score.mean_cer == 0
    assert score.boundary_error == pytest.approx((0.15 + 0.1) / 2)


def test_change_detection_compares_text_pixels():
    base = np.zeros((40, 200), bool)
    base[10:30, 20:180:6] = True  # a row of letter strokes
    jittered = np.roll(base, 1, axis=1)  # compression noise moves edges by a pixel
    other = np.zeros_like(base)
    other[10:30, 23:150:9] = True  # another caption
    assert not text_changed(base, jittered)
    assert text_changed(base, other)
    assert text_changed(base, None) and text_changed(None, base)
    assert not text_changed(None, np.zeros_like(base))


def test_engine_registry_lists_both_engines_and_rejects_unknown_names():
    assert {"tesseract", "rapidocr"} <= set(ENGINES.names())
    with pytest.raises(UsageError) as info:
        create_engine("abbyy")
    assert "tesseract" in str(info.value)


class _FakePool:
    """Stands in for OcrPool: every submitted image reads as one caption, at once."""

    wants_binary = False

    def __init__(self, confidence: float = 90.0):
        self.calls, self.confidence = 0, confidence

    def submit(self, image):
        from concurrent.futures import Future

        self.calls += 1
        future = Future()
        future.set_result(Reading("Hold on tight.", self.confidence))
        return future


def _caption(columns: slice, letter_height: float = 20.0):
    from mmtk.ocr.textmask import TextLayer

    mask = np.zeros((40, 200), bool)
    mask[10:30, columns] = True
    return TextLayer(mask=mask, letter_height=letter_height, lines=[(20, 10, 180, 30)])


def _track(layers, fps: float, pool: _FakePool):
    from mmtk.ocr.video import VideoOcrSettings, _CaptionTracker

    tracker = _CaptionTracker(pool, VideoOcrSettings(fps=fps))
    crop = np.zeros((40, 200, 3), np.uint8)
    for n, layer in enumerate(layers):
        tracker.observe(n / fps, crop, layer)
    return tracker.samples()


def test_a_frame_whose_text_pixels_flicker_stays_with_its_caption():
    # At 4 fps new text waits for a second frame; a lone odd frame between two frames
    # of one caption used to stay unread and split the cue in two.
    caption, flicker = _caption(slice(20, 180, 6)), _caption(slice(23, 150, 9))
    pool = _FakePool()
    samples = _track([caption, caption, caption, flicker, caption, caption], fps=4, pool=pool)
    assert [s.caption for s in samples] == [1] * 6 and pool.calls == 1
    assert len(merge_readings(samples, 0.25)) == 1


def test_small_captions_are_read_again_for_the_vote_and_large_ones_once():
    large, small = _FakePool(), _FakePool()
    _track([_caption(slice(20, 180, 6))] * 5, fps=2, pool=large)
    _track([_caption(slice(20, 180, 6), letter_height=8.0)] * 5, fps=2, pool=small)
    assert large.calls == 1 and small.calls == 3  # 1 + VideoOcrSettings.retries


def test_a_cue_takes_the_reading_closest_to_all_its_readings():
    # Three different misreadings of one caption: none is a majority, and the most
    # confident is wrong; the one the others are closest to is right.
    samples = [Sample(0.0, R("Seales?", 96), 1), Sample(0.5, R("Scales?", 80), 1), Sample(1.0, R("Scalcs?", 85), 1)]
    assert merge_readings(samples, 0.5)[0].text == "Scales?"
    # A plain majority still wins.
    samples = [Sample(0.0, R("Hold on tight", 80), 1), Sample(0.5, R("Hold on tight", 80), 1), Sample(1.0, R("Hol on tight", 95), 1)]
    assert merge_readings(samples, 0.5)[0].text == "Hold on tight"


def test_text_seen_for_a_moment_is_scenery_and_stray_lines_are_dropped():
    # A sign caught on one sample, its edges placed 0.2 s apart: no subtitle is that short.
    flash = [Sample(0.0, None), Sample(0.5, R("WAL"), 1, begins=0.4, ends=0.6), Sample(1.0, None)]
    assert merge_readings(flash, 0.5) == []
    # Specks of scenery above a caption read as a line of punctuation.
    samples = [Sample(0.0, R(">, « . .\nPlease wait outside."), 1), Sample(0.5, R(">, « . .\nPlease wait outside."), 1)]
    assert [c.text for c in merge_readings(samples, 0.5)] == ["Please wait outside."]
