"""Build the real-meme OCR set from a local clone of a public meme repository.

    python benchmarks/make_real_meme_set.py SOURCE_CLONE OUT_DIR [--n 200] [--seed 17]

SOURCE_CLONE is a git clone of https://github.com/Gitanjali1801/CM_MEMES (the sample of
the CM-Off-Meme dataset, LREC-COLING 2024: 1,308 real Hindi-English code-mixed memes in
Latin script, ``LREC_COLING_meme/*.png``, and their human-corrected text in
``sample_data.csv``). The repository states no licence, so the images stay outside mmtk:
this script copies a seeded sample of them into OUT_DIR and writes
``OUT_DIR/manifest.csv`` (id, file, reference text, half, source repository, commit and
path). ``bench_ocr_memes.py --real OUT_DIR`` scores on it. No network: CI has no clone,
and the benchmark then says so and skips the real set.

The sample is stratified over the file-name groups of the repository (``eng``,
``meme_``, ``ramdev``, ``gay``, ``rhea``, ``fille``: different collections and meme
styles) and split into two halves: ``tune`` (change the code while looking at these)
and ``holdout`` (only report).
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

REPOSITORY = "github.com/Gitanjali1801/CM_MEMES"
IMAGES = "LREC_COLING_meme"


def main() -> None:
    parser = argparse.ArgumentParser(description="Copy a sample of real memes and their text into a folder.")
    parser.add_argument("source", type=Path, help="git clone of " + REPOSITORY)
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    from PIL import Image

    commit = subprocess.run(
        ["git", "-C", str(args.source), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip() or "unknown"
    with open(args.source / "sample_data.csv", encoding="utf-8", newline="") as handle:
        texts = {row["Name"]: " ".join(row["Text"].split()) for row in csv.DictReader(handle)}
    groups: dict[str, list[str]] = defaultdict(list)
    for name in sorted(texts):
        path = args.source / IMAGES / name
        if not texts[name] or not path.is_file():
            continue
        try:
            with Image.open(path) as image:
                image.verify()  # a git LFS pointer or a truncated file is not an image
        except Exception:  # noqa: BLE001 - any undecodable file is simply left out
            continue
        groups[re.sub(r"\d+\.\w+$", "", name)].append(name)
    rng = random.Random(args.seed)
    total = sum(len(v) for v in groups.values())
    chosen = []
    for group, names in sorted(groups.items()):
        take = max(1, round(args.n * len(names) / total))
        chosen.extend(rng.sample(names, min(take, len(names))))
    rest = [name for names in groups.values() for name in names if name not in set(chosen)]
    chosen.extend(rng.sample(rest, max(0, min(args.n - len(chosen), len(rest)))))  # rounding fell short
    rng.shuffle(chosen)
    chosen = chosen[: args.n]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "manifest.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "file", "text", "half", "source", "commit", "path"])
        for k, name in enumerate(chosen):
            # The files are JPEG data under a .png name; keep the bytes, fix the suffix.
            with Image.open(args.source / IMAGES / name) as image:
                suffix = ".jpg" if image.format == "JPEG" else ".png"
            target = f"{Path(name).stem}{suffix}"
            shutil.copyfile(args.source / IMAGES / name, args.out / target)
            half = "tune" if k % 2 == 0 else "holdout"
            writer.writerow([Path(name).stem, target, texts[name], half, REPOSITORY, commit, f"{IMAGES}/{name}"])
    print(f"{len(chosen)} memes from {total} in {args.source} -> {args.out / 'manifest.csv'}")


if __name__ == "__main__":
    main()
