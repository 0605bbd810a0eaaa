"""Burned-in subtitle OCR against known subtitles.

    python benchmarks/make_subtitled_videos.py /tmp/subs --seconds 180
    python benchmarks/bench_ocr_subtitles.py /tmp/subs [--fps 2 4] [--every] [--workers 2]

For every NAME.mp4 with its reference NAME.srt, and for each sampling rate, prints:
cue recall (and for cues < 1.5 s, one-word cues and cues under 1 s), mean CER of found
cues, spurious cues per 10 min, boundary error (mean of a cue's start and end error;
median and 95th percentile of all start and end errors), compute (CPU) and wall
seconds per video second, and engine calls against frames sampled; then the totals
over all videos and the load average. SRT formatting tags (``<i>``) are not text: the
reference is scored without them. The ``every`` rows OCR every sampled frame that has caption
pixels (change detection off) to show what change detection saves at equal recall.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

from mmtk.ocr.cues import Cue  # noqa: E402
from mmtk.ocr.frames import decode_frames  # noqa: E402
from mmtk.ocr.pool import OcrPool  # noqa: E402
from mmtk.ocr.scoring import score_cues  # noqa: E402
from mmtk.ocr.video import VideoOcrSettings, ocr_video  # noqa: E402
from mmtk.ocr.writers import parse_srt  # noqa: E402


def cpu_seconds() -> float:
    # Process CPU time over all threads: robust to other jobs sharing the machine.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reference_cues(path: Path) -> list[Cue]:
    """The reference cues of an SRT file, formatting tags removed."""
    cues = parse_srt(path.read_text(encoding="utf-8"))
    return [Cue(c.start, c.end, re.sub(r"</?[ibu]>", "", c.text), c.confidence) for c in cues]


def _subset_recall(reference: list[Cue], found: list[Cue], keep) -> str:
    chosen = [c for c in reference if keep(c)]
    return f"{score_cues(chosen, found).recall:.3f}" if chosen else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description="Score mmtk ocr-subtitles on videos with known subtitles.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--fps", type=float, nargs="+", default=[2.0, 4.0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engine", default="tesseract")
    parser.add_argument("--every", action="store_true", help="also run with change detection off")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--decode-floor", action="store_true", help="also time decoding alone (B-frames skipped)")
    args = parser.parse_args()
    header = (
        f"{'video':28} {'mode':9} {'recall':>6} {'<1.5s':>6} {'1word':>6} {'<1s':>6} {'CER':>6} {'spur/10m':>8} "
        f"{'bound_s':>7} {'edge50':>6} {'edge95':>6} {'cpu_s/s':>7} {'wall_s/s':>8} {'calls/frames':>13}"
    )
    print(header)
    print("-" * len(header))
    totals: dict[str, list] = {}
    with OcrPool(args.engine, workers=args.workers) as pool:
        for video in sorted(args.folder.glob("*.mp4")):
            reference = reference_cues(video.with_suffix(".srt"))
            modes = [(f"fps{f:g}", VideoOcrSettings(fps=f)) for f in args.fps]
            if args.every:
                modes += [(f"fps{f:g}-every", VideoOcrSettings(fps=f, skip_unchanged=False)) for f in args.fps]
            for mode, settings in modes:
                cpu0, wall0 = cpu_seconds(), time.perf_counter()
                result = ocr_video(video, settings, pool=pool)
                cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
                score = score_cues(reference, result.cues)
                minutes = result.duration / 60
                one_word = _subset_recall(reference, result.cues, lambda c: len(c.text.split()) == 1)
                sub_second = _subset_recall(reference, result.cues, lambda c: c.end - c.start < 1.0)
                print(
                    f"{video.stem[:28]:28} {mode:9} {score.recall:6.3f} {score.short_recall:6.3f} {one_word:>6} {sub_second:>6} "
                    f"{score.mean_cer:6.3f} {score.spurious / minutes * 10:8.1f} {score.boundary_error:7.3f} "
                    f"{score.edge_error(50):6.3f} {score.edge_error(95):6.3f} {cpu / result.duration:7.4f} "
                    f"{wall / result.duration:8.4f} {result.ocr_calls:>6}/{result.frames_sampled:<6}",
                    flush=True,
                )
                totals.setdefault(mode, []).append((score, cpu, result.duration))
                if args.show_misses:
                    _show_misses(reference, result.cues)
            if args.decode_floor:
                cpu0 = cpu_seconds()
                for _ in decode_frames(video):
                    pass
                print(f"{video.stem[:28]:28} decoding alone: {(cpu_seconds() - cpu0) / result.duration:.4f} CPU s per video s")
    for mode, rows in totals.items():
        _print_totals(mode, rows)
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _print_totals(mode: str, rows) -> None:
    """Pooled over all videos: every reference cue and every edge counts once."""
    import numpy as np

    refs = sum(s.references for s, _, _ in rows)
    found = sum(s.found for s, _, _ in rows)
    cers = [s.mean_cer for s, _, _ in rows for _ in range(s.found)]
    edges = [e for s, _, _ in rows for e in s.edge_errors]
    seconds = sum(d for _, _, d in rows)
    print(
        f"ALL {mode}: recall {found / refs:.3f} ({found}/{refs}), mean CER {np.mean(cers):.4f}, "
        f"spurious {sum(s.spurious for s, _, _ in rows)} in {seconds / 60:.1f} min, "
        f"edge error median {np.percentile(edges, 50):.3f} s p95 {np.percentile(edges, 95):.3f} s, "
        f"CPU s per video s {sum(c for _, c, _ in rows) / seconds:.4f}"
    )


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
