"""Meme caption OCR: character error rate and time per image, per engine.

    python benchmarks/bench_ocr_memes.py [--n 60] [--seed 0] [--keep DIR]

Real meme datasets are not available on this machine, so memes are rendered with Pillow:
classic white capitals with a black outline at the top and bottom (and a third of them
black text on a white banner above the picture) over real photographs (scikit-learn's
two sample photos and frames of the clips in ../shared/data/video, randomly cropped and
scaled) and over ffmpeg-like colour bars. Engines: ``tesseract-plain`` (grey full image,
no preprocessing: the usual baseline), ``tesseract`` (mmtk's caption preprocessing) and
``rapidocr`` when installed. CER compares case-folded text with whitespace runs as one
space, so lost word spaces count as errors.
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


def main() -> None:
    parser = argparse.ArgumentParser(description="Score OCR engines on rendered memes.")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="also save the rendered memes here")
    parser.add_argument("--engines", nargs="+", default=["tesseract-plain", "tesseract", "rapidocr"])
    args = parser.parse_args()
    rng = random.Random(args.seed)
    backgrounds = photos(rng)
    memes = []
    for k in range(args.n):
        top, bottom = rng.choice(CAPTIONS), rng.choice(CAPTIONS + [""])
        image, truth = render(rng.choice(backgrounds), top, bottom, banner=k % 3 == 2, rng=rng)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            image.save(args.keep / f"meme{k:03d}.png")
        memes.append((np.asarray(image)[:, :, ::-1].copy(), truth))  # RGB -> BGR
    engines = [("tesseract-plain", "tesseract"), ("tesseract", "tesseract")]
    try:
        import rapidocr  # noqa: F401

        engines.append(("rapidocr", "rapidocr"))
    except ImportError:
        print("rapidocr is not installed (pip install 'mmtk[ocr]'): skipping --engine rapidocr")
    engines = [(label, name) for label, name in engines if label in args.engines]
    print(f"{len(memes)} rendered memes ({sum(1 for k in range(args.n) if k % 3 == 2)} with a banner)")
    print(f"{'engine':16} {'median CER':>10} {'mean CER':>9} {'empty':>6} {'s/image':>8}")
    for label, name in engines:
        with OcrPool(name, workers=1) as pool:
            errors, empty, started = [], 0, time.perf_counter()
            for image, truth in memes:
                if label == "tesseract-plain":
                    import cv2

                    reading = pool.read(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
                else:
                    reading = read_image_text(image, pool)
                empty += reading.empty
                errors.append(min(1.0, cer(truth.lower(), reading.text.lower())))
            seconds = (time.perf_counter() - started) / len(memes)
        print(f"{label:16} {statistics.median(errors):10.3f} {statistics.mean(errors):9.3f} {empty:6d} {seconds:8.3f}")


if __name__ == "__main__":
    main()
