"""Feature references and loading stored features aligned with a dataset's records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmtk.backbones import FeatureOptions, resolve_backbone
from mmtk.data import content_keys, read_dataset
from mmtk.errors import StoreError, UsageError
from mmtk.features import FeatureRef, load_features, masked_mean, parse_feature_refs, required_columns, resolve_features
from mmtk.store import FeatureStore


@pytest.mark.parametrize(
    "text, backbone, sequence, column",
    [
        ("minilm", "minilm", False, None),
        ("minilm:seq", "minilm", True, None),
        ("minilm@title", "minilm", False, "title"),
        ("minilm:seq@title", "minilm", True, "title"),
        ("clip@text", "clip", False, "text"),
        # open_clip's MODEL@PRETRAINED is part of the backbone spec ...
        ("clip:ViT-B-32@laion2b_s34b_b79k", "clip:ViT-B-32@laion2b_s34b_b79k", False, None),
        # ... and a second @ names the column.
        ("clip:ViT-B-32@laion2b_s34b_b79k@text", "clip:ViT-B-32@laion2b_s34b_b79k", False, "text"),
        ("clip:ViT-B-32@laion2b_s34b_b79k:seq@text", "clip:ViT-B-32@laion2b_s34b_b79k", True, "text"),
    ],
)
def test_feature_ref_parsing(text, backbone, sequence, column):
    ref = FeatureRef.parse(text)
    assert (ref.backbone, ref.sequence, ref.column) == (backbone, sequence, column)
    assert ref.name == text
    assert FeatureRef.parse(ref.name) == ref == FeatureRef.from_json(json.loads(json.dumps(ref.to_json())))


@pytest.mark.parametrize("text, message", [("", "empty"), ("minilm@", "ends with '@'"), (":seq", "names no backbone")])
def test_bad_feature_refs(text, message):
    with pytest.raises(UsageError, match=message):
        FeatureRef.parse(text)


def test_feature_lists_and_required_columns():
    with pytest.raises(UsageError, match="'minilm' is listed twice"):
        parse_feature_refs(["minilm", "minilm"])
    with pytest.raises(UsageError, match="no features"):
        parse_feature_refs([])
    assert required_columns(["efficientnet-lite0", "minilm", "clip@text", "minilm@title"]) == ["image", "text", "title"]


@pytest.fixture
def dataset(tmp_path):
    rows = [
        {"id": "a", "img": "a.png", "text": "same words", "title": "first"},
        {"id": "b", "img": "b.png", "text": "other words", "title": "second"},
        {"id": "c", "img": "a2.png", "text": "same words", "title": "third"},
    ]
    for name, content in (("a.png", b"picture one"), ("b.png", b"picture two"), ("a2.png", b"picture one")):
        (tmp_path / name).write_bytes(content)
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_dataset(path)


def put_vectors(store, dataset, backbone, column, modality, dim):
    """Store a distinct vector per content key; return {key: vector}."""
    config = resolve_backbone(backbone, modality)
    keys = list(dict.fromkeys(content_keys(dataset.values(column), modality)))
    vectors = {key: np.full(dim, i + 1, dtype=np.float32) for i, key in enumerate(keys)}
    store.register(config.fingerprint, {"backbone": config.spec, "modality": modality, "kind": "vector", "dim": dim})
    store.put(config.fingerprint, list(vectors), list(vectors.values()))
    return vectors


def test_load_features_aligns_rows_with_records_and_shares_identical_content(tmp_path, dataset):
    store = FeatureStore(tmp_path / "store")
    put_vectors(store, dataset, "efficientnet-lite0", "img", "image", 4)
    put_vectors(store, dataset, "minilm", "text", "text", 3)
    put_vectors(store, dataset, "minilm", "title", "text", 3)
    arrays = load_features(dataset, ["efficientnet-lite0", "minilm", "minilm@title"], store)
    assert list(arrays) == ["efficientnet-lite0", "minilm", "minilm@title"]
    # Items a and c have the same picture bytes and the same text under other names.
    assert arrays["efficientnet-lite0"][:, 0].tolist() == [1, 2, 1]
    assert arrays["minilm"][:, 0].tolist() == [1, 2, 1]
    assert arrays["minilm@title"].shape == (3, 3) and arrays["minilm@title"].dtype == np.float32


def test_clip_on_a_text_column_resolves_the_text_tower(dataset):
    image, text = resolve_features(dataset, ["clip", "clip@text"])
    assert (image.column, image.backbone.modality) == ("img", "image")
    assert (text.column, text.backbone.modality) == ("text", "text")
    assert image.backbone.fingerprint != text.backbone.fingerprint


def test_missing_features_name_the_command_that_fills_them(tmp_path, dataset):
    default = FeatureStore(tmp_path / "store")  # $MMTK_STORE in the test suite
    put_vectors(default, dataset, "minilm", "text", "text", 3)
    with pytest.raises(StoreError, match=r"3 of 3 'title' items .* have no .*mmtk extract-features \S+d.jsonl --backbone minilm --column title$"):
        load_features(dataset, ["minilm", "minilm@title"], default)
    elsewhere = FeatureStore(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match=r"--backbone minilm --column text --store \S+elsewhere$"):
        load_features(dataset, ["minilm"], elsewhere)


def test_sequences_are_pooled_by_masked_mean(tmp_path, dataset):
    default = FeatureStore(tmp_path / "store")  # $MMTK_STORE in the test suite
    config = resolve_backbone("minilm", "text", sequence=True)
    default.register(config.fingerprint, {"backbone": config.spec, "modality": "text", "kind": "sequence", "dim": 2})
    keys = list(dict.fromkeys(content_keys(dataset.values("text"), "text")))
    default.put(config.fingerprint, keys, [np.array([[1, 2], [3, 4], [5, 9]], np.float32), np.array([[7, 7]], np.float32)])
    pooled = load_features(dataset, ["minilm:seq"], default)["minilm:seq"]
    np.testing.assert_allclose(pooled, [[3, 5], [7, 7], [3, 5]])
    # The pooled vector is another feature: with only the sequence stored, the user is
    # told to extract it.
    with pytest.raises(StoreError, match=r"2 of 2 'text' items .* have no minilm .*--backbone minilm --column text$"):
        load_features(dataset, ["minilm"], default)


def test_missing_sequences_name_the_sequence_extraction(tmp_path, dataset):
    store = FeatureStore(tmp_path / "store")
    put_vectors(store, dataset, "minilm", "text", "text", 3)  # the pooled form only
    with pytest.raises(StoreError, match=r"--backbone minilm --column text --sequence$"):
        load_features(dataset, ["minilm:seq"], store)
    short = parse_feature_refs(["minilm:seq@title"], FeatureOptions(max_length=16))
    with pytest.raises(StoreError, match=r"--backbone minilm --column title --sequence --max-length 16$"):
        load_features(dataset, short, store)


def test_masked_mean_ignores_padding_and_empty_sequences():
    steps = np.array([[[1.0, 1.0], [3.0, 5.0]], [[2.0, 4.0], [100.0, 100.0]], [[9.0, 9.0], [9.0, 9.0]]])
    np.testing.assert_allclose(masked_mean(steps, np.array([2, 1, 0])), [[2, 3], [2, 4], [0, 0]])


@pytest.mark.slow
def test_extract_missing_computes_features_with_the_real_backbone(tmp_path, dataset):
    store = FeatureStore(tmp_path / "store")
    arrays = load_features(dataset, ["minilm"], store, extract_missing=True, device="cpu")
    assert arrays["minilm"].shape == (3, 384)
    np.testing.assert_array_equal(arrays["minilm"][0], arrays["minilm"][2])
    assert store.missing(resolve_backbone("minilm").fingerprint, content_keys(dataset.values("text"), "text")) == []
