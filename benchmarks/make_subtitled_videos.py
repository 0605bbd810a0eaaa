"""Make benchmark videos with burned-in subtitles whose text and timing we know.

Subtitles are written as SRT files and burned in with ffmpeg's ``subtitles`` filter
(libass, the renderer players use), over real footage (the two clips in
../shared/data/video, looped), over ffmpeg's ``testsrc2`` (moving colours and its own
text: a hard background) and over a plain colour.

Two sets (``--set``):

- ``classic`` (the default, as before): 640x360 backgrounds and the real clips at their
  own size, our own lines with about a third of the cues shorter than 1.5 s, covering
  under a third of each video.
- ``default-style``: what users meet. ffmpeg's *default* subtitle style (no forced font
  or size: libass's Arial, whatever fontconfig maps it to, at the size libass scales to
  the frame: a cap height of about 11 px at 270 lines) at 480x270, 640x360 and
  1280x720; two-line cues, one-word cues, sub-second cues (0.6-0.95 s) and italic lines
  (``<i>`` in the SRT); and a subtitle file written by people (benchmarks/data/, with
  its source and licence), its long gaps shortened so the film's cues fit in ~100 s.

    python benchmarks/make_subtitled_videos.py OUT_DIR [--set classic|default-style|all] [--seconds 180] [--seed 0]

Writes NAME.mp4 and NAME.srt (the reference, ``<i>`` tags included) for each video.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
from pathlib import Path

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
HUMAN_SRT = Path(__file__).resolve().parent / "data"

# Our own lines, so their text is known exactly; typical subtitle vocabulary and punctuation.
LINES = [
    "Where did you put the keys?", "I left them on the kitchen table.", "We need to leave in five minutes.",
    "That is not what I said.", "Are you coming with us tonight?", "Nobody told me about the meeting.",
    "It was raining all day in Boston.", "Turn left at the second light.", "She won the race by two seconds!",
    "Can you hear me now?", "The train leaves at 7:45.", "I have never seen anything like it.",
    "Stop right there.", "Thank you, that helps a lot.", "Let's try that again from the top.",
    "Everyone out of the water!", "He said the bridge was closed.", "Keep your eyes on the ball.",
    "What time does the shop open?", "This is the best day ever.", "Don't forget your coat.",
    "The lift is heavier than last year.", "Breathe in, and push.", "We are almost there.",
    "Who ordered the pizza?", "Please wait outside for a moment.", "I will call you tomorrow morning.",
    "Look at the size of that wave!", "No, the other one.", "Ready when you are.", "Hold on tight.",
    "The score is three to one.", "Give me one more chance.", "It only costs 20 dollars.",
    "Watch your step on the stairs.", "Yes.", "Okay, let's go!", "Run!", "Why not?", "Good morning, everyone.",
]
SECOND_LINES = [
    "and then we went home.", "but nobody listened.", "just like last time.", "before it gets dark.",
    "if you really want to.", "or we will be late again.",
]


def make_srt(seconds: float, rng: random.Random, coverage: float = 0.3) -> str:
    """Random cues (0.6 to 3.5 s, some two-line) covering about ``coverage`` of the time."""
    blocks, t, n = [], rng.uniform(0.5, 2.0), 1
    while True:
        length = rng.choice([rng.uniform(0.6, 1.4), rng.uniform(1.5, 3.5), rng.uniform(1.5, 3.5)])
        if t + length > seconds - 0.5:
            break
        text = rng.choice(LINES)
        if rng.random() < 0.2:
            text += "\n" + rng.choice(SECOND_LINES)
        blocks.append(f"{n}\n{_ts(t)} --> {_ts(t + length)}\n{text}\n")
        n += 1
        # Gaps sized so subtitles cover about ``coverage`` of the video on average.
        t += length + rng.uniform(0.3, 2 * 2.2 * (1 - coverage) / coverage - 0.3)
    return "\n".join(blocks)


ONE_WORD = ["Yes.", "Run!", "No.", "Wait!", "Scales?", "Hey.", "So...", "Thanks.", "Why?", "Sorry."]


def make_rich_srt(seconds: float, rng: random.Random, coverage: float = 0.4) -> str:
    """Random cues with the cases real subtitles have: a fifth one word long, a fifth
    shown under a second (0.6-0.95 s), a fifth on two lines, a fifth in italics."""
    blocks, t, n = [], rng.uniform(0.5, 1.5), 1
    while True:
        kind = rng.random()
        length = rng.uniform(0.6, 0.95) if kind < 0.2 else rng.uniform(1.2, 3.5)
        if t + length > seconds - 0.5:
            break
        text = rng.choice(ONE_WORD) if rng.random() < 0.2 else rng.choice(LINES)
        if 0.2 <= kind < 0.4:
            text += "\n" + rng.choice(SECOND_LINES)
        if rng.random() < 0.2:
            lines = text.split("\n")
            # Italics on the whole cue, or (two-line cues) on its second line only.
            text = "\n".join(lines[:-1] + [f"<i>{lines[-1]}</i>"]) if len(lines) > 1 and rng.random() < 0.5 else f"<i>{text}</i>"
        blocks.append(f"{n}\n{_ts(t)} --> {_ts(t + length)}\n{text}\n")
        n += 1
        t += length + rng.uniform(0.3, 2 * 2.0 * (1 - coverage) / coverage - 0.3)
    return "\n".join(blocks)


def human_srt(path: Path, max_gap: float = 2.0, lead: float = 1.0) -> str:
    """A subtitle file written by people with its gaps longer than ``max_gap`` shortened
    to it (cue texts and lengths unchanged), starting ``lead`` seconds in."""
    from mmtk.ocr.writers import parse_srt

    blocks, t, previous_end = [], lead, None
    for n, cue in enumerate(parse_srt(path.read_text(encoding="utf-8")), start=1):
        if previous_end is not None:
            t += min(cue.start - previous_end, max_gap)
        blocks.append(f"{n}\n{_ts(t)} --> {_ts(t + cue.end - cue.start)}\n{cue.text}\n")
        t += cue.end - cue.start
        previous_end = cue.end
    return "\n".join(blocks)


def _ts(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def backgrounds(seconds: float) -> dict[str, list[str]]:
    """ffmpeg input arguments for each background."""
    found = {
        "plain": ["-f", "lavfi", "-i", f"color=c=0x30506a:size=640x360:rate=25:duration={seconds}"],
        "testsrc2": ["-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}"],
    }
    for clip in sorted(SHARED_VIDEO.glob("*.mp4")):
        found[f"real-{clip.stem}"] = ["-stream_loop", "-1", "-t", str(seconds), "-i", str(clip)]
    return found


def _source(background: str, size: str, seconds: float) -> tuple[list[str], str]:
    """ffmpeg input arguments and the filter that brings the picture to ``size``."""
    width, height = size.split("x")
    if background in ("plain", "testsrc2"):
        source = "color=c=0x30506a:" if background == "plain" else "testsrc2="
        return ["-f", "lavfi", "-i", f"{source}size={size}:rate=25:duration={seconds}"], ""
    clip = next(SHARED_VIDEO.glob(f"*{background.removeprefix('real-')}*.mp4"))
    # Fill the frame (the clips are 4:3) and crop the overflow: no black bars.
    fit = f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},"
    return ["-stream_loop", "-1", "-t", str(seconds), "-i", str(clip)], fit


# (background, size, subtitles) of the default-style set: every size over real footage
# and testsrc2, the film's subtitles over both, and a plain control.
DEFAULT_STYLE_VIDEOS = [
    ("real-ZNV", "480x270", "rich"),
    ("real-GGSY", "640x360", "rich"),
    ("real-ZNV", "1280x720", "rich"),
    ("testsrc2", "480x270", "rich"),
    ("testsrc2", "640x360", "sintel"),
    ("real-GGSY", "480x270", "sintel"),
    ("testsrc2", "1280x720", "rich"),
    ("plain", "640x360", "rich"),
]


def make_default_style(out: Path, seconds: float, rng: random.Random) -> None:
    for background, size, subtitles in DEFAULT_STYLE_VIDEOS:
        name = f"ds-{background}-{size}-{subtitles}"
        srt = out / f"{name}.srt"
        text = human_srt(HUMAN_SRT / "sintel_en.srt") if subtitles == "sintel" else make_rich_srt(seconds, rng)
        srt.write_text(text, encoding="utf-8")
        length = seconds if subtitles == "rich" else _srt_end(text) + 1.5
        inputs, fit = _source(background, size, length)
        burn(inputs, srt, out / f"{name}.mp4", length, prefilter=fit)
        print(f"wrote {out / name}.mp4")


def _srt_end(text: str) -> float:
    from mmtk.ocr.writers import parse_srt

    return max(cue.end for cue in parse_srt(text))


def burn(inputs: list[str], srt: Path, out: Path, seconds: float, prefilter: str = "", style: str = "") -> None:
    # ``style``: libass force_style ("" keeps ffmpeg's default subtitle style).
    burn_filter = f"{prefilter}subtitles={srt}" + (f":force_style='{style}'" if style else "")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *inputs, "-t", str(seconds), "-vf", burn_filter, "-an",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", choices=["classic", "default-style", "all"], default="classic", dest="which")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed: sudo apt-get install ffmpeg")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    if args.which in ("default-style", "all"):
        make_default_style(args.out, args.seconds, random.Random(args.seed))
    if args.which == "default-style":
        return
    for name, inputs in backgrounds(args.seconds).items():
        srt = args.out / f"{name}.srt"
        srt.write_text(make_srt(args.seconds, rng), encoding="utf-8")
        burn(inputs, srt, args.out / f"{name}.mp4", args.seconds)
        print(f"wrote {args.out / name}.mp4")


if __name__ == "__main__":
    main()
