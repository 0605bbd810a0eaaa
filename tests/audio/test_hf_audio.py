"""hf-audio with a tiny random wav2vec2 saved to a directory: frames stored as a
sequence, pooled for vector models, too-short clips reported, hub names fail fast."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from generated_media import tone, write_wav
from mmtk.backbones import BadInput, resolve_backbone
from mmtk.data import content_key, read_dataset
from mmtk.errors import UsageError
from mmtk.extract import extract_features
from mmtk.features import load_features
from mmtk.store import FeatureStore


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    directory = tmp_path_factory.mktemp("tiny_wav2vec2")
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, do_stable_layer_norm=True, feat_extract_norm="layer",
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(directory)
    return directory


def test_frames_stored_as_sequence_and_pooled(tiny_wav2vec2, tmp_path):
    clips = [write_wav(tmp_path / f"c{i}.wav", tone(0.2 + 0.15 * i, 16000, 300 * (i + 1), seed=i), 16000) for i in range(3)]
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "audio"])
        writer.writerows([f"c{i}", str(clip)] for i, clip in enumerate(clips))
    spec = f"hf-audio:{tiny_wav2vec2}"
    config = resolve_backbone(spec)
    assert (config.kind, config.dim, config.modality) == ("sequence", 16, "audio")

    store = FeatureStore(tmp_path / "store")
    dataset = read_dataset(path)
    report = extract_features(dataset, spec, store=store, batch_size=2)
    assert report.computed == 3
    keys = [content_key(str(clip), "audio") for clip in clips]
    steps, lengths = store.gather_sequences(config.fingerprint, keys)
    # Two convolutions, strides 5 and 4: one frame per 20 samples after the receptive field.
    for row, seconds in enumerate([0.2, 0.35, 0.5]):
        samples = int(round(seconds * 16000))
        assert lengths[row] == ((samples - 10) // 5 + 1 - 8) // 4 + 1

    encoder = config.build("cpu")
    alone = encoder.encode([encoder.load(str(clips[1]))])[0]
    np.testing.assert_allclose(steps[1, : lengths[1]], alone, atol=1e-5)  # batch-independent

    pooled = load_features(dataset, [spec, spec + ":seq"], store)
    for ref in (spec, spec + ":seq"):
        np.testing.assert_allclose(pooled[ref][1], alone.mean(axis=0), atol=1e-5)


def test_clip_shorter_than_the_receptive_field_is_a_bad_input(tiny_wav2vec2, tmp_path):
    encoder = resolve_backbone(f"hf-audio:{tiny_wav2vec2}").build("cpu")
    assert encoder.min_samples == 10 + 5 * 7  # kernel 10, then kernel 8 at stride 5
    short = write_wav(tmp_path / "short.wav", tone(0.002, 16000), 16000)
    with pytest.raises(BadInput):
        encoder.load(str(short))


def test_missing_directory_and_uncached_hub_model():
    with pytest.raises(UsageError, match="not found"):
        resolve_backbone("hf-audio:./no-such-model")
    with pytest.raises(UsageError) as error:
        resolve_backbone("hf-audio:facebook/wav2vec2-base").build("cpu")
    message = str(error.value)
    assert "model hub is unreachable and no local copy exists" in message and "\n" not in message
