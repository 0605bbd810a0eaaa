"""What `mmtk store ls|info|verify|gc` rely on: listing, digests, consistency checks and
clean-up that never loses a committed entry."""

from __future__ import annotations

import os
import sqlite3
import time

import numpy as np
import pytest

from mmtk.errors import StoreError, UsageError
from mmtk.store import FeatureStore
from store_writer import key, sequence, value

VEC_META = {"backbone": "vec-test", "modality": "image", "kind": "vector", "dim": 8}


def _fill(store: FeatureStore, fingerprint: str, keys: list[str], batch: int, make=lambda k: value(k, 8)) -> None:
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        store.put(fingerprint, chunk, [make(k) for k in chunk])


def _age(path, seconds: float = 3600) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _shard_paths(store: FeatureStore) -> list:
    return sorted((store.root / "shards").rglob("*.npy"))


# --------------------------------------------------------------------------- ls / info


def test_feature_sets_lists_counts_and_sizes(store, vectors, sequences):
    _fill(store, vectors, [key(i) for i in range(30)], batch=10)
    by_backbone = {s["backbone"]: s for s in store.feature_sets()}
    vec = by_backbone["vec-test"]
    assert (vec["fingerprint"], vec["modality"], vec["kind"], vec["dim"]) == (vectors, "image", "vector", 8)
    assert vec["items"] == 30 and vec["shards"] == 3
    assert vec["bytes"] == sum(p.stat().st_size for p in _shard_paths(store))
    assert vec["created"].endswith("Z")
    assert by_backbone["seq-test"]["items"] == 0


def test_info_resolves_backbone_or_fingerprint_prefix(store):
    store.register("abc123" + "0" * 58, VEC_META)
    store.register("abd456" + "0" * 58, {**VEC_META, "backbone": "other"})
    store.register("fff000" + "0" * 58, {**VEC_META, "backbone": "other"})
    assert store.info("vec-test")["fingerprint"].startswith("abc123")
    assert store.info("abd")["fingerprint"].startswith("abd456")
    with pytest.raises(UsageError, match=r"'ab' matches several feature sets: abc123.* \(vec-test\), abd456"):
        store.info("ab")
    with pytest.raises(UsageError, match="'other' matches several"):
        store.info("other")
    with pytest.raises(UsageError, match="no feature set .* matches 'zzz'") as err:
        store.info("zzz")
    assert "abc123" in err.value.hint and "fff000" in err.value.hint


def test_info_on_an_empty_store_says_how_to_fill_it(store):
    with pytest.raises(UsageError, match="has no feature sets") as err:
        store.info("clip")
    assert "extract-features" in err.value.hint


def test_digest_is_independent_of_write_order_and_batching(tmp_path):
    keys = [key(i) for i in range(200)]
    first, second = FeatureStore(tmp_path / "a"), FeatureStore(tmp_path / "b")
    for s in (first, second):
        s.register("f" * 64, VEC_META)
    _fill(first, "f" * 64, keys, batch=7)
    _fill(second, "f" * 64, keys[::-1], batch=64)
    _fill(second, "f" * 64, keys[:50], batch=50)  # a re-run adds nothing
    assert first.info("vec-test")["digest"] == second.info("vec-test")["digest"]
    assert first.info("vec-test")["items"] == second.info("vec-test")["items"] == 200


def test_digest_changes_when_one_value_or_key_differs(tmp_path):
    keys = [key(i) for i in range(100)]
    digests = []
    for name, change in (("same", None), ("one-ulp", 42), ("extra-key", "extra")):
        s = FeatureStore(tmp_path / name)
        s.register("f" * 64, VEC_META)
        arrays = [value(k, 8) for k in keys]
        if change == 42:
            arrays[42] = arrays[42].copy()
            arrays[42][0] = np.nextafter(arrays[42][0], np.float32(np.inf))
        s.put("f" * 64, keys, arrays)
        if change == "extra":
            s.put("f" * 64, ["extra"], [np.zeros(8)])
        digests.append(s.info("vec-test")["digest"])
    assert len(set(digests)) == 3


def test_sequence_digest_matches_across_stores(tmp_path):
    keys = [key(i) for i in range(60)]
    meta = {"backbone": "seq-test", "modality": "text", "kind": "sequence", "dim": 4}
    digests = []
    for name, order, batch in (("a", keys, 5), ("b", keys[::-1], 60)):
        s = FeatureStore(tmp_path / name)
        s.register("s" * 64, meta)
        _fill(s, "s" * 64, order, batch, make=lambda k: sequence(k, 4))
        digests.append(s.info("seq-test")["digest"])
    assert digests[0] == digests[1]


# --------------------------------------------------------------------------- verify


@pytest.fixture
def filled(store, vectors):
    """A vector store of 3 shards of 10 items each."""
    _fill(store, vectors, [key(i) for i in range(30)], batch=10)
    report = store.verify()
    assert report["ok"] and report["problems"] == [] and report["items"] == 30
    return store


def test_verify_reports_a_deleted_shard(filled):
    victim = _shard_paths(filled)[0]
    victim.unlink()
    report = filled.verify()
    assert not report["ok"]
    assert report["problems"] == [f"shard {victim} is missing"]
    with pytest.raises(StoreError, match="missing from store"):
        filled.gather(filled.feature_sets()[0]["fingerprint"], [key(i) for i in range(30)])


def test_verify_reports_a_truncated_shard(filled):
    victim = _shard_paths(filled)[1]
    size = victim.stat().st_size
    with open(victim, "rb+") as f:
        f.truncate(size - 20)
    report = filled.verify()
    assert not report["ok"]
    assert report["problems"] == [f"shard {victim} is truncated ({size - 20} of {size} bytes)"]


def test_verify_reports_changed_bytes_by_checksum(filled):
    victim = _shard_paths(filled)[2]
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert any("does not match its checksum" in p for p in filled.verify()["problems"])
    assert filled.verify(checksums=False)["ok"]


def test_verify_reports_an_index_row_past_the_shard_end(filled, vectors):
    with sqlite3.connect(filled.root / "index.sqlite") as conn:
        conn.execute("UPDATE items SET start = 10 WHERE key = ?", (key(3),))
    report = filled.verify()
    assert not report["ok"]
    assert len(report["problems"]) == 1
    assert "1 items point past the end of shard" in report["problems"][0] and key(3) in report["problems"][0]
    with pytest.raises(StoreError, match="run: mmtk store repair --store"):
        filled.gather(vectors, [key(3)])


def test_verify_lists_orphans_without_failing(filled):
    orphan = _shard_paths(filled)[0].parent / "stray.npy"
    np.save(orphan, np.zeros((2, 8), np.float32))
    report = filled.verify()
    assert report["ok"]
    assert report["orphans"] == [orphan.relative_to(filled.root).as_posix()]


# --------------------------------------------------------------------------- gc


def test_gc_removes_old_orphans_and_temp_files_only(filled):
    directory = _shard_paths(filled)[0].parent
    old_orphan, old_temp = directory / "old.npy", directory / "old.npy.tmp"
    young_temp = directory / "young.npy.tmp"  # a writer may be about to rename it
    for path in (old_orphan, old_temp, young_temp):
        path.write_bytes(b"partial")
    _age(old_orphan)
    _age(old_temp)
    before = filled.gather(filled.feature_sets()[0]["fingerprint"], [key(i) for i in range(30)])

    dry = filled.gc(dry_run=True)
    assert dry["orphans"] == ["shards/aaaaaaaaaaaaaaaa/old.npy"] and old_orphan.exists()

    report = filled.gc()
    assert report["orphans"] == ["shards/aaaaaaaaaaaaaaaa/old.npy"]
    assert report["temp_files"] == ["shards/aaaaaaaaaaaaaaaa/old.npy.tmp"]
    assert report["bytes_freed"] == 14
    assert not old_orphan.exists() and not old_temp.exists() and young_temp.exists()
    check = filled.verify()
    assert check["ok"] and check["orphans"] == ["shards/aaaaaaaaaaaaaaaa/young.npy.tmp"]
    np.testing.assert_array_equal(filled.gather(filled.feature_sets()[0]["fingerprint"], [key(i) for i in range(30)]), before)


def test_gc_drops_shards_no_item_points_at(filled, vectors):
    with sqlite3.connect(filled.root / "index.sqlite") as conn:
        shard_id, path = conn.execute("SELECT id, path FROM shards ORDER BY id LIMIT 1").fetchone()
        conn.execute("DELETE FROM items WHERE shard = ?", (shard_id,))
    report = filled.gc()
    assert report["unreferenced_shards"] == [path]
    assert not (filled.root / path).exists()
    check = filled.verify()
    assert check["ok"] and check["shards"] == 2 and check["items"] == 20


def test_gc_compacts_small_shards_and_keeps_every_value(store, vectors, sequences):
    keys = [key(i) for i in range(100)]
    _fill(store, vectors, keys, batch=10)
    _fill(store, sequences, keys, batch=25, make=lambda k: sequence(k, 4))
    digests = {name: store.info(name)["digest"] for name in ("vec-test", "seq-test")}
    old_files = _shard_paths(store)

    report = store.gc(compact_min_shards=4)
    assert (report["compacted_shards"], report["new_shards"]) == (14, 2)
    assert {s["backbone"]: s["shards"] for s in store.feature_sets()} == {"vec-test": 1, "seq-test": 1}
    assert not any(p.exists() for p in old_files)
    assert {name: store.info(name)["digest"] for name in digests} == digests
    np.testing.assert_array_equal(store.gather(vectors, keys), np.stack([value(k, 8) for k in keys]))
    steps, lengths = store.gather_sequences(sequences, keys)
    for row, length, k in zip(steps, lengths, keys):
        np.testing.assert_array_equal(row[:length], sequence(k, 4))
    check = store.verify()
    assert check["ok"] and check["orphans"] == []


def test_gc_leaves_few_shards_alone_and_dry_run_changes_nothing(filled):
    files = _shard_paths(filled)
    assert filled.gc()["compacted_shards"] == 0  # 3 shards are below the default threshold
    dry = filled.gc(dry_run=True, compact_min_shards=2)
    assert (dry["compacted_shards"], dry["new_shards"]) == (3, 1)
    assert _shard_paths(filled) == files


def test_compaction_interrupted_before_repointing_loses_nothing(filled, vectors, monkeypatch):
    keys = [key(i) for i in range(30)]
    expected = filled.gather(vectors, keys)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between rename and index update")

    monkeypatch.setattr(filled.index, "repoint", crash)
    with pytest.raises(KeyboardInterrupt):
        filled.gc(compact_min_shards=2)
    monkeypatch.undo()
    # The new shard is in place but unindexed: an orphan, harmless to readers.
    report = filled.verify()
    assert report["ok"] and len(report["orphans"]) == 1
    np.testing.assert_array_equal(filled.gather(vectors, keys), expected)
    for orphan in report["orphans"]:
        _age(filled.root / orphan)
    cleaned = filled.gc(compact_min_shards=2)
    assert cleaned["orphans"] == report["orphans"] and cleaned["new_shards"] == 1
    np.testing.assert_array_equal(filled.gather(vectors, keys), expected)
    check = filled.verify()
    assert check["ok"] and check["orphans"] == [] and check["shards"] == 1
