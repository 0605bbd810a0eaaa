"""Why the resize method is part of a backbone's fingerprint: the same images resized by
PIL (antialiased bicubic, what mmtk uses) and by OpenCV (bilinear, no antialiasing, a
common choice in video pipelines) give different efficientnet-lite0 features.

    python benchmarks/bench_resize.py [--items 100]

Prints the cosine similarity between the two feature vectors of each image (min, median,
mean) over crops of the two photos that ship with scikit-learn, saved losslessly at
several sizes (downscaling by a larger factor is where antialiasing matters most).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cv2_preprocess(path: str, preprocess) -> np.ndarray:
    """The same resize-crop recipe as mmtk's (an HWC uint8 crop, which the encoder
    normalises), but resized by OpenCV bilinear."""
    import cv2

    image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    scale = preprocess.resize / min(width, height)
    new_w, new_h = max(preprocess.size, round(width * scale)), max(preprocess.size, round(height * scale))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = (new_w - preprocess.size) // 2, (new_h - preprocess.size) // 2
    return np.ascontiguousarray(image[top : top + preprocess.size, left : left + preprocess.size])


def image_paths(crops: int, workdir: Path) -> list[tuple[int, str]]:
    """(short side, path) of square-ish crops of the sample photos at several sizes."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, photo in enumerate(load_sample_images().images):
        height, width = photo.shape[:2]
        for c in range(crops):
            side = int(rng.integers(300, min(height, width)))
            top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
            crop = Image.fromarray(photo[top : top + side, left : left + side])
            for target_side in (320, 640, 1280):
                target = workdir / f"photo{i}-crop{c}-{target_side}.png"  # lossless: only the resize differs
                crop.resize((target_side, target_side), Image.BICUBIC).save(target)
                paths.append((target_side, str(target)))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=5, help="crops per sample photo")
    args = parser.parse_args()

    import torch

    from mmtk.backbones import resolve_backbone
    from mmtk.backbones.efficientnet_lite import PREPROCESS

    torch.set_num_threads(1)
    encoder = resolve_backbone("efficientnet-lite0").build("cpu")
    paths = image_paths(args.crops, ROOT / "benchmarks" / "out" / "resize")
    by_size: dict[int, list[float]] = {}
    for side, path in paths:
        pil = encoder.encode(encoder.collate([encoder.load(path)]))[0]
        ocv = encoder.encode(encoder.collate([cv2_preprocess(path, PREPROCESS)]))[0]
        by_size.setdefault(side, []).append(float(pil @ ocv / (np.linalg.norm(pil) * np.linalg.norm(ocv))))
    print("cosine similarity of efficientnet-lite0 features: PIL antialiased bicubic vs OpenCV bilinear resize")
    print(f"{'input side':>10}  {'images':>6}  {'min':>6}  {'median':>6}  {'mean':>6}")
    for side, values in sorted(by_size.items()):
        print(f"{side:>10}  {len(values):>6}  {min(values):.4f}  {statistics.median(values):.4f}  {statistics.mean(values):.4f}")


if __name__ == "__main__":
    main()
