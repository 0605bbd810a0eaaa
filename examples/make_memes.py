"""Generate the bundled example: a small meme-like sarcasm dataset in Hateful Memes' layout.

Each item is a picture of the weather (sunny or stormy, drawn with Pillow with random
scenery) with a caption in meme style (white capitals, black outline) that praises or
curses the weather. The label is 1 ("sarcastic") when caption and picture disagree:
"what a lovely day" over a thunderstorm. Neither modality alone says anything about the
label (each is independent of it), so a model must fuse both to do better than chance.

    python examples/make_memes.py examples/memes --train 400 --test 120 --seed 0

writes ``train.jsonl`` and ``test.jsonl`` (``id``, ``img``, ``text``, ``label``) and the
JPEG files under ``img/``. The output is deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE = 256

POSITIVE = [
    "what a lovely day",
    "perfect weather for a picnic",
    "best weather ever",
    "such a beautiful morning",
    "great day for the beach",
    "sunshine makes me happy",
    "the weather is amazing today",
    "what a wonderful afternoon",
]
NEGATIVE = [
    "what a miserable day",
    "worst weather ever",
    "this weather is awful",
    "such a gloomy morning",
    "terrible day to go outside",
    "i hate this weather",
    "what a dreadful afternoon",
    "the weather is horrible today",
]
OPENERS = ["", "", "me: ", "when they say ", "nobody: ", "my boss: "]
ENDINGS = ["", "", "", " lol", "!!", " again", " as usual"]


def draw_scene(rng: random.Random, sunny: bool) -> Image.Image:
    """A weather picture: sky, ground, sun or clouds with rain and lightning."""
    if sunny:
        sky = (rng.randint(70, 130), rng.randint(150, 200), rng.randint(220, 255))
        ground = (rng.randint(40, 90), rng.randint(150, 210), rng.randint(40, 90))
    else:
        grey = rng.randint(50, 100)
        sky = (grey, grey + rng.randint(0, 10), grey + rng.randint(5, 25))
        ground = (rng.randint(30, 60), rng.randint(50, 80), rng.randint(30, 50))
    image = Image.new("RGB", (SIZE, SIZE), sky)
    draw = ImageDraw.Draw(image)
    horizon = rng.randint(150, 200)
    draw.rectangle([0, horizon, SIZE, SIZE], fill=ground)
    # A house or a tree so that pictures differ in more than the weather.
    x = rng.randint(20, 180)
    if rng.random() < 0.5:
        draw.rectangle([x, horizon - 40, x + 50, horizon], fill=(rng.randint(120, 200), 80, 60))
        draw.polygon([(x - 5, horizon - 40), (x + 25, horizon - 65), (x + 55, horizon - 40)], fill=(90, 40, 30))
    else:
        draw.rectangle([x + 20, horizon - 35, x + 30, horizon], fill=(100, 70, 40))
        draw.ellipse([x, horizon - 75, x + 50, horizon - 25], fill=(30, rng.randint(90, 140), 40))
    if sunny:
        cx, cy, r = rng.randint(40, 210), rng.randint(30, 80), rng.randint(18, 30)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, rng.randint(210, 240), 60))
        for _ in range(rng.randint(0, 2)):
            px, py = rng.randint(0, 200), rng.randint(20, 100)
            draw.ellipse([px, py, px + 50, py + 20], fill=(250, 250, 250))
    else:
        for _ in range(rng.randint(3, 6)):
            px, py = rng.randint(-20, 200), rng.randint(0, 80)
            shade = rng.randint(35, 70)
            draw.ellipse([px, py, px + 90, py + 40], fill=(shade, shade, shade + 5))
        for _ in range(rng.randint(30, 60)):
            px, py = rng.randint(0, SIZE), rng.randint(40, SIZE)
            draw.line([px, py, px - 4, py + 12], fill=(170, 180, 200), width=1)
        if rng.random() < 0.6:
            lx = rng.randint(40, 200)
            draw.line([lx, 60, lx - 12, 100, lx + 6, 100, lx - 10, 150], fill=(255, 255, 160), width=3)
    return image


def draw_caption(image: Image.Image, text: str, top: bool) -> None:
    """Meme style: white capitals with a black outline, centred at the top or bottom."""
    draw = ImageDraw.Draw(image)
    caption = text.upper()
    size = 24
    font = ImageFont.load_default(size=size)
    while draw.textlength(caption, font=font) > SIZE - 16 and size > 10:
        size -= 2
        font = ImageFont.load_default(size=size)
    width = draw.textlength(caption, font=font)
    y = 8 if top else SIZE - size - 14
    draw.text(((SIZE - width) / 2, y), caption, font=font, fill="white", stroke_width=2, stroke_fill="black")


def make_item(rng: random.Random) -> tuple[Image.Image, str, int]:
    sunny = rng.random() < 0.5
    praising = rng.random() < 0.5
    text = rng.choice(OPENERS) + rng.choice(POSITIVE if praising else NEGATIVE) + rng.choice(ENDINGS)
    image = draw_scene(rng, sunny)
    draw_caption(image, text, top=rng.random() < 0.5)
    label = int(sunny != praising)
    return image, text, label


def write_split(out: Path, split: str, count: int, rng: random.Random, start_id: int) -> None:
    rows = []
    for i in range(count):
        item_id = start_id + i
        image, text, label = make_item(rng)
        relative = f"img/{item_id:05d}.jpg"
        image.save(out / relative, quality=90)
        rows.append({"id": item_id, "img": relative, "text": text, "label": label})
    with open(out / f"{split}.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--train", type=int, default=400, help="training items")
    parser.add_argument("--test", type=int, default=120, help="test items")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    (args.out / "img").mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    write_split(args.out, "train", args.train, rng, start_id=10000)
    write_split(args.out, "test", args.test, rng, start_id=20000)
    print(f"wrote {args.train} training and {args.test} test items to {args.out}")


if __name__ == "__main__":
    main()
