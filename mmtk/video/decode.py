"""Sample frames from a video file: ``--fps F`` takes the first frame of every 1/F-second
chunk, ``--frames K`` the first frame of each of K equal chunks of the video.

Chunks are laid on presentation time, counted from the first frame's, so variable frame
rate video samples by the clock, not by frame number. A chunk with no frame of its own
(a gap in variable-rate video, --fps above the frame rate, more chunks than frames)
contributes nothing, so every frame is taken at most once and times strictly increase;
a video shorter than one chunk still yields its first frame. Frames come out upright:
the stream's display matrix (phone videos shot in portrait) is applied.

Decoder: PyAV, not OpenCV, for corrupt files. With 3 KB zeroed in the middle of a
100-frame H.264 clip (keyframe every 10 frames), OpenCV's ``grab()`` stopped at the first
bad packet and returned 32 frames as if the video ended there; decoding packet by packet
with PyAV skips the packets the decoder rejects and returned 98. Speed is a wash: on the
shared 320x240 and 480x360 H.264 clips one thread decoded 132 seconds of video per
second with OpenCV's ``grab()`` and 130 with PyAV (benchmarks/bench_video_frames.py).
PyAV also gives exact presentation times, the display matrix and the keyframe index;
audio (``mmtk.audio.decode``) and OCR (``mmtk.ocr.frames``) use it too.

Seeking: frames between samples must still be decoded (each depends on the ones before
it back to a keyframe), but only from the last keyframe before the next sample. When the
stream's keyframe index shows one beyond what was read, the reader seeks to it and skips
the packets in between; otherwise it decodes on. See BENCHMARKS.md (video frames) for
what sampling at 1 fps saves over decoding every frame.

Only sampled frames are converted to RGB; the rest stay in the decoder's YUV.
Undecodable items raise ``BadInput`` with the reason.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

from mmtk.errors import BadInput, first_line

#: Names recorded in the fingerprints of video features: change them when the decoded
#: pixels (decoder, colour conversion, orientation) or the choice of frames changes.
DECODER = "pyav-rgb24-upright"
SAMPLING_RULE = "first-frame-per-chunk"

# Float slack on chunk edges: a frame at 0.9999999 s is the frame at 1 s.
_EPS = 1e-6
# With B-frames the keyframe index holds decode times, which run ahead of presentation
# times by the reorder delay (a few frames); a keyframe that close to a sample time may
# come after frames that belong before it, so such streams only seek this far back.
_REORDER_GUARD_S = 0.5


@dataclass(frozen=True)
class Sampling:
    """Which frames to take: ``fps`` per second, or, when ``frames`` is set, the first
    frame of each of ``frames`` equal chunks of the video."""

    fps: float = 1.0
    frames: int | None = None

    def __post_init__(self):
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"frames must be at least 1, not {self.frames}")
        if self.frames is None and not self.fps > 0:
            raise ValueError(f"fps must be positive, not {self.fps}")

    def identity(self) -> dict:
        """What changes the frames taken, for fingerprints."""
        if self.frames is not None:
            return {"frames": int(self.frames), "rule": SAMPLING_RULE}
        return {"fps": float(self.fps), "rule": SAMPLING_RULE}

    def describe(self) -> str:
        return f"frames={self.frames}" if self.frames is not None else f"fps={self.fps:g}"


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: its presentation time in seconds from the video's first frame,
    and its pixels as an upright RGB PIL image."""

    time: float
    image: Any  # PIL.Image.Image


def sample_frames(path: str | os.PathLike, sampling: Sampling) -> Iterator[SampledFrame]:
    """The frames ``sampling`` picks from the video at ``path``, in time order.

    Raises ``BadInput`` (when iterated) for a missing or unreadable file, a file without
    a video stream, or a video with no decodable frame. Packets the decoder rejects
    (corrupt data) are skipped."""
    path = os.fspath(path)
    duration = _duration(path) if sampling.frames is not None else None
    with _open(path) as container:
        reader = _FrameReader(container, container.streams.video[0])
        origin = None  # the first frame's time: the zero of every chunk
        previous = None  # the last decoded frame's time
        last = -math.inf  # the last sample's offset from origin
        next_chunk = 0
        for frame in reader:
            time = frame.time
            if time is None:  # no timestamp (raw elementary streams): one frame after the last
                time = 0.0 if previous is None else previous + reader.frame_step
            previous = time
            if origin is None:
                origin = time
            offset = time - origin
            if offset <= last:
                continue  # timestamps that step back (broken muxing) never reorder samples
            chunk = _chunk_of(offset, sampling, duration)
            if chunk < next_chunk:
                continue
            yield SampledFrame(offset, _upright_image(frame))
            last = offset
            next_chunk = chunk + 1
            if sampling.frames is not None and next_chunk >= sampling.frames:
                return
            reader.skip_to(origin + _chunk_start(next_chunk, sampling, duration))
        if origin is None:
            detail = f" ({reader.errors} packets rejected: {reader.first_error})" if reader.errors else ""
            raise BadInput(f"{path} has no decodable video frame{detail}")


def _chunk_of(offset: float, sampling: Sampling, duration: float | None) -> int:
    if sampling.frames is None:
        return math.floor((offset + _EPS) * sampling.fps)
    if not duration or duration <= 0:
        return 0  # a single frame, or no timing at all: the first frame is the sample
    # Frames past the stated end (a timing glitch) belong to the last chunk.
    return min(math.floor((offset + _EPS) * sampling.frames / duration), sampling.frames - 1)


def _chunk_start(chunk: int, sampling: Sampling, duration: float | None) -> float:
    if sampling.frames is None:
        return chunk / sampling.fps
    return chunk * (duration or 0.0) / sampling.frames


class _FrameReader:
    """Decoded frames of one stream in presentation order, skipping packets the decoder
    rejects, and able to jump ahead to a keyframe (``skip_to``)."""

    def __init__(self, container, stream):
        self.container = container
        self.stream = stream
        self.time_base = stream.time_base or Fraction(1, 90000)
        # Keyframe decode times (stream ticks) from the container's index: every sample
        # of an MP4, the cues of a Matroska file, nothing for formats without an index.
        self.keyframes = sorted(entry.timestamp for entry in stream.index_entries if entry.is_keyframe)
        self.guard = _REORDER_GUARD_S if stream.codec_context.has_b_frames else 0.0
        rate = stream.average_rate or stream.guessed_rate or 25
        self.frame_step = float(1 / rate)
        self.read_until: int | None = None  # decode time (ticks) of the last packet read
        self.errors = 0
        self.first_error: str | None = None
        self._frames = self._decode()

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._frames)

    def _decode(self):
        import av

        for packet in self.container.demux(self.stream):
            if packet.dts is not None:
                self.read_until = packet.dts
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError) as exc:
                self.errors += 1
                self.first_error = self.first_error or first_line(exc)
                continue
            yield from frames

    def skip_to(self, time: float) -> None:
        """Seek to the last keyframe at or before ``time`` (seconds on the stream's clock)
        when it lies beyond the packets read so far; otherwise decoding simply goes on."""
        if not self.keyframes or self.read_until is None:
            return
        limit = math.floor(Fraction(time - self.guard) / self.time_base)
        index = bisect.bisect_right(self.keyframes, limit) - 1
        if index < 0 or self.keyframes[index] <= self.read_until:
            return
        import av

        try:
            self.container.seek(self.keyframes[index], stream=self.stream, backward=True, any_frame=False)
        except (av.error.FFmpegError, ValueError):
            return  # an index the demuxer cannot seek by: decode on instead
        self.read_until = None
        self._frames = self._decode()


def _open(path: str):
    """The container, checked to hold a video stream, or ``BadInput`` saying why not."""
    import av

    if not os.path.isfile(path):
        raise BadInput(f"video file not found: {path}")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise BadInput(f"cannot open video {path}: {first_line(exc)}") from None
    if not container.streams.video:
        container.close()
        raise BadInput(f"{path} has no video stream")
    return container


def _duration(path: str) -> float:
    """Seconds from the first frame to the end of the last, from a pass over the packets
    (no decoding: about a tenth of the decode time). Container metadata is not trusted:
    variable frame rate files often state a duration that ends before their last frame."""
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        first = end = None
        try:
            for packet in container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    continue
                first = stamp if first is None else min(first, stamp)
                end = max(end if end is not None else stamp, stamp + (packet.duration or 0))
        except (av.error.FFmpegError, ValueError):
            pass  # a corrupt tail: the packets read so far still time the video
        if first is None:
            seconds = (container.duration or 0) / av.time_base
            return max(float(seconds), 0.0)
        return float((end - first) * stream.time_base)


def _upright_image(frame):
    """The frame as an RGB PIL image, turned by the stream's display matrix (PyAV reports
    the counter-clockwise rotation; PIL's ROTATE_90 is counter-clockwise too)."""
    from PIL import Image

    # Through a numpy array: half the time of PyAV's to_image (0.3 vs 0.6 ms a frame here).
    image = Image.fromarray(frame.to_ndarray(format="rgb24"))
    turns = round((frame.rotation or 0) / 90) % 4
    if turns:
        image = image.transpose((None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)[turns])
    return image
