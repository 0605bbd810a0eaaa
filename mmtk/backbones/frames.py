"""An image backbone over a video column: frames sampled at ``--fps F`` (or ``--frames
K``) by ``mmtk.video.decode``, each encoded by the image backbone, stored as a sequence
(frames x d) with the frames' times beside it.

``resolve_backbone(spec, "video", options=...)`` resolves the image backbone and wraps its
config here. The fingerprint covers the image backbone's fingerprint, the sampling and
the decoder, so ``--fps 2`` never reads features stored at ``--fps 1``. The times (in
seconds from the video's first frame, one per stored frame) are a companion feature set
of dim 1 keyed by the sampling alone (every image backbone samples the same frames);
extraction writes them with the features (``BackboneConfig.companions``) and
``mmtk.features.gather_timestamps`` reads them back.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from mmtk.backbones.base import VIDEO, BackboneConfig, Encoded, FeatureOptions, close_resource, make_fingerprint
from mmtk.errors import UsageError
from mmtk.video.decode import DECODER, Sampling

NAME = "frames"
TIMESTAMPS = "frame-times"
#: Videos per batch. On CPU one video per worker thread: decoding it is most of the
#: work and runs without the GIL (PyAV), and its frames already fill the image batches.
#: On CUDA several videos' frames share each forward pass.
CPU_VIDEOS_PER_BATCH = 1
CUDA_VIDEOS_PER_BATCH = 8


def sampling_of(options: FeatureOptions) -> Sampling:
    """The frame sampling that ``--fps``/``--frames`` ask for."""
    return Sampling(fps=float(options.fps), frames=options.frames)


def timestamps_fingerprint(sampling: Sampling) -> str:
    """The store fingerprint of the frame times of videos sampled by ``sampling``."""
    return make_fingerprint(TIMESTAMPS, {"sampling": sampling.identity(), "decoder": DECODER})


def frames_config(image: BackboneConfig, options: FeatureOptions) -> BackboneConfig:
    """The config of ``image`` (a resolved image backbone) run over sampled video frames."""
    if image.kind != "vector":
        raise UsageError(
            f"backbone {image.spec!r} stores {image.kind}s per image, and video frames need one vector per frame",
            "use an image backbone that stores one vector per image (efficientnet-lite0, clip, pixels) on a video column",
        )
    sampling = sampling_of(options)
    times = timestamps_fingerprint(sampling)
    return BackboneConfig(
        spec=image.spec,
        name=image.name,
        modality=VIDEO,
        fingerprint=make_fingerprint(NAME, {"image": image.fingerprint, "sampling": sampling.identity(), "decoder": DECODER}),
        builder=build_frames,
        settings={"image": image, "sampling": sampling, "timestamps": times},
        dim=image.dim,
        cpu_batch_size=CPU_VIDEOS_PER_BATCH,
        cuda_batch_size=CUDA_VIDEOS_PER_BATCH,
        kind="sequence",
        # Decoding (PyAV) and the image models (torch, PIL) release the GIL.
        cpu_workers="threads",
        companions={
            times: {"backbone": f"{TIMESTAMPS}:{sampling.describe()}", "modality": VIDEO, "kind": "sequence", "dim": 1}
        },
        variant=f"frames {sampling.describe()}",
    )


class LoadedVideo(NamedTuple):
    """One video's sampled frames, preprocessed for the image encoder, and their times."""

    times: np.ndarray  # (T,) seconds from the first frame
    frames: list[Any]


class FrameBatch(NamedTuple):
    """Several videos' frames cut into image batches (in video order), with each
    video's frame count and times to split the features again."""

    lengths: list[int]
    times: list[np.ndarray]
    chunks: list[Any]


class FramesEncoder:
    """Runs an image encoder over the sampled frames of each video. ``load`` decodes and
    preprocesses one video's frames (``BadInput`` for an unusable file), ``collate`` cuts
    a batch of videos into image batches of ``frame_batch`` frames, ``encode`` returns one
    (T_i, dim) array per video plus the frame times as the companion feature set."""

    def __init__(self, image_encoder, sampling: Sampling, frame_batch: int, timestamps: str):
        if not callable(getattr(image_encoder, "load_image", None)):
            raise UsageError(
                f"{type(image_encoder).__name__} cannot encode decoded video frames (it has no load_image)",
                "use another image backbone on the video column",
            )
        self.image = image_encoder
        self.sampling = sampling
        self.frame_batch = max(1, frame_batch)
        self.timestamps = timestamps
        self.dim = image_encoder.dim

    def close(self) -> None:
        close_resource(self.image)

    def load(self, value: str) -> LoadedVideo:
        from mmtk.video.decode import sample_frames

        times, frames = [], []
        # Each frame is preprocessed as it is decoded, so only small model inputs are
        # held, never a video's worth of full-size frames.
        for sample in sample_frames(value, self.sampling):
            frames.append(self.image.load_image(sample.image))
            times.append(sample.time)
        return LoadedVideo(np.asarray(times, dtype=np.float64), frames)

    def collate(self, items: Sequence[LoadedVideo]) -> FrameBatch:
        frames = [frame for video in items for frame in video.frames]
        chunks = [self.image.collate(frames[i : i + self.frame_batch]) for i in range(0, len(frames), self.frame_batch)]
        return FrameBatch([len(video.frames) for video in items], [video.times for video in items], chunks)

    def encode(self, batch: FrameBatch) -> Encoded:
        rows = np.concatenate([np.asarray(self.image.encode(chunk), dtype=np.float32) for chunk in batch.chunks])
        features = np.split(rows, np.cumsum(batch.lengths)[:-1])
        times = [np.asarray(t, dtype=np.float32).reshape(-1, 1) for t in batch.times]
        return Encoded(features=features, companions={self.timestamps: times})


def build_frames(config: BackboneConfig, device: str) -> FramesEncoder:
    image: BackboneConfig = config.settings["image"]
    frame_batch = image.cuda_batch_size if device.startswith("cuda") else image.cpu_batch_size
    return FramesEncoder(image.build(device), config.settings["sampling"], frame_batch, config.settings["timestamps"])
