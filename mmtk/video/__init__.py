"""Video for mmtk: sampling frames from a video file at a chosen rate or count
(``decode``), for image backbones run over a video column (``mmtk.backbones.frames``).

PyAV is imported inside functions only.
"""

from __future__ import annotations

from mmtk.video.decode import DECODER, SampledFrame, Sampling, sample_frames

__all__ = ["DECODER", "SampledFrame", "Sampling", "sample_frames"]
