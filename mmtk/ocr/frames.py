"""Decode a video and hand out frames at a chosen sampling rate.

Decoding is most of the cost of subtitle OCR (OpenCV's ``grab()`` still decodes every
frame: about 0.024 CPU-s per second of 30 fps 360p video here). PyAV lets the decoder
skip B-frames, which cuts that to about 0.010 (0.015 skipping only non-reference
frames), while every frame it returns is exact and they stay a few video frames apart
(at most 0.13-0.2 s in the benchmark videos). Samples are taken from the decoded
frames, and the frames decoded between two samples are kept (unconverted) so that a
caption change between them can be placed precisely (``mmtk.ocr.video``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from mmtk.errors import DataError


@dataclass(frozen=True)
class DecodedFrame:
    """A decoded frame whose pixels are converted to BGR only when asked for."""

    time: float  # seconds from the start
    raw: object = field(repr=False)  # av.VideoFrame

    def image(self, max_height: int | None = None) -> np.ndarray:
        """BGR uint8 pixels, scaled down to ``max_height`` rows if taller (in the same
        libswscale pass as the colour conversion, which costs no more than converting
        at full size)."""
        height, width = self.raw.height, self.raw.width
        if max_height is None or height <= max_height:
            return self.raw.to_ndarray(format="bgr24")
        scaled_width = max(1, int(round(width * max_height / height)))
        return self.raw.reformat(scaled_width, max_height, "bgr24", interpolation="AREA").to_ndarray()


@dataclass(frozen=True)
class Frame:
    time: float  # seconds from the start
    image: np.ndarray  # BGR uint8
    # Frames decoded since the previous sample, oldest first (none for the first sample).
    between: tuple[DecodedFrame, ...] = ()


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
    import av

    if not path.is_file():
        raise DataError(f"{path}: no such video file", "check the path")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError):
        container = None
    if container is None or not container.streams.video:
        if container is not None:
            container.close()
        raise DataError(f"{path}: cannot decode video", "check that it is a video file FFmpeg can read")
    return container


def video_info(path: str | Path) -> VideoInfo:
    """Frame rate, frame count and size as the container reports them."""
    import av

    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        count = stream.frames
        if not count:
            seconds = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / av.time_base
            count = int(round(seconds * fps))
        return VideoInfo(fps=fps, frame_count=count, width=stream.codec_context.width, height=stream.codec_context.height)


def decode_frames(path: str | Path) -> Iterator[DecodedFrame]:
    """The frames that need no later frame to decode (key and forward-predicted frames;
    B-frames are skipped), in display order, timed from the start of the video."""
    import av

    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "BIDIR"
        start = stream.start_time or 0
        try:
            for raw in container.decode(stream):
                if raw.pts is None:
                    continue
                yield DecodedFrame(float((raw.pts - start) * stream.time_base), raw)
        except av.error.FFmpegError as error:
            raise DataError(f"{path}: decoding failed ({error})", "check that the file is complete") from None


def sample_frames(path: str | Path, fps: float, max_height: int | None = None) -> Iterator[Frame]:
    """Decoded frames at most 1/fps seconds apart (so text shown that long is always
    sampled), each with the frames decoded since the previous sample; sampled images
    taller than ``max_height`` are scaled down to it."""
    if fps <= 0:
        raise ValueError("fps must be positive")
    path = Path(path)
    step = 1.0 / fps + 1e-3  # float slack
    last: float | None = None
    pending: list[DecodedFrame] = []  # decoded since the last sample
    for decoded in decode_frames(path):
        if last is not None and decoded.time - last > step and pending:
            # The latest frame still within one step of the last sample.
            sample, pending = pending[-1], pending[:-1]
            yield Frame(sample.time, sample.image(max_height), tuple(pending))
            last, pending = sample.time, []
        if last is None or decoded.time - last > step:  # the first frame, or a gap longer than a step
            yield Frame(decoded.time, decoded.image(max_height), tuple(pending))
            last, pending = decoded.time, []
        else:
            pending.append(decoded)
    if last is None:
        raise DataError(f"{path}: the video has no decodable frames", "check that the file is complete")
    if pending:  # the end of the video
        yield Frame(pending[-1].time, pending[-1].image(max_height), tuple(pending[:-1]))
