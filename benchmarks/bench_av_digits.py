"""Audio-visual digits: each Free Spoken Digit recording paired with a scikit-learn
``load_digits()`` image of the same digit; audio-only (mfcc), image-only (pixels) and
fused (gmu over both) models, on a clean and a hard variant.

Pairing (deterministic): FSDD's own split, test = recordings ``{digit}_{speaker}_{idx}``
with idx 0-4 (300), train = idx 5-49 (2,700). The digit images of each class, in
load_digits order, are split too: the first ``TEST_IMAGES`` go to the test side, the rest
to the train side, so no image is in both. Within a split and a digit, the j-th
recording (by name) gets image j (cycling when there are more recordings than images).

Hard variant: white noise added to every recording at ``--snr-db`` (default 0 dB: as
strong as the speech; fixed seed per file) and a random block of
``--erase`` (default 4) image rows or columns set to background in every image.

Models train on the train split (20 % of it held out for early stopping) and are
scored on the test split with ``mmtk.evaluate``. Features: ``mfcc`` (a sequence of frames,
pooled by masked mean) and ``pixels`` (16x16 gray). Run from the repository root:

    .venv/bin/python benchmarks/bench_av_digits.py                 # both variants, 3 seeds
    .venv/bin/python benchmarks/bench_av_digits.py --variants hard --seeds 1
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RECORDINGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
TEST_IDX = range(5)  # FSDD's test split: idx 0-4 of every digit and speaker
TEST_IMAGES = 30  # digit images per class kept for the test side
SETUPS = {  # name -> (features, model)
    "audio": (["mfcc"], "concat"),
    "image": (["pixels"], "concat"),
    "fused": (["mfcc", "pixels"], "gmu"),
}


def recordings_by_split(recordings: Path) -> dict[str, list[tuple[Path, int]]]:
    """(path, digit) for every recording, split by FSDD's idx rule, in name order."""
    splits: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    for path in sorted(recordings.glob("*.wav")):
        digit, _speaker, idx = path.stem.split("_")
        splits["test" if int(idx) in TEST_IDX else "train"].append((path, int(digit)))
    if not splits["test"] or not splits["train"]:
        raise SystemExit(f"no FSDD recordings named DIGIT_SPEAKER_IDX.wav in {recordings}")
    return splits


def images_by_split() -> dict[str, dict[int, list[np.ndarray]]]:
    """load_digits images (8x8, 0-16) per class, the first TEST_IMAGES of each for test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    out: dict[str, dict[int, list[np.ndarray]]] = {"train": {}, "test": {}}
    for digit in range(10):
        images = [digits.images[i] for i in np.flatnonzero(digits.target == digit)]
        out["test"][digit], out["train"][digit] = images[:TEST_IMAGES], images[TEST_IMAGES:]
    return out


def erase(image: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Blank ``rows`` consecutive rows or columns at a random place."""
    erased = image.copy()
    start = int(rng.integers(0, 8 - rows + 1))
    if rng.random() < 0.5:
        erased[start : start + rows, :] = 0
    else:
        erased[:, start : start + rows] = 0
    return erased


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at ``snr_db`` below the recording's RMS, clipped to [-1, 1]."""
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) or 1e-3
    noise = rng.normal(0.0, rms / 10 ** (snr_db / 20), samples.size)
    return np.clip(samples + noise, -1.0, 1.0).astype(np.float32)


def build_variant(root: Path, hard: bool, snr_db: float, erase_rows: int, recordings: Path) -> dict[str, Path]:
    """Write the images (and noisy audio for the hard variant) and train/test CSVs."""
    import soundfile
    from PIL import Image

    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    images = images_by_split()
    csvs = {}
    for split, items in recordings_by_split(recordings).items():
        seen: dict[int, int] = {}
        rows = []
        for path, digit in items:
            j = seen.get(digit, 0)
            seen[digit] = j + 1
            pool = images[split][digit]
            image_index = j % len(pool)
            rng = np.random.default_rng(_seed(path.stem))
            pixels = pool[image_index]
            if hard:
                pixels = erase(pixels, erase_rows, rng)
            image_path = media / f"{split}_{path.stem}.png"
            Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8), mode="L").save(image_path)
            audio_path = path
            if hard:
                samples, rate = soundfile.read(str(path), dtype="float32")
                audio_path = media / f"{path.stem}_noisy.wav"
                soundfile.write(str(audio_path), add_noise(samples, snr_db, rng), rate)
            rows.append({"id": path.stem, "audio": str(audio_path), "image": str(image_path), "label": digit})
        csvs[split] = root / f"{split}.csv"
        with open(csvs[split], "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "audio", "image", "label"])
            writer.writeheader()
            writer.writerows(rows)
    return csvs


def _seed(stem: str) -> int:
    """A per-file seed that does not depend on Python's hash randomisation."""
    import zlib

    return zlib.crc32(stem.encode("utf-8"))


def run_variant(name: str, csvs: dict[str, Path], store, work: Path, seeds: int) -> dict[str, list[float]]:
    from mmtk.data import read_dataset
    from mmtk.evaluate import evaluate
    from mmtk.extract import extract_features
    from mmtk.train import train

    train_set, test_set = read_dataset(csvs["train"]), read_dataset(csvs["test"])
    for dataset in (train_set, test_set):
        for backbone in ("mfcc", "pixels"):
            report = extract_features(dataset, backbone, store=store, device="cpu")
            print(f"  {name}: {backbone} {report.computed} computed in {report.seconds:.1f} s", file=sys.stderr)
    scores: dict[str, list[float]] = {setup: [] for setup in SETUPS}
    for seed in range(seeds):
        for setup, (features, model) in SETUPS.items():
            out = work / f"run-{name}-{setup}-{seed}"
            train(train_set, features=features, model=model, tasks=["label"], out=out, store=store, seed=seed, device="cpu")
            result = evaluate(out, test_set, store=store, device="cpu", extract_missing=False)
            scores[setup].append(float(result["metrics"]["accuracy"]))
            print(f"  {name} seed {seed} {setup:6s} test accuracy {scores[setup][-1]:.3f}", file=sys.stderr)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=Path, default=RECORDINGS)
    parser.add_argument("--variants", default="clean,hard")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--snr-db", type=float, default=0.0)
    parser.add_argument("--erase", type=int, default=4, help="image rows/columns erased in the hard variant (of 8)")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args()

    import torch

    from mmtk.store import FeatureStore

    torch.set_num_threads(1)
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="av_digits_") as tmp:
        work = Path(tmp)
        store = FeatureStore(work / "store")
        for variant in args.variants.split(","):
            csvs = build_variant(work / variant, variant == "hard", args.snr_db, args.erase, args.recordings)
            results[variant] = run_variant(variant, csvs, store, work, args.seeds)
    print(f"FSDD x load_digits, test = idx 0-4 (300 pairs); test accuracy, mean (min-max) over {args.seeds} seed(s)")
    print(f"hard variant: audio noise at {args.snr_db:g} dB SNR, {args.erase} of 8 image rows/columns erased")
    print(f"{'variant':8s} {'audio (mfcc)':>20s} {'image (pixels)':>20s} {'fused (gmu)':>20s}  fused - best unimodal")
    for variant, scores in results.items():
        cells = [f"{statistics.mean(s):.3f} ({min(s):.3f}-{max(s):.3f})" for s in scores.values()]
        margin = statistics.mean(scores["fused"]) - max(statistics.mean(scores["audio"]), statistics.mean(scores["image"]))
        print(f"{variant:8s} {cells[0]:>20s} {cells[1]:>20s} {cells[2]:>20s}  {margin:+.3f}")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"snr_db": args.snr_db, "erase": args.erase, "scores": results}, indent=2))


if __name__ == "__main__":
    main()
