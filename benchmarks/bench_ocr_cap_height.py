"""How Tesseract's error on subtitle crops depends on the letter size it is given, and
on how the crop is binarised: the curve behind ``textmask.TARGET_LETTER_PX``.

    python benchmarks/make_subtitled_videos.py /tmp/subs --set default-style --seconds 75 --seed 3
    python benchmarks/bench_ocr_cap_height.py /tmp/subs [--targets 16 20 24 28 32 36 44 52] [--reach 0.4 1.0]

One frame in the middle of every reference cue of every NAME.mp4 (NAME.srt beside it) is
cropped to the default region, its caption found, and the OCR image made at each target
capital height (and each ``reach``); prints mean CER against the cue text by the
caption's own capital height in the frame and overall, and the share of low-confidence
reads. The frames are the same for every setting, so the rows compare settings only.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ocr_subtitles import reference_cues  # noqa: E402

from mmtk.ocr.engines.tesseract import TesseractEngine  # noqa: E402
from mmtk.ocr.frames import sample_frames  # noqa: E402
from mmtk.ocr.regions import parse_region  # noqa: E402
from mmtk.ocr.scoring import cer  # noqa: E402
from mmtk.ocr.textmask import REACH, find_text, ocr_image  # noqa: E402

BINS = [(0, 10), (10, 13), (13, 18), (18, 1000)]


def cue_frames(video: Path):
    """(reference text, crop, layer, frame height) at the middle of each cue."""
    cues = reference_cues(video.with_suffix(".srt"))
    wanted = sorted(((c.start + c.end) / 2, c.text) for c in cues)
    region = parse_region("lower-half")
    found = []
    for frame in sample_frames(video, 10.0):
        while wanted and frame.time >= wanted[0][0] - 0.05:
            _, text = wanted.pop(0)
            crop = region.crop(frame.image).copy()
            found.append((text, crop, find_text(crop, frame.image.shape[0]), frame.image.shape[0]))
        if not wanted:
            break
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--targets", type=float, nargs="+", default=[16, 20, 24, 28, 32, 36, 44, 52])
    parser.add_argument("--reach", type=float, nargs="+", default=[REACH])
    args = parser.parse_args()
    frames = [f for video in sorted(args.folder.glob("*.mp4")) for f in cue_frames(video)]
    engine = TesseractEngine()
    counts = defaultdict(int)
    for _, _, layer, _ in frames:
        counts[next(b for b in BINS if b[0] <= layer.letter_height < b[1])] += 1
    print(f"{len(frames)} cue frames; no caption found on {sum(layer.empty for _, _, layer, _ in frames)}")
    print("capital height bins (px in the frame): " + ", ".join(f"{lo}-{hi}: {counts[(lo, hi)]}" for lo, hi in BINS))
    print(f"{'reach':>5} {'target':>6} " + " ".join(f"{f'{lo}-{hi}px':>9}" for lo, hi in BINS) + f" {'all':>7} {'conf<70':>7}")
    for reach in args.reach:
        for target in args.targets:
            errors, low = defaultdict(list), 0
            for text, crop, layer, _ in frames:
                if layer.empty:
                    error = 1.0
                else:
                    reading = engine.read(ocr_image(crop, layer, letter_px=target, reach=reach))
                    error, low = min(1.0, cer(text, reading.text)), low + (reading.confidence < 70)
                errors[next(b for b in BINS if b[0] <= layer.letter_height < b[1])].append(error)
            every = [e for v in errors.values() for e in v]
            cells = " ".join(f"{sum(errors[b]) / len(errors[b]):9.4f}" if errors[b] else f"{'-':>9}" for b in BINS)
            print(f"{reach:5.2f} {target:6.0f} {cells} {sum(every) / len(every):7.4f} {low:7d}", flush=True)
    engine.close()


if __name__ == "__main__":
    main()
