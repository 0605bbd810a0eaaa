"""clip-patches with a tiny random open_clip model: five unit rows per image, row 0 the
plain clip vector, rows 1-4 the clip vectors of the four quadrants cut by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmtk.backbones import BadInput, resolve_backbone
from mmtk.backbones.images import open_rgb
from mmtk.data import content_key, read_dataset
from mmtk.errors import UsageError
from mmtk.extract import extract_features
from mmtk.features import load_features
from mmtk.store import FeatureStore
from tiny_models import write_image


def encode(encoder, values):
    return encoder.encode(encoder.collate([encoder.load(v) for v in values]))


@pytest.fixture(scope="module")
def encoders(tiny_clip_dir):
    patches = resolve_backbone(f"clip-patches:local-dir:{tiny_clip_dir}")
    return patches, patches.build("cpu"), resolve_backbone(f"clip:local-dir:{tiny_clip_dir}").build("cpu")


def clip_of_crops(clip_encoder, image, boxes, directory):
    paths = []
    for index, box in enumerate(boxes):
        paths.append(str(directory / f"crop{index}.png"))
        image.crop(box).save(paths[-1])
    return encode(clip_encoder, paths)


def test_rows_are_whole_then_quadrants_each_a_clip_vector(encoders, tmp_path):
    config, patches, clip = encoders
    assert (config.kind, config.modality, config.dim, patches.dim) == ("sequence", "image", 16, 16)
    # Odd sides: the split is at (48, 40), the right and bottom quadrants get the extra pixel.
    picture = write_image(tmp_path / "odd.png", seed=7, size=(97, 81))
    other = write_image(tmp_path / "other.png", seed=8, size=(60, 150))

    rows, other_rows = encode(patches, [str(picture), str(other)])
    assert rows.shape == (5, 16) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(rows[0], encode(clip, [str(picture)])[0], atol=1e-5)
    boxes = [(0, 0, 48, 40), (48, 0, 97, 40), (0, 40, 48, 81), (48, 40, 97, 81)]
    np.testing.assert_allclose(rows[1:], clip_of_crops(clip, Image.open(picture), boxes, tmp_path), atol=1e-5)
    assert min(np.linalg.norm(rows[i] - rows[j]) for i in range(5) for j in range(i + 1, 5)) > 1e-3
    # Each image's rows do not depend on the others in its batch.
    np.testing.assert_allclose(encode(patches, [str(other)])[0], other_rows, atol=1e-5)


def test_large_jpeg_quadrants_come_from_a_finer_draft(encoders, tmp_path):
    _, patches, clip = encoders
    photo = write_image(tmp_path / "photo.jpg", seed=3, size=(400, 300))
    # The tiny model's input is 32 px: clip drafts the JPEG down to 50x38, too coarse to
    # give 32-px quadrants; they come from the draft to >= 64 px instead.
    assert open_rgb(str(photo), draft_size=32).size == (50, 38)
    detail = open_rgb(str(photo), draft_size=64)
    assert detail.size == (100, 75)

    rows = encode(patches, [str(photo)])[0]
    np.testing.assert_allclose(rows[0], encode(clip, [str(photo)])[0], atol=1e-5)
    boxes = [(0, 0, 50, 37), (50, 0, 100, 37), (0, 37, 50, 75), (50, 37, 100, 75)]
    np.testing.assert_allclose(rows[1:], clip_of_crops(clip, detail, boxes, tmp_path), atol=1e-5)


def test_spec_fingerprint_and_refusals(tiny_clip_dir, encoders, tmp_path):
    config, patches, _ = encoders
    default = resolve_backbone("clip-patches")
    assert default.spec == "clip-patches:ViT-B-32@laion2b_s34b_b79k" == "clip-patches:" + resolve_backbone("clip").spec[5:]
    assert config.spec == f"clip-patches:local-dir:{tiny_clip_dir.resolve()}"
    assert config.fingerprint != resolve_backbone(f"clip:local-dir:{tiny_clip_dir}").fingerprint
    with pytest.raises(UsageError, match="encodes images, not text") as error:
        resolve_backbone(f"clip-patches:local-dir:{tiny_clip_dir}", "text")
    assert "use clip for a text column" in error.value.hint
    with pytest.raises(UsageError, match="clip-patches spec 'ViT-B-32' names no pretrained weights"):
        resolve_backbone("clip-patches:ViT-B-32")
    with pytest.raises(UsageError, match="no open_clip_config.json in clip-patches local-dir"):
        resolve_backbone(f"clip-patches:local-dir:{tmp_path}")

    dot = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(dot)
    with pytest.raises(BadInput, match="too small to split into quadrants"):
        patches.load(str(dot))


def test_extracted_sequences_are_stored_and_pooled_by_their_mean(tiny_clip_dir, encoders, tmp_path):
    _, patches, _ = encoders
    images = [write_image(tmp_path / f"m{i}.png", seed=i, size=(50 + 10 * i, 40)) for i in range(3)]
    data = tmp_path / "memes.jsonl"
    data.write_text("".join(json.dumps({"id": f"m{i}", "img": p.name, "label": i % 2}) + "\n" for i, p in enumerate(images)))
    dataset = read_dataset(data)
    spec = f"clip-patches:local-dir:{tiny_clip_dir}"
    store = FeatureStore(tmp_path / "store")

    report = extract_features(dataset, spec, store=store, batch_size=2)
    assert report.computed == 3
    keys = [content_key(str(p), "image") for p in images]
    steps, lengths = store.gather_sequences(report.fingerprint, keys)
    assert steps.shape == (3, 5, 16) and lengths.tolist() == [5, 5, 5]
    np.testing.assert_allclose(steps[2], encode(patches, [str(images[2])])[0], atol=1e-5)
    pooled = load_features(dataset, [spec], store)[spec]
    np.testing.assert_allclose(pooled, steps.mean(axis=1), atol=1e-6)
