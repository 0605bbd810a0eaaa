"""Burned-in subtitle OCR against known subtitles.

    python benchmarks/make_subtitled_videos.py /tmp/subs --seconds 180
    python benchmarks/bench_ocr_subtitles.py /tmp/subs [--fps 2 4] [--every] [--workers 2]

For every NAME.mp4 with its reference NAME.srt, and for each sampling rate, prints:
cue recall (and for cues < 1.5 s), mean CER of found cues, spurious cues per 10 min,
mean boundary error, compute (CPU) and wall seconds per video second, and engine calls
against frames sampled. The ``every`` rows OCR every sampled frame that has caption
pixels (change detection off) to show what change detection saves at equal recall.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

from mmtk.ocr.pool import OcrPool  # noqa: E402
from mmtk.ocr.scoring import score_cues  # noqa: E402
from mmtk.ocr.video import VideoOcrSettings, ocr_video  # noqa: E402
from mmtk.ocr.writers import parse_srt  # noqa: E402


def cpu_seconds() -> float:
    # Process CPU time over all threads: robust to other jobs sharing the machine.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description="Score mmtk ocr-subtitles on videos with known subtitles.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--fps", type=float, nargs="+", default=[2.0, 4.0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engine", default="tesseract")
    parser.add_argument("--every", action="store_true", help="also run with change detection off")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    header = f"{'video':28} {'mode':9} {'recall':>6} {'<1.5s':>6} {'CER':>6} {'spur/10m':>8} {'bound_s':>7} {'cpu_s/s':>7} {'wall_s/s':>8} {'calls/frames':>13}"
    print(header)
    print("-" * len(header))
    with OcrPool(args.engine, workers=args.workers) as pool:
        for video in sorted(args.folder.glob("*.mp4")):
            reference = parse_srt(video.with_suffix(".srt").read_text(encoding="utf-8"))
            modes = [(f"fps{f:g}", VideoOcrSettings(fps=f)) for f in args.fps]
            if args.every:
                modes += [(f"fps{f:g}-every", VideoOcrSettings(fps=f, skip_unchanged=False)) for f in args.fps]
            for mode, settings in modes:
                cpu0, wall0 = cpu_seconds(), time.perf_counter()
                result = ocr_video(video, settings, pool=pool)
                cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
                score = score_cues(reference, result.cues)
                minutes = result.duration / 60
                print(
                    f"{video.stem[:28]:28} {mode:9} {score.recall:6.3f} {score.short_recall:6.3f} {score.mean_cer:6.3f} "
                    f"{score.spurious / minutes * 10:8.1f} {score.boundary_error:7.3f} {cpu / result.duration:7.4f} "
                    f"{wall / result.duration:8.4f} {result.ocr_calls:>6}/{result.frames_sampled:<6}"
                )
                if args.show_misses:
                    _show_misses(reference, result.cues)


def _show_misses(reference, cues) -> None:
    from mmtk.ocr.scoring import FOUND_CER, cer

    for ref in reference:
        near = [c for c in cues if c.start < ref.end and ref.start < c.end]
        if not any(cer(ref.text, c.text) <= FOUND_CER for c in near):
            print(f"    miss {ref.start:7.2f}-{ref.end:7.2f} {ref.text!r} got {[(round(c.start, 2), c.text) for c in near]}")
    for c in cues:
        if not any(c.start < r.end and r.start < c.end and cer(r.text, c.text) <= FOUND_CER for r in reference):
            print(f"    spurious {c.start:7.2f}-{c.end:7.2f} {c.text!r} conf {c.confidence:.0f}")


if __name__ == "__main__":
    main()
