"""extract_features: only missing items are computed, duplicates once, bad items
reported by file:line, results independent of the number of workers.

A tiny random open_clip model (saved as a ``local-dir``) is registered as the backbone
``tiny-clip`` so these tests exercise the real clip loading code in milliseconds."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mmtk.backbones import BACKBONES, BackboneConfig, BadInput, resolve_backbone
from mmtk.backbones.base import BackgroundModel
from mmtk.backbones.clip import resolve_clip
from mmtk.backbones.efficientnet_lite import PREPROCESS
from mmtk.backbones.images import ImageEncoder
from mmtk.data import content_key, read_dataset
from mmtk.errors import DataError
from mmtk.extract import extract_features
from mmtk.store import FeatureStore
from tiny_models import save_tiny_clip, write_image

TINY = "tiny-clip"


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    directory = save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))

    def resolve_tiny(arg, modality):
        """A 16-d random CLIP for tests."""
        return dataclasses.replace(resolve_clip(f"local-dir:{directory}", modality), spec=TINY, name=TINY)

    BACKBONES.add(TINY, resolve_tiny)
    yield TINY
    BACKBONES.remove(TINY)


def write_dataset(root, images, texts=None):
    """JSONL with one record per (id, image file name); returns its path."""
    lines = []
    for index, (item_id, name) in enumerate(images):
        row = {"id": item_id, "img": name}
        if texts is not None:
            row["text"] = texts[index]
        lines.append(json.dumps(row))
    path = root / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def memes(tmp_path):
    """Four records: m1..m3 distinct pictures, m4 the same bytes as m1 under another name."""
    for seed in (1, 2, 3):
        write_image(tmp_path / f"m{seed}.jpg", seed=seed)
    shutil.copy(tmp_path / "m1.jpg", tmp_path / "copy_of_m1.jpg")
    return write_dataset(tmp_path, [("m1", "m1.jpg"), ("m2", "m2.jpg"), ("m3", "m3.jpg"), ("m4", "copy_of_m1.jpg")])


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "store")


def keys_of(dataset, modality="image"):
    return [content_key(value, modality) for value in dataset.values(modality)]


def test_same_image_under_two_ids_is_computed_once(tiny_backbone, memes, store):
    dataset = read_dataset(memes)
    calls = []
    report = extract_features(dataset, tiny_backbone, store=store, progress=lambda done, total: calls.append((done, total)))

    assert (report.total, report.unique, report.cached, report.computed) == (4, 3, 0, 3)
    assert report.skipped == [] and report.backbone == TINY and report.modality == "image"
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    features = store.gather(report.fingerprint, keys_of(dataset))
    assert features.shape == (4, 16) and features.dtype == np.float32
    assert np.array_equal(features[0], features[3])
    assert not np.allclose(features[0], features[1])


def test_cached_rerun_computes_nothing_and_never_builds_the_encoder(tiny_backbone, memes, store, monkeypatch):
    dataset = read_dataset(memes)
    first = extract_features(dataset, tiny_backbone, store=store)

    def no_build(self, device="cpu"):
        raise AssertionError("the encoder was built for a fully cached dataset")

    monkeypatch.setattr(BackboneConfig, "build", no_build)
    again = extract_features(dataset, tiny_backbone, store=store)
    assert (again.computed, again.cached, again.unique) == (0, 3, 3)
    assert again.fingerprint == first.fingerprint


def test_changed_image_is_recomputed(tiny_backbone, memes, store, tmp_path):
    dataset = read_dataset(memes)
    extract_features(dataset, tiny_backbone, store=store)
    before = store.gather(extract_features(dataset, tiny_backbone, store=store).fingerprint, keys_of(dataset))

    write_image(tmp_path / "m2.jpg", seed=99)
    report = extract_features(read_dataset(memes), tiny_backbone, store=store)
    assert (report.computed, report.cached) == (1, 2)
    after = store.gather(report.fingerprint, keys_of(read_dataset(memes)))
    assert np.array_equal(after[0], before[0]) and not np.allclose(after[1], before[1])


def test_unreadable_image_fails_naming_file_and_line_after_committing_the_rest(tiny_backbone, tmp_path, store):
    for seed in (1, 2, 4):
        write_image(tmp_path / f"m{seed}.jpg", seed=seed)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a picture")
    path = write_dataset(tmp_path, [("m1", "m1.jpg"), ("m2", "m2.jpg"), ("bad", "broken.jpg"), ("m4", "m4.jpg")])
    dataset = read_dataset(path)

    with pytest.raises(DataError) as error:
        extract_features(dataset, tiny_backbone, store=store, batch_size=1, num_workers=1)
    message = str(error.value)
    assert f"{path}:3" in message and "'bad'" in message and "cannot decode image" in message
    assert "--on-error skip" in message
    fingerprint = resolve_backbone(tiny_backbone).fingerprint
    keys = keys_of(dataset)
    assert store.missing(fingerprint, keys[:2]) == []  # computed before the bad item: kept


class _LaterBatchFirst:
    """A text encoder whose first batch cannot finish before a later one has: decoding
    ``"first"`` waits until ``"second"`` has been encoded. ``"bad"`` cannot be decoded."""

    dim = 2

    def __init__(self):
        self.second_encoded = threading.Event()

    def load(self, value):
        if value == "bad":
            raise BadInput("unusable on purpose")
        if value == "first":
            # Bounded so that a broken extraction fails the test instead of hanging it.
            assert self.second_encoded.wait(30), "the later batch was never encoded"
        return value

    def collate(self, items):
        return items

    def encode(self, batch):
        if "second" in batch:
            self.second_encoded.set()
        return np.array([[len(text), 1.0] for text in batch], np.float32)


def test_a_later_batch_finishing_first_is_held_until_the_earlier_ones_are_committed(tmp_path, store):
    """Batch 1 (``second`` and the bad item) finishes before batch 0 (``first``) by
    construction; the bad item must still stop the run only after ``first`` is stored."""
    BACKBONES.add("later-first", lambda arg, modality: BackboneConfig(
        spec="later-first", name="later-first", modality="text", fingerprint="later-first-v1",
        builder=lambda config, device: _LaterBatchFirst(), dim=2, cpu_batch_size=2,
    ))
    try:
        data = tmp_path / "data.jsonl"
        data.write_text("".join(json.dumps({"id": text, "text": text}) + "\n" for text in ("first", "first!", "second", "bad")))
        dataset = read_dataset(data)
        with pytest.raises(DataError, match=r"data.jsonl:4 \(item 'bad'\): unusable on purpose"):
            extract_features(dataset, "later-first", store=store, num_workers=2, device="cpu")
        keys = keys_of(dataset, "text")
        assert store.missing("later-first-v1", keys[:2]) == []  # the earlier batch was committed
    finally:
        BACKBONES.remove("later-first")


def test_a_bad_item_ends_extraction_only_after_the_weights_thread(tmp_path, store):
    """An extraction that stops at once (the only item is bad) waits for the thread that
    loads the weights: a process exiting while that thread was importing torch aborted
    with exit 134 instead of the error's exit 2."""
    release = threading.Event()

    def load_weights():
        assert release.wait(30), "the test never released the weights"
        return lambda images: images.mean(dim=(2, 3))

    def build(config, device):
        return ImageEncoder(BackgroundModel(load_weights), PREPROCESS, 3, device, normalize=((0.5,) * 3, (0.5,) * 3))

    BACKBONES.add("slow-weights", lambda arg, modality: BackboneConfig(
        spec="slow-weights", name="slow-weights", modality="image", fingerprint="slow-weights-v1", builder=build, dim=3,
    ))
    try:
        (tmp_path / "bad.jpg").write_text("not an image")
        dataset = read_dataset(write_dataset(tmp_path, [("bad", "bad.jpg")]))
        errors = []

        def extract():
            try:
                extract_features(dataset, "slow-weights", store=store, num_workers=1, device="cpu")
            except DataError as exc:
                errors.append(exc)

        runner = threading.Thread(target=extract)
        runner.start()
        runner.join(timeout=1.0)
        still_waiting = runner.is_alive()
        release.set()
        runner.join()
    finally:
        BACKBONES.remove("slow-weights")
    assert still_waiting, "extraction returned while its weights were still loading"
    assert len(errors) == 1 and "cannot decode image" in str(errors[0])
    assert not [thread for thread in threading.enumerate() if thread.name == "mmtk-model-load"]


def test_skip_lists_bad_items_and_stores_the_good_ones(tiny_backbone, tmp_path, store):
    write_image(tmp_path / "good.png", seed=5)
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    path = write_dataset(tmp_path, [("bad", "broken.jpg"), ("good", "good.png")], texts=["x", "y"])
    dataset = read_dataset(path)

    report = extract_features(dataset, tiny_backbone, store=store, on_error="skip")
    assert report.computed == 1
    assert [(bad.line, bad.item) for bad in report.skipped] == [(1, "bad")]
    assert "cannot decode image" in report.skipped[0].one_line()
    assert store.missing(report.fingerprint, keys_of(dataset)[1:]) == []


def test_text_column_uses_the_text_tower_and_skips_empty_text(tiny_backbone, tmp_path, store):
    write_image(tmp_path / "a.jpg", seed=1)
    path = write_dataset(tmp_path, [("a", "a.jpg"), ("b", "a.jpg"), ("c", "a.jpg")], texts=["a cat", "   ", "a cat"])
    dataset = read_dataset(path)

    report = extract_features(dataset, tiny_backbone, store=store, column="text", on_error="skip")
    assert report.modality == "text" and report.column == "text"
    assert (report.unique, report.computed) == (1, 1)
    assert [(bad.line, bad.item, bad.reason) for bad in report.skipped] == [(2, "b", "empty text in column 'text'")]
    image = extract_features(dataset, tiny_backbone, store=store)
    assert image.fingerprint != report.fingerprint and image.computed == 1


def test_two_workers_give_the_same_features_as_one(tiny_backbone, tmp_path):
    images = []
    for index in range(8):
        write_image(tmp_path / f"i{index}.jpg", seed=index, size=(60 + 7 * index, 50))
        images.append((f"i{index}", f"i{index}.jpg"))
    dataset = read_dataset(write_dataset(tmp_path, images))
    one, two = FeatureStore(tmp_path / "one"), FeatureStore(tmp_path / "two")

    single = extract_features(dataset, tiny_backbone, store=one, num_workers=1, batch_size=3)
    pooled = extract_features(dataset, tiny_backbone, store=two, num_workers=2, batch_size=2)
    assert single.computed == pooled.computed == 8
    keys = keys_of(dataset)
    # Same items, different batch compositions: equal to float32 round-off.
    np.testing.assert_allclose(one.gather(pooled.fingerprint, keys), two.gather(pooled.fingerprint, keys), atol=1e-4)


SLOW_EXTRACTION = """
import dataclasses, sys, time
from mmtk.backbones import BACKBONES
from mmtk.backbones.clip import resolve_clip
from mmtk.backbones.efficientnet_lite import PREPROCESS
from mmtk.backbones.images import ImageEncoder
from mmtk.data import read_dataset
from mmtk.extract import extract_features
from mmtk.store import FeatureStore

model_dir, data, store = sys.argv[1:4]

def build_slow(config, device):
    encoder = resolve_clip("local-dir:" + model_dir, None).build(device)
    encode = encoder.encode
    def slow_encode(batch):
        time.sleep(0.15)  # a heavy model: several commits happen before the kill
        return encode(batch)
    encoder.encode = slow_encode
    return encoder

BACKBONES.add("tiny-clip", lambda arg, modality: dataclasses.replace(
    resolve_clip("local-dir:" + model_dir, modality), spec="tiny-clip", builder=build_slow))
extract_features(read_dataset(data), "tiny-clip", store=FeatureStore(store), batch_size=1, num_workers=1)
"""


@pytest.mark.slow  # runs a child extraction and kills it
def test_sigkill_mid_run_loses_only_uncommitted_work(tiny_backbone, tmp_path):
    images = []
    for index in range(40):
        write_image(tmp_path / f"k{index}.jpg", seed=index)
        images.append((f"k{index}", f"k{index}.jpg"))
    data = write_dataset(tmp_path, images)
    dataset = read_dataset(data)
    keys = keys_of(dataset)
    model_dir = resolve_backbone(tiny_backbone).settings["directory"]
    fingerprint = resolve_backbone(tiny_backbone).fingerprint
    store_dir = tmp_path / "store"

    observer = FeatureStore(store_dir)
    # Create the index before the child starts, so polling never reads a half-made schema.
    observer.register(fingerprint, {"backbone": TINY, "modality": "image", "kind": "vector", "dim": 16})
    child = subprocess.Popen([sys.executable, "-c", SLOW_EXTRACTION, model_dir, str(data), str(store_dir)])
    deadline = time.monotonic() + 120
    stored = 0
    while stored < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
        stored = len(keys) - len(observer.missing(fingerprint, keys))
    child.send_signal(signal.SIGKILL)  # a no-op when poll() above already reaped it
    child.wait()
    assert 3 <= stored < len(keys), "the run should be killed part-way through"

    store = FeatureStore(store_dir)
    left = store.missing(fingerprint, keys)
    done = [key for key in keys if key not in left]
    before = store.gather(fingerprint, done)
    report = extract_features(dataset, tiny_backbone, store=store)
    assert (report.cached, report.computed) == (len(done), len(left))  # nothing committed is redone
    assert np.array_equal(store.gather(fingerprint, done), before)
    assert store.missing(fingerprint, keys) == []
    assert store.verify()["ok"]


class _ThreadProbe:
    """Encodes every item as the CPU/wall ratio of a convolution run in the worker
    thread: about 1 when torch uses one thread there, about 2 with two free cores."""

    dim = 1

    def load(self, value):
        return value

    def collate(self, items):
        return items

    def encode(self, batch):
        import time

        import torch

        conv, x = torch.nn.Conv2d(32, 32, 3, padding=1), torch.randn(4, 32, 96, 96)
        with torch.inference_mode():
            conv(x)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(8):
                conv(x)
            ratio = (time.process_time() - cpu) / (time.perf_counter() - wall)
        return np.full((len(batch), 1), ratio, np.float32)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to see a second torch thread")
def test_cpu_worker_threads_run_torch_on_one_thread_each(tmp_path):
    """OpenMP's thread count is per thread: a worker thread that does not set its own
    runs every op on all cores, oversubscribing them (issue 2's 36x slowdowns)."""
    import torch

    BACKBONES.add("thread-probe", lambda arg, modality: BackboneConfig(
        spec="thread-probe", name="thread-probe", modality="text", fingerprint="thread-probe-v1",
        builder=lambda config, device: _ThreadProbe(), dim=1, cpu_batch_size=1,
    ))
    try:
        data = tmp_path / "data.jsonl"
        data.write_text("".join(json.dumps({"id": str(i), "text": f"t{i}"}) + "\n" for i in range(2)))
        store = FeatureStore(tmp_path / "store")
        dataset = read_dataset(data)
        previous = torch.get_num_threads()
        extract_features(dataset, "thread-probe", store=store, num_workers=1, device="cpu")
        ratios = store.gather("thread-probe-v1", keys_of(dataset, "text"))
    finally:
        BACKBONES.remove("thread-probe")
    assert ratios.max() < 1.4, f"torch used {ratios.max():.2f} cores in an extraction thread"
    assert torch.get_num_threads() == previous  # the caller's setting is restored


def test_gpu_loader_path_decodes_in_workers_like_the_cpu_path(tiny_backbone, tmp_path):
    """The CUDA path (DataLoader decode workers, pinned batches) run on the CPU: no GPU
    is lent here, but its decoding, collation and bad-item handling are device-free and
    must give the CPU path's features."""
    from mmtk.extract import encode_items
    from mmtk.extract.executors.cuda import run_cuda

    paths = [str(write_image(tmp_path / f"g{i}.jpg", seed=i, size=(70 + 9 * i, 60))) for i in range(5)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    items = [(content_key(path, "image"), path) for path in [*paths, str(broken)]]
    config = resolve_backbone(tiny_backbone, "image")

    import contextlib

    import torch

    # Without CUDA, the DataLoader warns that it cannot pin memory; with CUDA it pins.
    pinning = contextlib.nullcontext() if torch.cuda.is_available() else pytest.warns(UserWarning, match="pin_memory")
    with pinning:
        chunks = list(run_cuda(config, items, device="cpu", batch_size=2, workers=2))
    loaded = {key: row for chunk in chunks for key, row in zip(chunk.keys, chunk.features if chunk.features is not None else [])}
    bad = [key for chunk in chunks for key, _ in chunk.bad]
    expected = encode_items(config.build("cpu"), items[:5])
    assert bad == [items[5][0]] and set(loaded) == set(expected.keys)
    np.testing.assert_allclose(np.stack([loaded[key] for key in expected.keys]), expected.features, atol=1e-5)
