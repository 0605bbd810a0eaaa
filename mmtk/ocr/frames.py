"""Decode a video with OpenCV and hand out frames at a chosen sampling rate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from mmtk.errors import DataError


@dataclass(frozen=True)
class Frame:
    index: int  # frame number in the video
    time: float  # seconds from the start
    image: np.ndarray  # BGR uint8


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps else 0.0


def _open(path: Path):
    import cv2

    if not path.is_file():
        raise DataError(f"{path}: no such video file", "check the path")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot decode video", "check that it is a video file OpenCV/FFmpeg can read")
    return capture


def video_info(path: str | Path) -> VideoInfo:
    """Frame rate, frame count and size as the container reports them."""
    import cv2

    capture = _open(Path(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        return VideoInfo(
            fps=float(fps),
            frame_count=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()


def sample_frames(path: str | Path, fps: float) -> Iterator[Frame]:
    """Frames closest to every 1/fps seconds. Every frame is grabbed (decoding cannot skip
    inter frames) but only sampled ones are converted to BGR, which is the costly part
    after decoding."""
    import cv2

    if fps <= 0:
        raise ValueError("fps must be positive")
    path = Path(path)
    capture = _open(path)
    try:
        video_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        step = 1.0 / fps
        next_time, index, delivered = 0.0, 0, 0
        while capture.grab():
            time = index / video_fps
            # Take the first frame at or past the sampling instant, within half a frame.
            if time + 0.5 / video_fps >= next_time:
                ok, image = capture.retrieve()
                if ok and image is not None:
                    delivered += 1
                    yield Frame(index, time, image)
                while next_time <= time + 0.5 / video_fps:
                    next_time += step
            index += 1
        if delivered == 0:
            raise DataError(f"{path}: the video has no decodable frames", "check that the file is complete")
    finally:
        capture.release()
