"""Feature references and feature loading at their edges: exact refusals, options that
travel with a reference into runs, extraction of what is missing with the reference's
own column / sequence form / options, and which records training, evaluation and
prediction keep when some items have no features (``items_with_features``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmtk.backbones import FeatureOptions, resolve_backbone
from mmtk.data import content_keys, read_dataset
from mmtk.errors import DataError, StoreError, UsageError
from mmtk.features import (
    FEATURE_FORMS,
    FeatureRef,
    gather_features,
    items_with_features,
    load_features,
    parse_feature_refs,
    required_columns,
    resolve_features,
)
from mmtk.store import FeatureStore

TABULAR_HINT = "write tabular and name its columns with --cat-cols/--num-cols or --columns FILE"


@pytest.mark.parametrize(
    "text, message, hint",
    [
        ("  ", "empty feature reference", f"write {FEATURE_FORMS}"),
        ("minilm@", "feature reference 'minilm@' ends with '@'", f"write {FEATURE_FORMS}"),
        (":seq", "feature reference ':seq' names no backbone", f"write {FEATURE_FORMS}"),
        ("tabular:seq", "feature reference 'tabular:seq': tabular takes no ':seq' or '@COLUMN'", TABULAR_HINT),
        ("tabular@price", "feature reference 'tabular@price': tabular takes no ':seq' or '@COLUMN'", TABULAR_HINT),
    ],
)
def test_bad_references_say_what_to_write(text, message, hint):
    with pytest.raises(UsageError) as error:
        FeatureRef.parse(text)
    assert (error.value.message, error.value.hint) == (message, hint)


def test_names_that_only_begin_with_tabular_are_backbones():
    assert FeatureRef.parse("tabular") == FeatureRef("tabular") and FeatureRef("tabular").is_tabular
    for name in ("tabulator", "tabularXL"):
        ref = FeatureRef.parse(name)
        assert ref.backbone == name and not ref.is_tabular


def test_feature_lists_refuse_nothing_and_repeats():
    with pytest.raises(UsageError) as error:
        parse_feature_refs([])
    assert (error.value.message, error.value.hint) == ("no features given", "name at least one, e.g. --features efficientnet-lite0,minilm")
    with pytest.raises(UsageError) as error:
        parse_feature_refs(["minilm", "pixels", "minilm"])
    assert (error.value.message, error.value.hint) == ("feature 'minilm' is listed twice", "name each feature once")


def test_options_travel_with_a_reference_through_its_json():
    ref = parse_feature_refs(["minilm:seq"], FeatureOptions(max_length=16))[0]
    data = ref.to_json()
    assert data == {"ref": "minilm:seq", "backbone": "minilm", "sequence": True, "column": None, "options": {"max_length": 16}}
    assert FeatureRef.from_json(json.loads(json.dumps(data))) == ref
    # Default options are left out of run configs and come back as the defaults.
    plain = FeatureRef.parse("minilm")
    assert "options" not in plain.to_json() and FeatureRef.from_json(plain.to_json()).options == FeatureOptions()


def test_tabular_anywhere_in_the_list_is_skipped_by_columns_and_resolution(tmp_path):
    assert required_columns(["tabular", "minilm", "pixels@photo"]) == ["text", "photo"]
    dataset = _images(tmp_path, 2)
    resolved = resolve_features(dataset, ["tabular", "pixels:4"])
    assert [feature.name for feature in resolved] == ["pixels:4"]


def test_resolution_uses_the_reference_s_options():
    from mmtk.data.records import Columns, Dataset, Record

    dataset = Dataset(source="d.jsonl", root=".", records=[Record("0", 1, {"id": "0", "text": "a cat"})], columns=Columns(id="id", text="text"))
    ref = parse_feature_refs(["minilm:seq"], FeatureOptions(max_length=16))[0]
    feature = resolve_features(dataset, [ref])[0]
    assert feature.backbone.fingerprint == resolve_backbone("minilm", "text", sequence=True, options=FeatureOptions(max_length=16)).fingerprint
    assert feature.backbone.fingerprint != resolve_backbone("minilm", "text", sequence=True).fingerprint


# --- loading with a store -----------------------------------------------------------------


def _images(tmp_path, n: int, *, bad: tuple[int, ...] = (), column: str = "img", name: str = "d.jsonl"):
    rows = []
    for i in range(n):
        path = tmp_path / f"{name}-{i}.png"
        if i in bad:
            path.write_bytes(b"not an image")
        else:
            Image.new("RGB", (6, 6), (40 * i % 256, 7, 99)).save(path)
        rows.append({"id": f"item{i}", column: path.name, "other": path.name})
    data = tmp_path / name
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return read_dataset(data, image_column=column)


def test_missing_features_are_refused_unless_asked_to_extract(tmp_path):
    dataset = _images(tmp_path, 2)
    store = FeatureStore(tmp_path / "own-store")
    resolved = resolve_features(dataset, ["pixels:4"])
    with pytest.raises(StoreError) as error:
        gather_features(dataset, resolved, store)
    assert error.value.message == f"2 of 2 'img' items of {dataset.source} have no pixels:4 (image) features in store {store.root}"
    assert error.value.hint == f"run: mmtk extract-features {dataset.source} --backbone pixels:4 --column img --store {store.root}"
    arrays = gather_features(dataset, resolved, store, extract_missing=True)  # default device
    assert arrays["pixels:4"].shape == (2, 16) and arrays["pixels:4"].dtype == np.float32


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from tiny_models import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _texts(tmp_path, rows: list[dict]):
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"id": f"item{i}", **row}) + "\n" for i, row in enumerate(rows)), encoding="utf-8")
    return read_dataset(data)


def test_extraction_of_missing_features_follows_the_reference(tmp_path, tiny_bert):
    """The reference's column, sequence form and options, and the progress callback,
    reach the extraction: the features then read back under its own fingerprint."""
    dataset = _texts(tmp_path, [{"text": "ignored", "title": "a cat"}, {"text": "ignored too", "title": "the sad dog is funny"}])
    store = FeatureStore(tmp_path / "own-store")
    ref = parse_feature_refs([f"hf:{tiny_bert}:seq@title"], FeatureOptions(max_length=4))[0]
    calls = []
    arrays = gather_features(
        dataset, resolve_features(dataset, [ref]), store, extract_missing=True, device="cpu", progress=lambda d, t: calls.append((d, t))
    )
    assert arrays[ref.name].shape == (2, 32) and calls and calls[-1] == (2, 2)
    config = resolve_backbone(f"hf:{tiny_bert}", "text", sequence=True, options=FeatureOptions(max_length=4))
    _, lengths = store.gather_sequences(config.fingerprint, content_keys(dataset.values("title"), "text"))
    assert lengths.tolist() == [4, 4]  # [CLS] a cat [SEP]; the long title cut at 4


def test_items_with_features_extracts_as_the_reference_says(tmp_path, tiny_bert):
    dataset = _texts(tmp_path, [{"text": "ignored", "title": "a cat"}, {"text": "ignored too", "title": "the sad dog is funny"}])
    store = FeatureStore(tmp_path / "own-store")
    ref = parse_feature_refs([f"hf:{tiny_bert}:seq@title"], FeatureOptions(max_length=4))[0]
    calls = []
    kept, skipped = items_with_features(
        dataset, resolve_features(dataset, [ref]), store, extract_missing=True, on_error="skip", progress=lambda d, t: calls.append((d, t))
    )
    assert kept is dataset and skipped == [] and calls[-1] == (2, 2)
    config = resolve_backbone(f"hf:{tiny_bert}", "text", sequence=True, options=FeatureOptions(max_length=4))
    assert store.missing(config.fingerprint, content_keys(dataset.values("title"), "text")) == []


def test_load_features_extracts_with_progress(tmp_path):
    dataset = _images(tmp_path, 2)
    calls = []
    arrays = load_features(dataset, ["pixels:4"], FeatureStore(tmp_path / "own-store"), extract_missing=True, progress=lambda d, t: calls.append((d, t)))
    assert arrays["pixels:4"].shape == (2, 16) and calls[-1] == (2, 2)


def test_the_missing_features_command_carries_every_option(tmp_path):
    dataset = _texts(tmp_path, [{"text": "a cat"}])
    refs = parse_feature_refs(["minilm:seq"], FeatureOptions(max_length=16, fps=2.0))
    with pytest.raises(StoreError) as error:
        gather_features(dataset, resolve_features(dataset, refs), FeatureStore(tmp_path / "own-store"))
    assert error.value.hint.endswith(f"--column text --sequence --max-length 16 --fps 2.0 --store {tmp_path / 'own-store'}")


def test_masked_mean_gives_float32_whatever_comes_in():
    from mmtk.features import masked_mean

    pooled = masked_mean(np.ones((2, 3, 4), np.float64), np.array([3, 0]))
    assert pooled.dtype == np.float32 and pooled.tolist() == [[1.0] * 4, [0.0] * 4]


def _store_some(tmp_path, dataset, rows: list[int]) -> FeatureStore:
    store = FeatureStore(tmp_path / "own-store")
    config = resolve_backbone("pixels:4", "image")
    store.register(config.fingerprint, {"backbone": config.spec, "modality": "image", "kind": "vector", "dim": 16})
    keys = content_keys(dataset.values("img"), "image")
    store.put(config.fingerprint, [keys[r] for r in rows], [np.full(16, r, np.float32) for r in rows])
    return store


def test_all_stored_keeps_every_record(tmp_path):
    dataset = _images(tmp_path, 3)
    store = _store_some(tmp_path, dataset, [0, 1, 2])
    kept, skipped = items_with_features(dataset, resolve_features(dataset, ["pixels:4"]), store, on_error="skip")
    assert kept is dataset and skipped == []


def test_records_without_features_are_left_out_with_skip_and_refused_without(tmp_path):
    dataset = _images(tmp_path, 4)
    store = _store_some(tmp_path, dataset, [0, 2])
    resolved = resolve_features(dataset, ["pixels:4"])
    kept, skipped = items_with_features(dataset, resolved, store, on_error="skip")
    assert [r.id for r in kept.records] == ["item0", "item2"]
    assert [(bad.line, bad.item) for bad in skipped] == [(2, "item1"), (4, "item3")]
    assert skipped[0].reason == f"no pixels:4 (image) features in store {store.root} (skipped at extraction?)"
    assert skipped[0].source == str(dataset.source)
    for refused in ({"on_error": "fail"}, {}):  # failing is the default
        with pytest.raises(StoreError) as error:
            items_with_features(dataset, resolved, store, **refused)
        assert error.value.message == f"2 of 4 'img' items of {dataset.source} have no pixels:4 (image) features in store {store.root}"


def test_a_later_feature_leaves_out_records_after_a_complete_one(tmp_path):
    dataset = _images(tmp_path, 3)
    store = _store_some(tmp_path, dataset, [0, 1, 2])  # pixels:4 complete
    other = resolve_backbone("pixels:3", "image")
    store.register(other.fingerprint, {"backbone": other.spec, "modality": "image", "kind": "vector", "dim": 9})
    keys = content_keys(dataset.values("img"), "image")
    store.put(other.fingerprint, keys[:2], [np.zeros(9, np.float32)] * 2)
    kept, skipped = items_with_features(dataset, resolve_features(dataset, ["pixels:4", "pixels:3"]), store, on_error="skip")
    assert [r.id for r in kept.records] == ["item0", "item1"] and [b.item for b in skipped] == ["item2"]


def test_a_feature_missing_everywhere_means_extraction_never_ran(tmp_path):
    dataset = _images(tmp_path, 2)
    store = _store_some(tmp_path, dataset, [])
    with pytest.raises(StoreError) as error:
        items_with_features(dataset, resolve_features(dataset, ["pixels:4"]), store, on_error="skip")
    assert error.value.hint.startswith(f"run: mmtk extract-features {dataset.source} --backbone pixels:4 --column img")


def test_extracting_names_why_an_item_was_left_out(tmp_path):
    dataset = _images(tmp_path, 3, bad=(1,))
    store = FeatureStore(tmp_path / "own-store")
    kept, skipped = items_with_features(dataset, resolve_features(dataset, ["pixels:4"]), store, extract_missing=True, on_error="skip")
    assert [r.id for r in kept.records] == ["item0", "item2"]
    assert len(skipped) == 1 and skipped[0].item == "item1" and "cannot decode image" in skipped[0].reason


def test_every_item_left_out_is_an_error_naming_the_first_and_the_command(tmp_path):
    dataset = _images(tmp_path, 2, bad=(0, 1))
    store = FeatureStore(tmp_path / "own-store")
    with pytest.raises(DataError) as error:
        items_with_features(dataset, resolve_features(dataset, ["pixels:4"]), store, extract_missing=True, on_error="skip")
    assert error.value.message.startswith(f"every item of {dataset.source} was left out, the first: {dataset.source}:1 (item 'item0')")
    assert error.value.hint == (
        f"fix them; this lists each one: mmtk extract-features {dataset.source} --backbone pixels:4 --column img "
        f"--store {store.root} --on-error skip"
    )


@pytest.mark.parametrize("text_first", [False, True])
def test_the_feature_that_left_out_the_first_record_is_named(tmp_path, tiny_bert, text_first):
    """Pictures leave out item1, texts item0: all are left out, and the message and
    command are about the text feature, which left out the first record."""
    rows = [{"text": " ", "img": "ok.png"}, {"text": "a cat", "img": "bad.png"}]
    Image.new("RGB", (6, 6)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    data = tmp_path / "both.jsonl"
    data.write_text("".join(json.dumps({"id": f"item{i}", **row}) + "\n" for i, row in enumerate(rows)), encoding="utf-8")
    dataset = read_dataset(data)
    store = FeatureStore(tmp_path / "own-store")
    refs = ["pixels:4", f"hf:{tiny_bert}"]
    resolved = resolve_features(dataset, refs[::-1] if text_first else refs)
    with pytest.raises(DataError) as error:
        items_with_features(dataset, resolved, store, extract_missing=True, on_error="skip", device="cpu")
    assert error.value.message.startswith(f"every item of {data} was left out, the first: {data}:1 (item 'item0'): empty text")
    assert f"--backbone hf:{tiny_bert} --column text" in error.value.hint


@pytest.mark.parametrize("ref, shown", [(" minilm ", "minilm"), ("tabular", "tabular")])
def test_frame_times_of_a_feature_without_frames_are_refused(tmp_path, ref, shown):
    from mmtk.features import gather_timestamps

    dataset = _texts(tmp_path, [{"text": "a cat"}])
    with pytest.raises(UsageError) as error:
        gather_timestamps(dataset, ref, FeatureStore(tmp_path / "own-store"))
    assert (error.value.message, error.value.hint) == (
        f"feature {shown!r} does not encode video frames, so it has no frame times",
        "name an image backbone on a video column, e.g. pixels@video",
    )
