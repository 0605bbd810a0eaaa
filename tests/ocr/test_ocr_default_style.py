"""Subtitles at ffmpeg's default style (no forced font or size: small letters in
whatever font libass maps Arial to) over generated backgrounds: small captions, italics,
one-word and sub-second cues, a pale moving background, and cue edges there."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.ocr.scoring import score_cues
from mmtk.ocr.video import VideoOcrSettings, ocr_video
from mmtk.ocr.writers import parse_srt

# A one-word cue, a sub-second cue, a two-line cue with an italic second line.
SRT = """1
00:00:00,500 --> 00:00:02,000
Where did you put the keys?

2
00:00:02,500 --> 00:00:03,300
Run!

3
00:00:03,800 --> 00:00:05,500
The lift is heavier than last year.
<i>but nobody listened.</i>
"""
REFERENCE = parse_srt(SRT.replace("<i>", "").replace("</i>", ""))
# Pale grey with fresh noise on every frame: bright, busy and moving behind the letters.
PALE_NOISE = "color=c=0xC8C8C8:size=480x270:rate=25:duration=6,noise=alls=60:allf=t+u"


@pytest.fixture
def default_style(tmp_path, ffmpeg_subtitles, tesseract):
    def make(background: str):
        return ffmpeg_subtitles(tmp_path / "clip.mp4", SRT, seconds=6, background=background, style=None)

    return make


@pytest.mark.parametrize("background", ["testsrc2", PALE_NOISE], ids=["testsrc2", "pale-noise"])
def test_small_default_style_captions_with_italics_are_read(default_style, background):
    # 480x270 at the default style: capitals about 10 px tall.
    result = ocr_video(default_style(background), workers=1)
    score = score_cues(REFERENCE, result.cues)
    assert score.recall == 1.0 and score.spurious == 0, result.cues
    assert score.mean_cer <= 0.03, result.cues


@pytest.mark.parametrize("fps", [2.0, 4.0])
def test_cue_edges_on_a_moving_background_stay_put_and_cues_stay_whole(default_style, fps):
    # The background changes on every frame, so the text pixels found differ from frame
    # to frame; a cue must neither end early, start late, nor split in two.
    result = ocr_video(default_style(PALE_NOISE), VideoOcrSettings(fps=fps), workers=1)
    assert len(result.cues) == len(REFERENCE), result.cues
    score = score_cues(REFERENCE, result.cues)
    assert score.recall == 1.0
    assert max(score.edge_errors) <= 0.25, (result.cues, score.edge_errors)


def test_letter_height_is_not_dragged_down_by_fragments():
    from mmtk.ocr.textmask import _letter_height

    # Eight 11 px letters and eighty 1 px fragments of letters over pale scenery.
    heights = np.array([11] * 8 + [1] * 80)
    areas = np.array([44] * 8 + [1] * 80)
    assert _letter_height(heights, areas, [(0, 0, 100, 14)]) == 11
