"""``hf-audio:NAME_OR_PATH``: a transformers speech encoder (wav2vec2, HuBERT, WavLM
style: AutoFeatureExtractor + AutoModel) over the audio column or a video's audio track.

The store keeps the last hidden layer as a sequence (one d-vector per ~20 ms frame), so
one extraction serves both forms: ``hf-audio:NAME`` in ``train --features`` is pooled by
a masked mean over frames (the pooled vector), ``hf-audio:NAME:seq`` is the sequence.

Clips are encoded one at a time: padding a batch would change the features of models
trained without an attention mask (wav2vec2-base), and costs compute on clips of
different lengths. A local directory is identified by the digests of its files, a hub
name by its name and the commit of the cached copy; hub loading goes through
``hub.load_cached_first`` (cache first, one clear error when the hub is unreachable).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmtk.backbones.base import BackboneConfig, BadInput, make_fingerprint, require_modality
from mmtk.backbones.hub import TRANSFORMERS_FILES, json_field, load_cached_first, model_source, transformers_identity
from mmtk.backbones.registry import BACKBONES
from mmtk.errors import UsageError

NAME = "hf-audio"
DEFAULT_RATE = 16000


@BACKBONES.register(NAME, help="hf-audio:NAME_OR_PATH: a transformers speech encoder (wav2vec2/HuBERT), frames; pooled or :seq")
def resolve_hf_audio(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``hf-audio:NAME_OR_PATH`` (a hub model name or a local model directory)."""
    if not arg:
        raise UsageError(f"backbone {NAME!r} needs a model", f"write {NAME}:facebook/wav2vec2-base or {NAME}:/path/to/model")
    require_modality(f"{NAME}:{arg}", modality, "audio", "use it on an audio or video column")
    source, weights, local = model_source(arg, NAME, TRANSFORMERS_FILES)
    dim, rate = None, DEFAULT_RATE
    if local is not None:
        dim = json_field(local / "config.json", "hidden_size")
        rate = json_field(local / "preprocessor_config.json", "sampling_rate") or DEFAULT_RATE
    identity = {
        **transformers_identity(weights),
        "sample_rate": rate,
        "output": "last_hidden_state frames",
    }
    return BackboneConfig(
        spec=f"{NAME}:{source}",
        name=NAME,
        modality="audio",
        fingerprint=make_fingerprint(NAME, identity),
        builder=build_hf_audio,
        settings={"source": source, "sample_rate": rate},
        dim=dim,
        cpu_batch_size=1,
        cuda_batch_size=8,
        kind="sequence",
    )


def build_hf_audio(config: BackboneConfig, device: str) -> SpeechEncoder:
    """Load feature extractor and model: local files first, the hub only when not cached."""
    source = config.settings["source"]

    def load(local_only: bool):
        from transformers import AutoFeatureExtractor, AutoModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        # The model first: its error names the network problem, the feature extractor's
        # only says the file is missing.
        model = AutoModel.from_pretrained(source, local_files_only=local_only)
        extractor = AutoFeatureExtractor.from_pretrained(source, local_files_only=local_only)
        return model.eval().to(device), extractor

    model, extractor = load_cached_first(
        f"{NAME}:{source}", load, local_form=f"{NAME}:/path/to/model (a folder saved with save_pretrained)"
    )
    return SpeechEncoder(model, extractor, device, int(getattr(extractor, "sampling_rate", config.settings["sample_rate"])))


class SpeechEncoder:
    """Waveform -> last hidden layer, one (frames, hidden_size) array per clip."""

    def __init__(self, model, extractor, device: str, sample_rate: int):
        self.model = model
        self.extractor = extractor
        self.device = device
        self.sample_rate = sample_rate
        self.dim = int(model.config.hidden_size)
        # The convolutional front end needs at least one receptive field of samples.
        self.min_samples = _min_samples(model)

    def load(self, value: str) -> np.ndarray:
        from mmtk.audio.decode import load_audio

        waveform = load_audio(value, self.sample_rate)
        if waveform.size < self.min_samples:
            raise BadInput(
                f"{value} is too short for this speech model: {waveform.size / self.sample_rate * 1000:.0f} ms "
                f"(needs at least {self.min_samples / self.sample_rate * 1000:.0f} ms)"
            )
        return waveform

    def collate(self, items: Sequence[Any]) -> list[np.ndarray]:
        return list(items)

    def encode(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        out = []
        with torch.inference_mode():
            for waveform in batch:
                inputs = self.extractor(waveform, sampling_rate=self.sample_rate, return_tensors="pt")
                hidden = self.model(inputs["input_values"].to(self.device)).last_hidden_state[0]
                out.append(hidden.float().cpu().numpy())
        return out


def _min_samples(model) -> int:
    """Fewest input samples that give one output frame (the conv stack's receptive field)."""
    kernels, strides = model.config.conv_kernel, model.config.conv_stride
    needed = 1
    for kernel, stride in reversed(list(zip(kernels, strides))):
        needed = (needed - 1) * stride + kernel
    return needed


