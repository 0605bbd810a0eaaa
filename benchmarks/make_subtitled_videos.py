"""Make benchmark videos with burned-in subtitles whose text and timing we know.

Subtitles are written as SRT files and burned in with ffmpeg's ``subtitles`` filter
(libass, the renderer players use), over real footage (the two clips in
../shared/data/video, looped), over ffmpeg's ``testsrc2`` (moving colours and its own
text: a hard background) and over a plain colour. Subtitles cover under a third of each
video, and about a third of the cues are shorter than 1.5 s.

    python benchmarks/make_subtitled_videos.py OUT_DIR [--seconds 180] [--seed 0]

Writes NAME.mp4 and NAME.srt (the reference) for each background.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
from pathlib import Path

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"

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


def burn(inputs: list[str], srt: Path, out: Path, seconds: float) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *inputs, "-t", str(seconds), "-vf", f"subtitles={srt}", "-an",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed: sudo apt-get install ffmpeg")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    for name, inputs in backgrounds(args.seconds).items():
        srt = args.out / f"{name}.srt"
        srt.write_text(make_srt(args.seconds, rng), encoding="utf-8")
        burn(inputs, srt, args.out / f"{name}.mp4", args.seconds)
        print(f"wrote {args.out / name}.mp4")


if __name__ == "__main__":
    main()
