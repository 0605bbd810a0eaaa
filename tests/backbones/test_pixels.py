"""pixels: the resized image flattened to [0, 1], gray or RGB; specs checked."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmtk.backbones import BadInput, resolve_backbone
from mmtk.errors import UsageError


def test_gray_pixels_of_an_8x8_digit(tmp_path):
    values = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    path = tmp_path / "digit.png"
    Image.fromarray(values, mode="L").save(path)
    same_size = resolve_backbone("pixels:8").build("cpu")
    row = same_size.encode(same_size.collate([same_size.load(str(path))]))
    np.testing.assert_allclose(row[0], values.reshape(-1) / 255.0, atol=1e-6)  # no resize: exact

    default = resolve_backbone("pixels")
    encoder = default.build("cpu")
    features = encoder.encode(encoder.collate([encoder.load(str(path))]))
    assert features.shape == (1, 256) == (1, default.dim) and features.dtype == np.float32
    assert 0.0 <= features.min() and features.max() <= 1.0
    grid = features[0].reshape(16, 16)
    assert grid[0, 0] < grid[0, -1] < grid[-1, -1]  # the gradient survives the upscale


def test_rgb_keeps_channels(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (20, 10), (255, 0, 0)).save(path)
    encoder = resolve_backbone("pixels:4:rgb").build("cpu")
    pixels = encoder.load(str(path)).reshape(4, 4, 3)
    np.testing.assert_allclose(pixels[..., 0], 1.0)
    np.testing.assert_allclose(pixels[..., 1:], 0.0)


@pytest.mark.parametrize("spec", ["pixels:0", "pixels:big", "pixels:8:8", "pixels:999"])
def test_bad_specs_are_usage_errors(spec):
    with pytest.raises(UsageError, match="pixels"):
        resolve_backbone(spec)


def test_fingerprint_follows_size_and_channels():
    prints = {resolve_backbone(s).fingerprint for s in ("pixels", "pixels:16", "pixels:8", "pixels:16:rgb")}
    assert len(prints) == 3  # pixels == pixels:16


def test_undecodable_image_is_a_bad_input(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(BadInput, match="cannot decode"):
        resolve_backbone("pixels").build("cpu").load(str(path))
