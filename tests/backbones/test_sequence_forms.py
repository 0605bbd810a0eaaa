"""Sequence forms (``--sequence``, ``BACKBONE:seq``): token states of the text backbones
and the spatial grid of efficientnet-lite0, against the pooled vectors they pool to."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.backbones import FeatureOptions, resolve_backbone
from mmtk.errors import UsageError
from tiny_models import write_image

TEXTS = ["a cat meme", "the weather is lovely today, the sun is out and nobody is sad", "ok"]
LONG = " ".join(["the funny cat is not a sad dog"] * 20)


def encode(encoder, values):
    return encoder.encode(encoder.collate([encoder.load(v) for v in values]))


def token_count(encoder, text: str) -> int:
    """Tokens the tokenizer makes of ``text`` with special tokens, before any truncation."""
    return len(encoder.tokenizer(text)["input_ids"])


def assert_batch_independent(encoder, values, batched, atol=1e-5):
    for value, together in zip(values, batched):
        np.testing.assert_allclose(encode(encoder, [value])[0], together, atol=atol)


@pytest.fixture(scope="module")
def minilm_tokens():
    return resolve_backbone("minilm", "text", sequence=True).build("cpu")


@pytest.fixture(scope="module")
def minilm_pooled():
    return resolve_backbone("minilm").build("cpu")


def test_sequence_forms_have_their_own_fingerprints_and_keep_the_spec():
    for spec in ("minilm", "efficientnet-lite0"):
        pooled, sequence = resolve_backbone(spec), resolve_backbone(spec, sequence=True)
        assert (sequence.spec, sequence.modality, sequence.dim) == (pooled.spec, pooled.modality, pooled.dim)
        assert (pooled.kind, sequence.kind) == ("vector", "sequence")
        assert sequence.fingerprint != pooled.fingerprint
        assert sequence.sequence_form is None
    short = FeatureOptions(max_length=16)
    # max_length changes the text sequence form only: not the pooled vector, not the image grid.
    assert resolve_backbone("minilm", sequence=True, options=short).fingerprint != resolve_backbone("minilm", sequence=True).fingerprint
    assert resolve_backbone("minilm", options=short).fingerprint == resolve_backbone("minilm").fingerprint
    grid = resolve_backbone("efficientnet-lite0", sequence=True)
    assert resolve_backbone("efficientnet-lite0", sequence=True, options=short).fingerprint == grid.fingerprint
    # What store ls shows beside the spec, to tell the forms apart.
    assert [resolve_backbone(spec).variant for spec in ("minilm", "efficientnet-lite0")] == ["", ""]
    assert (resolve_backbone("minilm", sequence=True, options=short).variant, grid.variant) == ("seq max_length=16", "seq 7x7 grid")


def test_backbones_without_a_sequence_form_say_so():
    with pytest.raises(UsageError, match="'pixels' has no sequence form") as error:
        resolve_backbone("pixels", sequence=True)
    assert "drop :seq / --sequence for pixels" in error.value.hint


def test_minilm_tokens_are_the_attended_token_states(minilm_tokens, minilm_pooled):
    sequences = encode(minilm_tokens, TEXTS)
    assert [s.shape for s in sequences] == [(token_count(minilm_tokens, t), 384) for t in TEXTS]
    assert all(s.dtype == np.float32 for s in sequences)
    # [CLS] and [SEP] are stored: "ok" is three tokens.
    assert sequences[2].shape[0] == 3
    # The pooled vector is their mean, L2-normalised (sentence-transformers' pooling).
    pooled = encode(minilm_pooled, TEXTS)
    means = np.stack([s.mean(axis=0) for s in sequences])
    np.testing.assert_allclose(means / np.linalg.norm(means, axis=1, keepdims=True), pooled, atol=1e-5)
    # Padding for the longest text of the batch changes nothing of the shorter ones.
    assert_batch_independent(minilm_tokens, TEXTS, sequences)


def test_minilm_tokens_truncate_at_max_length(minilm_tokens):
    assert token_count(minilm_tokens, LONG) > 128
    default, = encode(minilm_tokens, [LONG])
    assert default.shape == (128, 384)
    short_encoder = resolve_backbone("minilm", sequence=True, options=FeatureOptions(max_length=16)).build("cpu")
    short = encode(short_encoder, [LONG, "ok"])
    assert [s.shape[0] for s in short] == [16, 3]
    # Truncation keeps [CLS], the first 14 tokens and [SEP]: the states are those of
    # the text made of just those 14 tokens.
    kept = short_encoder.tokenizer(LONG, truncation=True, max_length=16)["input_ids"][1:-1]
    prefix, = encode(short_encoder, [short_encoder.tokenizer.decode(kept)])
    np.testing.assert_allclose(short[0], prefix, atol=1e-5)


def test_hf_tokens_through_a_local_model_directory(tiny_bert_dir):
    pooled_config = resolve_backbone(f"hf:{tiny_bert_dir}")
    config = resolve_backbone(f"hf:{tiny_bert_dir}", sequence=True, options=FeatureOptions(max_length=8))
    assert (config.kind, config.spec) == ("sequence", pooled_config.spec)
    encoder = config.build("cpu")
    texts = ["the cat", "the dog is funny not sad", "the cat is a happy meme in the sun and rain"]
    sequences = encode(encoder, texts)
    assert [s.shape for s in sequences] == [(min(token_count(encoder, t), 8), 32) for t in texts]
    assert sequences[2].shape[0] == 8
    # The hf pooled vector is the plain masked mean (no normalisation).
    pooled = encode(pooled_config.build("cpu"), texts[:2])
    np.testing.assert_allclose(np.stack([s.mean(axis=0) for s in sequences[:2]]), pooled, atol=1e-5)
    assert_batch_independent(encoder, texts, sequences)


def test_hf_tokens_refuse_more_tokens_than_the_model_reads(tiny_bert_dir):
    # The tiny BERT has 160 positions and a tokenizer without a limit of its own.
    config = resolve_backbone(f"hf:{tiny_bert_dir}", sequence=True, options=FeatureOptions(max_length=500))
    with pytest.raises(UsageError, match="--max-length 500 is more than the 160 tokens") as error:
        config.build("cpu")
    assert error.value.hint == "pass --max-length 160 or less"


@pytest.fixture(scope="module")
def efficientnet_grid():
    return resolve_backbone("efficientnet-lite0", sequence=True).build("cpu")


def test_efficientnet_grid_averages_to_the_pooled_vector(efficientnet_grid, tmp_path):
    images = [
        str(write_image(tmp_path / "one.jpg", seed=1, size=(320, 240))),
        str(write_image(tmp_path / "two.png", seed=2, size=(200, 260))),
    ]
    grids = encode(efficientnet_grid, images)
    assert [g.shape for g in grids] == [(49, 1280), (49, 1280)] and grids[0].dtype == np.float32
    pooled = encode(resolve_backbone("efficientnet-lite0").build("cpu"), images)
    np.testing.assert_allclose(np.stack([g.mean(axis=0) for g in grids]), pooled, atol=1e-5)
    assert_batch_independent(efficientnet_grid, images, grids, atol=1e-4)


def test_efficientnet_grid_steps_are_row_major(efficientnet_grid, tmp_path):
    """Noise in the top-right cell of a flat grey picture changes the steps of the
    grid's top-right corner (read row-major); column-major order would put the change
    in the bottom-left corner instead."""
    from PIL import Image

    # 256 px: the resize to 256 keeps it, the centre crop starts at (16, 16).
    grey = np.full((256, 256, 3), 128, np.uint8)
    marked = grey.copy()
    marked[16:48, 16 + 192 : 16 + 224] = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(marked).save(tmp_path / "marked.png")
    plain, noisy = encode(efficientnet_grid, [str(tmp_path / "grey.png"), str(tmp_path / "marked.png")])
    change = np.linalg.norm(noisy - plain, axis=1).reshape(7, 7)
    assert change[:3, 4:].sum() > 0.7 * change.sum()
    assert change[4:, :3].sum() < 0.01 * change.sum()
