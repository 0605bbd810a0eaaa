"""CPU cost per image of what extraction does before the model: content key (blake2b of
the file), JPEG decode (with the draft a 256-px resize allows) and mmtk's resize + centre
crop to 224 px, on one core. It tells how many CPU cores one GPU needs to stay fed
(BENCHMARKS.md, "the store at internet scale").

    python benchmarks/bench_decode.py [--images 40] [--rounds 3]

Images are crops of scikit-learn's two sample photos saved as JPEG (quality 90) at
three sizes: 500 x 375 (about the median web image of LAION-style crawls), 1024 x 768
and 256 x 256. Each image is processed ``--rounds`` times (files in the page cache);
the median per-image CPU time (``time.process_time``: this process's own CPU seconds,
so other work on a shared machine inflates it little) of each size is reported. The
content key is stat-cached after the first round, as on a re-run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = ((500, 375), (1024, 768), (256, 256))


def make_images(folder: Path, count: int) -> dict[tuple[int, int], list[Path]]:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    photos = load_sample_images().images
    out: dict[tuple[int, int], list[Path]] = {}
    for width, height in SIZES:
        for i in range(count):
            photo = photos[i % len(photos)]
            h, w = photo.shape[:2]
            crop_w = int(rng.integers(w // 2, w))
            crop_h = min(h, int(crop_w * height / width))
            top, left = int(rng.integers(0, h - crop_h + 1)), int(rng.integers(0, w - crop_w + 1))
            image = Image.fromarray(photo[top : top + crop_h, left : left + crop_w]).resize((width, height), Image.BICUBIC)
            path = folder / f"{width}x{height}-{i}.jpg"
            image.save(path, quality=90)
            out.setdefault((width, height), []).append(path)
    return out


def per_image_ms(paths: list[Path], rounds: int) -> dict[str, float]:
    from mmtk.backbones.efficientnet_lite import PREPROCESS
    from mmtk.backbones.images import open_rgb
    from mmtk.data.content import content_key

    steps = {"content key": [], "decode (draft)": [], "resize + crop": []}
    for _ in range(rounds):
        for path in paths:
            t0 = time.process_time()
            content_key(str(path), "image")
            t1 = time.process_time()
            image = open_rgb(str(path), draft_size=PREPROCESS.resize)
            t2 = time.process_time()
            PREPROCESS(image)
            t3 = time.process_time()
            for name, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2)):
                steps[name].append(seconds * 1000)
    out = {name: statistics.median(values) for name, values in steps.items()}
    out["total"] = sum(out.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40, help="images per size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(Path(tmp), args.images)
        print("| image | content key, ms | decode (draft), ms | resize + crop, ms | total, ms | images/s per core |")
        print("|---|---|---|---|---|---|")
        for (width, height), paths in images.items():
            ms = per_image_ms(paths, args.rounds)
            cells = [f"{ms[k]:.2f}" for k in ("content key", "decode (draft)", "resize + crop", "total")]
            print(f"| {width} x {height} JPEG | " + " | ".join(cells) + f" | {1000 / ms['total']:.0f} |")


if __name__ == "__main__":
    main()
