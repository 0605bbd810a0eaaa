"""Frame sampling speed on the real clips in ../shared/data/video: sampling at 1 fps
(``mmtk.video.sample_frames``: decode, seek past keyframes where the index allows,
convert only the sampled frames to RGB) against decoding every frame to RGB.

Modes, each a pass over both clips (18.2 s at 19.6 fps, 320x240; 14.0 s at 30 fps,
480x360), repeated ``--loops`` times per round for a longer measurement:
- ``sample-1fps``: what extraction does with ``--fps 1``;
- ``sample-1fps-no-seek``: the same with seeking switched off (decode every frame,
  convert the sampled ones): what seeking adds;
- ``every-frame``: PyAV decodes every frame and converts each to an RGB array;
- ``decode-only``: PyAV decodes every frame and converts none (the floor without seeking);
- ``opencv-grab-1fps`` / ``opencv-every-frame``: OpenCV's ``grab()`` over every frame and
  ``retrieve()`` of the sampled ones / of every one (why mmtk decodes with PyAV: a wash
  on speed, see ``mmtk/video/decode.py``).

Modes are interleaved in rounds (a, b, c, ..., a, b, c, ...) so load from other users of
the machine hits all alike; the table gives each mode's median over rounds, in seconds
of video per wall-clock second and source frames covered per second, and the ratio to
``every-frame``. One decoding thread per clip (as in extraction, which runs one video
per core).

    .venv/bin/python benchmarks/bench_video_frames.py                 # 5 rounds x 10 loops
    .venv/bin/python benchmarks/bench_video_frames.py --rounds 3 --loops 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
MODES = ("sample-1fps", "sample-1fps-no-seek", "every-frame", "decode-only", "opencv-grab-1fps", "opencv-every-frame")


def clip_facts(path: Path) -> tuple[float, int]:
    """Seconds of video and frame count, from a full decode."""
    import av

    with av.open(str(path)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    return times[-1] - times[0] + (times[-1] - times[-2]), len(times)


def sample(path: Path, seek: bool) -> int:
    from mmtk.video import Sampling, decode

    if not seek:
        original = decode._FrameReader.skip_to
        decode._FrameReader.skip_to = lambda self, time: None
    try:
        return sum(1 for _ in decode.sample_frames(path, Sampling(fps=1.0)))
    finally:
        if not seek:
            decode._FrameReader.skip_to = original


def every_frame(path: Path, convert: bool = True) -> int:
    import av

    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            if convert:
                frame.to_ndarray(format="rgb24")
            count += 1
    return count


def opencv(path: Path, every: bool) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    count, target = 0, 0.0
    while capture.grab():
        time_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        if every or time_s >= target - 1e-6:
            ok, image = capture.retrieve()
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            count += 1
            target = float(int(time_s + 1e-6) + 1)
    capture.release()
    return count


def run_mode(mode: str, clips: list[Path], loops: int) -> tuple[float, int]:
    """Wall seconds for ``loops`` passes over ``clips``, and frames returned per pass."""
    work = {
        "sample-1fps": lambda p: sample(p, seek=True),
        "sample-1fps-no-seek": lambda p: sample(p, seek=False),
        "every-frame": every_frame,
        "decode-only": lambda p: every_frame(p, convert=False),
        "opencv-grab-1fps": lambda p: opencv(p, every=False),
        "opencv-every-frame": lambda p: opencv(p, every=True),
    }[mode]
    started = time.perf_counter()
    for _ in range(loops):
        frames = sum(work(path) for path in clips)
    return time.perf_counter() - started, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=10, help="passes over both clips per measurement")
    args = parser.parse_args()
    clips = sorted(VIDEOS.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no .mp4 files in {VIDEOS}")
    facts = [clip_facts(path) for path in clips]
    video_seconds = sum(seconds for seconds, _ in facts) * args.loops
    source_frames = sum(frames for _, frames in facts) * args.loops
    for mode in MODES:  # warm imports and the page cache
        run_mode(mode, clips, 1)

    load_before = os.getloadavg()[0]
    timings: dict[str, list[float]] = {mode: [] for mode in MODES}
    returned: dict[str, int] = {}
    for _ in range(args.rounds):
        for mode in MODES:
            seconds, frames = run_mode(mode, clips, args.loops)
            timings[mode].append(seconds)
            returned[mode] = frames
    load_after = os.getloadavg()[0]

    print(f"{len(clips)} clips, {video_seconds / args.loops:.1f} s of video and {source_frames // args.loops} frames per pass, "
          f"{args.loops} passes per measurement, {args.rounds} rounds; load average {load_before:.2f} -> {load_after:.2f}")
    print("| mode | frames out per pass | video s / s | source frames / s | vs every-frame |")
    print("|---|---|---|---|---|")
    baseline = statistics.median(timings["every-frame"])
    for mode in MODES:
        median = statistics.median(timings[mode])
        print(f"| {mode} | {returned[mode]} | {video_seconds / median:.0f} | {source_frames / median:.0f} | {baseline / median:.2f}x |")


if __name__ == "__main__":
    main()
