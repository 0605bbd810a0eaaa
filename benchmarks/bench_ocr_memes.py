"""Meme caption OCR: character error rate and time per image, per engine.

    python benchmarks/bench_ocr_memes.py [--n 60] [--seed 0] [--keep DIR]
    python benchmarks/bench_ocr_memes.py --real DIR [--halves tune holdout]

``--real DIR`` scores real memes: a folder written by ``make_real_meme_set.py`` (images
and a manifest of their human-transcribed text, split into a tuning and a held-out
half). Without it, memes are rendered with Pillow:
classic white capitals with a black outline at the top and bottom (and a third of them
black text on a white banner above the picture) over real photographs (scikit-learn's
two sample photos and frames of the clips in ../shared/data/video, randomly cropped and
scaled) and over ffmpeg-like colour bars. Engines: ``tesseract-plain`` (grey full image,
no preprocessing: the usual baseline), ``tesseract`` (mmtk's caption preprocessing) and
``rapidocr`` when installed. CER compares case-folded text with whitespace runs as one
space, so lost word spaces count as errors; the "no spaces" columns drop all whitespace
from both sides. Seconds per image are wall time of one engine thread, after a first
reading that loads the models; CPU seconds are the process's (all threads), which a
busy shared machine inflates less than wall time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import numpy as np  # noqa: E402

from mmtk.ocr.images import read_image_text  # noqa: E402
from mmtk.ocr.pool import OcrPool  # noqa: E402
from mmtk.ocr.scoring import cer  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
CAPTIONS = [
    "when the wifi goes down", "nobody:", "me at 3 am", "one does not simply", "walk into mordor",
    "this is fine", "i have no idea what i am doing", "that moment when", "you realize it is monday",
    "y u no reply", "brace yourselves", "finals are coming", "not sure if tired", "or just lazy",
    "such wow", "very meme", "keep calm and carry on", "said no one ever", "i will find you",
    "and i will feed you", "first day at work", "last day before vacation", "my code works",
    "i have no idea why", "when you see it", "so you are telling me", "there is a chance",
]


def photos(rng: random.Random) -> list[np.ndarray]:
    """Real photographs (RGB) to put captions on."""
    import cv2
    from sklearn.datasets import load_sample_images

    images = list(load_sample_images().images)
    for clip in sorted(SHARED_VIDEO.glob("*.mp4")):
        capture = cv2.VideoCapture(str(clip))
        for index in range(0, 400, 40):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            if ok:
                images.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    bars = np.zeros((360, 640, 3), np.uint8)
    for i, colour in enumerate([(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0), (0, 0, 255)]):
        bars[:, i * 92 : (i + 1) * 92] = colour
    images.append(bars)
    return images


def render(photo: np.ndarray, top: str, bottom: str, banner: bool, rng: random.Random):
    """A meme as a PIL image: outlined white capitals top and bottom, or black text on a
    white banner above the picture."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = photo.shape[:2]
    side = rng.randint(360, 560)
    y0, x0 = rng.randint(0, max(0, h - min(h, w))), rng.randint(0, max(0, w - min(h, w)))
    square = Image.fromarray(photo[y0 : y0 + min(h, w), x0 : x0 + min(h, w)]).resize((side, side))
    if banner:
        font = ImageFont.truetype(FONT, size=side // 14)
        text = top + (" " + bottom if bottom else "")
        lines = _wrap(text, font, side - 20)
        line_h = font.getbbox("Ag")[3] + 6
        image = Image.new("RGB", (side, side + line_h * len(lines) + 20), "white")
        image.paste(square, (0, line_h * len(lines) + 20))
        draw = ImageDraw.Draw(image)
        for i, line in enumerate(lines):
            draw.text((10, 10 + i * line_h), line, font=font, fill="black")
        return image, "\n".join(lines)
    image = square
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, size=side // rng.choice([9, 11, 13]))
    stroke = max(2, font.size // 12)
    truth = []
    for text, at_top in ((top.upper(), True), (bottom.upper(), False)):
        if not text:
            continue
        lines = _wrap(text, font, side - 16)
        line_h = font.getbbox("AG")[3] + stroke * 2 + 4
        y = 8 if at_top else side - 8 - line_h * len(lines)
        for i, line in enumerate(lines):
            width = draw.textlength(line, font=font)
            draw.text(((side - width) / 2, y + i * line_h), line, font=font, fill="white", stroke_width=stroke, stroke_fill="black")
        truth.extend(lines)
    return image, "\n".join(truth)


def _wrap(text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and font.getlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def real_memes(folder: Path) -> list[tuple[str, str, np.ndarray, str]]:
    """(id, half, BGR pixels, reference text) of a set written by make_real_meme_set.py."""
    import csv

    import cv2

    with open(folder / "manifest.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [(row["id"], row["half"], cv2.imread(str(folder / row["file"]), cv2.IMREAD_COLOR), row["text"]) for row in rows]


def rendered_memes(n: int, seed: int, keep: Path | None) -> list[tuple[str, str, np.ndarray, str]]:
    rng = random.Random(seed)
    backgrounds = photos(rng)
    memes = []
    for k in range(n):
        top, bottom = rng.choice(CAPTIONS), rng.choice(CAPTIONS + [""])
        image, truth = render(rng.choice(backgrounds), top, bottom, banner=k % 3 == 2, rng=rng)
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            image.save(keep / f"meme{k:03d}.png")
        memes.append((f"meme{k:03d}", "rendered", np.asarray(image)[:, :, ::-1].copy(), truth))  # RGB -> BGR
    return memes


def no_spaces(text: str) -> str:
    return "".join(text.split())


def read(pool: OcrPool, label: str, image: np.ndarray):
    if label == "tesseract-plain":
        import cv2

        return pool.read(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    return read_image_text(image, pool)


def main() -> None:
    parser = argparse.ArgumentParser(description="Score OCR engines on rendered or real memes.")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="also save the rendered memes here")
    parser.add_argument("--real", type=Path, help="folder written by make_real_meme_set.py (manifest.csv + images)")
    parser.add_argument("--halves", nargs="+", default=["tune", "holdout"], help="halves of the real set to score")
    parser.add_argument("--engines", nargs="+", default=["tesseract-plain", "tesseract", "rapidocr"])
    parser.add_argument("--show", type=int, default=0, help="print the N worst readings per engine")
    args = parser.parse_args()
    if args.real is not None:
        if not (args.real / "manifest.csv").is_file():
            raise SystemExit(
                f"no real meme set at {args.real} (no manifest.csv): build one with "
                "benchmarks/make_real_meme_set.py from a clone of github.com/Gitanjali1801/CM_MEMES"
            )
        memes = [m for m in real_memes(args.real) if m[1] in args.halves]
        print(f"{len(memes)} real memes from {args.real} ({', '.join(args.halves)})")
    else:
        memes = rendered_memes(args.n, args.seed, args.keep)
        print(f"{len(memes)} rendered memes ({sum(1 for k in range(args.n) if k % 3 == 2)} with a banner)")
    engines = [("tesseract-plain", "tesseract"), ("tesseract", "tesseract")]
    try:
        import rapidocr  # noqa: F401

        engines.append(("rapidocr", "rapidocr"))
    except ImportError:
        print("rapidocr is not installed (pip install 'mmtk[ocr]'): skipping --engine rapidocr")
    engines = [(label, name) for label, name in engines if label in args.engines]
    halves = sorted({m[1] for m in memes}, key=lambda h: (h != "tune", h))
    print(f"{'engine':16} {'half':9} {'median CER':>10} {'mean CER':>9} {'median CER no spaces':>20} "
          f"{'mean CER no spaces':>18} {'empty':>6} {'s/image':>8} {'CPU s/image':>11}")
    for label, name in engines:
        with OcrPool(name, workers=1) as pool:
            read(pool, label, memes[0][2])  # model loading and first-call set-up are not per-image costs
            rows = []
            for meme_id, half, image, truth in memes:
                started, cpu_started = time.perf_counter(), time.process_time()
                reading = read(pool, label, image)
                seconds = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
                hypothesis = reading.text.lower()
                rows.append((half, min(1.0, cer(truth.lower(), hypothesis)),
                             min(1.0, cer(no_spaces(truth.lower()), no_spaces(hypothesis))), reading.empty, seconds, cpu,
                             meme_id, truth, reading.text))
        for half in halves:
            mine = [r for r in rows if r[0] == half]
            print(f"{label:16} {half:9} {statistics.median(r[1] for r in mine):10.3f} {statistics.mean(r[1] for r in mine):9.3f} "
                  f"{statistics.median(r[2] for r in mine):20.3f} {statistics.mean(r[2] for r in mine):18.3f} "
                  f"{sum(r[3] for r in mine):6d} {statistics.mean(r[4] for r in mine):8.3f} {statistics.mean(r[5] for r in mine):11.3f}")
        for row in sorted(rows, key=lambda r: -r[1])[: args.show]:
            print(f"    {row[6]} CER {row[1]:.2f}\n      truth: {' '.join(row[7].split())}\n      read:  {' '.join(row[8].split())}")


if __name__ == "__main__":
    main()
