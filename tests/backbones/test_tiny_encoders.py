"""clip and hf: backbones built from tiny random models saved in their real layouts,
and the clear failure when a hub model is neither cached nor reachable."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mmtk.backbones import BadInput, resolve_backbone
from mmtk.errors import UsageError
from tiny_models import write_image


def encode(encoder, values):
    return encoder.encode(encoder.collate([encoder.load(v) for v in values]))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return [
        str(write_image(root / "a.jpg", seed=1)),
        str(write_image(root / "b.png", seed=2, size=(40, 120))),
        str(write_image(root / "c.webp", seed=3, size=(300, 200))),
    ]


def test_clip_image_tower_gives_normalised_batch_independent_vectors(tiny_clip_dir, images):
    config = resolve_backbone(f"clip:local-dir:{tiny_clip_dir}")
    encoder = config.build("cpu")
    assert config.modality == "image" and encoder.dim == config.dim == 16

    batch = encode(encoder, images)
    assert batch.shape == (3, 16) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(encode(encoder, images[1:2])[0], batch[1], atol=1e-5)
    assert np.array_equal(encode(encoder, images), batch)
    assert not np.allclose(batch[0], batch[1])


def test_clip_text_tower_is_picked_by_modality(tiny_clip_dir):
    config = resolve_backbone(f"clip:local-dir:{tiny_clip_dir}", "text")
    encoder = config.build("cpu")
    vectors = encode(encoder, ["a funny cat", "sad rain"])
    assert config.modality == "text" and vectors.shape == (2, 16)
    assert not np.allclose(vectors[0], vectors[1])
    with pytest.raises(BadInput, match="empty text"):
        encoder.load("   ")


def test_undecodable_image_is_a_bad_input(tiny_clip_dir, tmp_path):
    encoder = resolve_backbone(f"clip:local-dir:{tiny_clip_dir}").build("cpu")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(BadInput, match="cannot decode image"):
        encoder.load(str(broken))


def test_hf_text_encoder_mean_pools_over_real_tokens_only(tiny_bert_dir):
    config = resolve_backbone(f"hf:{tiny_bert_dir}")
    encoder = config.build("cpu")
    assert config.dim == encoder.dim == 32 and config.spec == f"hf:{tiny_bert_dir.resolve()}"

    alone = encode(encoder, ["the cat"])
    # Batched with a longer text, "the cat" gets padding; the masked mean ignores it.
    padded = encode(encoder, ["the cat", "the dog is not a happy meme in the rain"])
    assert padded.shape == (2, 32)
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)
    assert not np.allclose(padded[0], padded[1])


@pytest.mark.parametrize(
    ("spec", "local_form"),
    [
        ("hf:bert-base-uncased", "pass hf:/path/to/model"),
        ("hf-audio:facebook/wav2vec2-base", "pass hf-audio:/path/to/model"),
        ("detr:facebook/detr-resnet-101", "pass detr:/path/to/model"),
        ("clip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "pass clip:local-dir:/path/to/model"),
        ("clip-patches:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "pass clip-patches:local-dir:/path/to/model"),
    ],
)
def test_uncached_hub_model_fails_fast_naming_the_form_that_works_for_that_backbone(spec, local_form):
    """The hint names the spec that loads a downloaded copy for THIS backbone (``hf:``
    takes a folder as it is; ``hf:local-dir:PATH`` fails the same way again) and the
    offline defaults."""
    from mmtk.backbones.hub import cached_revision

    if cached_revision(spec.split(":")[-1]) is not None:
        pytest.skip(f"{spec} is in the local hub cache")
    started = time.monotonic()
    with pytest.raises(UsageError) as error:
        resolve_backbone(spec).build("cpu")
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert "model hub is unreachable and no local copy exists" in message and "\n" not in message
    assert local_form in message and "efficientnet-lite0" in message and "minilm" in message


def test_unreachable_hub_is_reported_without_trying_the_download(monkeypatch):
    """huggingface_hub retries a failed request five times with backoff (about 25 s per
    file); a refused connection to the endpoint must end it at once."""
    import socket

    from mmtk.backbones import hub

    def refuse(address, timeout=None):
        raise OSError("Name or service not known")

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    calls = []

    def load(local_only):
        calls.append(local_only)
        raise FileNotFoundError("not in the cache")

    with pytest.raises(UsageError, match="model hub is unreachable and no local copy exists"):
        hub.load_cached_first("hf:some/model", load, local_form="hf:/path/to/model")
    assert calls == [True]  # the cache was tried, the network never
