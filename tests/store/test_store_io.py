"""Writing and reading features: round trips, missing keys, idempotence, validation,
and memory-mapped gathers that open each shard once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mmtk.errors import StoreError, UsageError
from mmtk.store import FeatureStore
from store_writer import key, sequence, value


def test_reads_on_a_new_store_create_nothing(tmp_path):
    store = FeatureStore(tmp_path / "never-written")
    assert store.missing("f" * 64, ["b", "a", "b"]) == ["b", "a"]
    assert store.feature_sets() == []
    # Inspecting or maintaining a store that does not exist is a mistyped path, not
    # an empty healthy store.
    for check in (store.verify, store.repair, store.gc):
        with pytest.raises(StoreError, match="no feature store at .*never-written .no such directory.; check --store"):
            check()
    assert not (tmp_path / "never-written").exists()


def test_default_root_comes_from_mmtk_store_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTK_STORE", str(tmp_path / "env-store"))
    assert FeatureStore().root == (tmp_path / "env-store").absolute()


def test_vector_round_trip_keeps_request_order(store, vectors):
    keys = [key(i) for i in range(50)]
    assert store.put(vectors, keys, [value(k, 8) for k in keys]) == 50
    asked = keys[::-1] + keys[:3]  # reversed, and repeated keys are allowed
    got = store.gather(vectors, asked)
    assert got.dtype == np.float32 and got.shape == (53, 8)
    np.testing.assert_array_equal(got, np.stack([value(k, 8) for k in asked]))
    assert (store.root / "index.sqlite").is_file()


def test_sequence_round_trip_with_empty_and_truncated_sequences(store, sequences):
    keys = [key(i) for i in range(30)]
    arrays = [sequence(k, 4) for k in keys]
    arrays[5] = np.zeros((0, 4), np.float32)
    store.put(sequences, keys, arrays)
    asked = keys[::-1]
    steps, lengths = store.gather_sequences(sequences, asked)
    expected = arrays[::-1]
    assert steps.dtype == np.float32 and steps.shape == (30, max(len(a) for a in arrays), 4)
    assert lengths.tolist() == [len(a) for a in expected]
    for row, length, want in zip(steps, lengths, expected):
        np.testing.assert_array_equal(row[:length], want)
        assert not row[length:].any()  # padding is zeros
    cut, cut_lengths = store.gather_sequences(sequences, asked, max_len=2)
    assert cut.shape == (30, 2, 4)
    assert cut_lengths.tolist() == [min(len(a), 2) for a in expected]
    np.testing.assert_array_equal(cut, steps[:, :2])


def test_all_empty_sequences_need_no_shard(store, sequences):
    store.put(sequences, ["e1", "e2"], [np.zeros((0, 4)), np.zeros((0, 4))])
    steps, lengths = store.gather_sequences(sequences, ["e2", "e1"])
    assert steps.shape == (2, 0, 4) and lengths.tolist() == [0, 0]
    assert store.feature_sets()[0]["shards"] == 0
    assert store.verify()["ok"]


def test_missing_keeps_order_and_drops_duplicates(store, vectors):
    store.put(vectors, ["k2", "k4"], [value(key(2), 8), value(key(4), 8)])
    assert store.missing(vectors, ["k5", "k2", "k1", "k5", "k4", "k3"]) == ["k5", "k1", "k3"]
    assert store.missing("unregistered", ["x", "y"]) == ["x", "y"]


def test_put_is_idempotent_and_first_value_wins(store, vectors):
    keys = [key(i) for i in range(10)]
    assert store.put(vectors, keys, [value(k, 8) for k in keys]) == 10
    assert store.put(vectors, keys, [np.ones(8) for _ in keys]) == 0
    assert store.put(vectors, ["new", "new"], [np.zeros(8), np.ones(8)]) == 1
    np.testing.assert_array_equal(store.gather(vectors, keys), np.stack([value(k, 8) for k in keys]))
    np.testing.assert_array_equal(store.gather(vectors, ["new"])[0], np.zeros(8))
    assert store.feature_sets()[0]["items"] == 11
    # The re-put of 10 known keys wrote no shard at all.
    assert store.feature_sets()[0]["shards"] == 2


def test_register_is_idempotent_but_refuses_a_changed_dim(store, vectors):
    store.register(vectors, {"backbone": "vec-test", "modality": "image", "kind": "vector", "dim": 8})
    with pytest.raises(StoreError, match="dim 8, not 9"):
        store.register(vectors, {"backbone": "vec-test", "modality": "image", "kind": "vector", "dim": 9})
    with pytest.raises(ValueError, match="lacks dim"):
        store.register("c" * 64, {"backbone": "x", "modality": "image", "kind": "vector"})


def test_put_rejects_wrong_shapes_and_non_finite_values(store, vectors, sequences):
    with pytest.raises(StoreError, match=r"item 'bad' has features of shape \(7,\).*\(8,\)"):
        store.put(vectors, ["ok", "bad"], [np.zeros(8), np.zeros(7)])
    with pytest.raises(StoreError, match=r"\(T, 4\)"):
        store.put(sequences, ["s"], [np.zeros(4)])
    nan = np.zeros(8)
    nan[3] = np.nan
    with pytest.raises(StoreError, match="item 'nan' has non-finite"):
        store.put(vectors, ["fine", "nan"], [np.ones(8), nan])
    with pytest.raises(StoreError, match="not registered"):
        store.put("d" * 64, ["x"], [np.zeros(8)])
    # A refused put stores nothing, not even the good items of its batch.
    assert store.missing(vectors, ["ok", "fine"]) == ["ok", "fine"]
    report = store.verify()
    assert report["ok"] and report["orphans"] == []


def test_missing_items_error_names_count_backbone_and_command(store, vectors):
    store.put(vectors, ["a"], [np.zeros(8)])
    with pytest.raises(StoreError) as info:
        store.gather(vectors, ["a", "b", "c"])
    assert info.value.message == f"2 of 3 items have no vec-test features in store {store.root}"
    assert info.value.hint == "run: mmtk extract-features DATA --backbone vec-test"
    with pytest.raises(StoreError, match="3 of 3 items have no features"):
        store.gather("e" * 64, ["a", "b", "c"])


def test_gather_refuses_the_other_kind(store, vectors, sequences):
    with pytest.raises(UsageError, match="stored as vectors"):
        store.gather_sequences(vectors, [])
    with pytest.raises(UsageError, match="stored as sequences"):
        store.gather(sequences, [])
    assert store.gather(vectors, []).shape == (0, 8)


def test_gather_of_10000_items_opens_each_shard_once(store, vectors, monkeypatch):
    keys = [key(i) for i in range(10_000)]
    rows = np.random.default_rng(0).standard_normal((10_000, 8)).astype(np.float32)
    for start in range(0, 10_000, 500):
        store.put(vectors, keys[start : start + 500], rows[start : start + 500])
    opened = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda path, *a, **kw: opened.append(path) or real_load(path, *a, **kw))
    order = np.random.default_rng(1).permutation(10_000)
    got = store.gather(vectors, [keys[i] for i in order])
    np.testing.assert_array_equal(got, rows[order])
    assert len(opened) == 20 and len(set(opened)) == 20


def test_gather_sequences_across_many_shards_opens_each_once(store, sequences, monkeypatch):
    keys = [key(i) for i in range(600)]
    arrays = [sequence(k, 4) for k in keys]
    for start in range(0, 600, 100):
        store.put(sequences, keys[start : start + 100], arrays[start : start + 100])
    opened = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda path, *a, **kw: opened.append(path) or real_load(path, *a, **kw))
    order = np.random.default_rng(2).permutation(600)
    steps, lengths = store.gather_sequences(sequences, [keys[i] for i in order])
    for row, length, i in zip(steps, lengths, order):
        np.testing.assert_array_equal(row[:length], arrays[i])
    assert len(opened) == 6


def test_threads_sharing_one_store_object(store, vectors):
    keys = [key(i) for i in range(400)]
    errors = []

    def write(offset: int) -> None:
        try:
            mine = keys[offset : offset + 200]
            for start in range(0, 200, 20):
                batch = mine[start : start + 20]
                store.put(vectors, batch, [value(k, 8) for k in batch])
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(offset,)) for offset in (0, 100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    np.testing.assert_array_equal(store.gather(vectors, keys), np.stack([value(k, 8) for k in keys]))
    assert store.feature_sets()[0]["items"] == 400
    assert store.verify()["ok"]


def test_remove_drops_a_feature_set_and_its_files(store, vectors, sequences):
    store.put(vectors, ["a", "b"], [np.zeros(8), np.ones(8)])
    store.put(sequences, ["a"], [np.ones((3, 4))])
    assert store.remove("vec-test") == {"fingerprint": vectors, "backbone": "vec-test", "items": 2, "shards": 1}
    assert [s["fingerprint"] for s in store.feature_sets()] == [sequences]
    report = store.verify()
    assert report["ok"] and report["orphans"] == []
    assert store.missing(vectors, ["a"]) == ["a"]


def test_a_file_that_is_not_an_index_gives_a_store_error(tmp_path):
    (tmp_path / "index.sqlite").write_bytes(b"this is not an SQLite database" * 10)
    with pytest.raises(StoreError, match=r"index .*index.sqlite is damaged \(SQLite: file is not a database\)") as err:
        FeatureStore(tmp_path).feature_sets()
    assert "move" in err.value.hint and "extract-features" in err.value.hint
