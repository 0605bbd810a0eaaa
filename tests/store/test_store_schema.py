"""Index schema 2 (item digests) and the lookups that keep large stores fast: a store
written before digests existed reads the same after this mmtk migrates it, a read-only
one is read as it is, and batched lookups and copies return what one-by-one ones would."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import mmtk.store.gather as gather_module
import mmtk.store.index as index_module
from mmtk.errors import StoreError
from mmtk.store import FeatureStore

VEC, SEQ = "a" * 64, "b" * 64
DIM = 4


def _vector(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal(DIM).astype(np.float32)


def _steps(i: int) -> np.ndarray:
    return np.random.default_rng(1000 + i).standard_normal((i % 4, DIM)).astype(np.float32)  # i % 4 == 0: empty


def _filled(root) -> FeatureStore:
    store = FeatureStore(root)
    store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": DIM})
    store.register(SEQ, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": DIM})
    for first in (0, 10):
        store.put(VEC, [f"v{i}" for i in range(first, first + 10)], [_vector(i) for i in range(first, first + 10)])
        store.put(SEQ, [f"s{i}" for i in range(first, first + 10)], [_steps(i) for i in range(first, first + 10)])
    return store


def _to_schema_1(root) -> None:
    """The index as mmtk wrote it before item digests: no ``digest`` column, version 1."""
    with sqlite3.connect(root / "index.sqlite") as conn:
        conn.execute("ALTER TABLE items DROP COLUMN digest")
        conn.execute("PRAGMA user_version = 1")
    conn.close()


def _sql(root, statement: str) -> list:
    with sqlite3.connect(root / "index.sqlite") as conn:
        rows = conn.execute(statement).fetchall()
    conn.close()
    return rows


def _reads(store: FeatureStore) -> tuple:
    keys = [f"v{i}" for i in (19, 0, 7, 12, 7)]
    steps, lengths = store.gather_sequences(SEQ, [f"s{i}" for i in (3, 8, 17, 1)])
    reader = store.sequence_reader(SEQ, ["s2", None, "s15"])
    return store.gather(VEC, keys), steps, lengths, *reader.read([2, 1, 0]), store.info("vec")["digest"], store.info("seq")["digest"]


def _assert_same(a: tuple, b: tuple) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_schema_1_store_is_migrated_in_place_and_reads_the_same(tmp_path):
    store = _filled(tmp_path / "store")
    before = _reads(store)
    store.close()
    _to_schema_1(tmp_path / "store")

    store = FeatureStore(tmp_path / "store")
    _assert_same(_reads(store), before)
    assert _sql(tmp_path / "store", "PRAGMA user_version") == [(2,)]
    assert _sql(tmp_path / "store", "SELECT COUNT(*) FROM items WHERE digest IS NOT NULL") == [(0,)]
    assert store.verify()["ok"]
    # New items get digests, old ones keep working beside them.
    store.put(VEC, ["v20", "v21"], [_vector(20), _vector(21)])
    assert _sql(tmp_path / "store", "SELECT key FROM items WHERE digest IS NOT NULL ORDER BY key") == [("v20",), ("v21",)]
    np.testing.assert_array_equal(store.gather(VEC, ["v21", "v3"]), np.stack([_vector(21), _vector(3)]))
    assert store.verify()["ok"]
    store.close()
    # A second open finds the migration done and changes nothing.
    again = FeatureStore(tmp_path / "store")
    assert again.gather(VEC, ["v20"]).shape == (1, DIM) and _sql(tmp_path / "store", "PRAGMA user_version") == [(2,)]
    again.close()


def test_a_schema_1_store_this_process_cannot_write_is_read_as_it_is(tmp_path, monkeypatch):
    store = _filled(tmp_path / "store")
    before = _reads(store)
    store.close()
    _to_schema_1(tmp_path / "store")
    monkeypatch.setattr(index_module, "_writable", lambda path: False)

    store = FeatureStore(tmp_path / "store")
    _assert_same(_reads(store), before)
    assert store.verify()["ok"] and [s["items"] for s in store.feature_sets()] == [20, 20]
    store.close()
    assert _sql(tmp_path / "store", "PRAGMA user_version") == [(1,)]


def test_digests_written_by_put_match_a_fresh_store_of_the_same_items(tmp_path):
    """Item digests depend on the item's values only, not on which shard or offset holds
    it (so compaction can move rows and keep them)."""
    a = _filled(tmp_path / "a")
    b = FeatureStore(tmp_path / "b")
    b.register(VEC, a.index.feature_set_meta(VEC))
    b.put(VEC, [f"v{i}" for i in range(19, -1, -1)], [_vector(i) for i in range(19, -1, -1)])
    query = "SELECT key, digest FROM items WHERE fingerprint = '" + VEC + "' ORDER BY key"
    assert _sql(tmp_path / "a", query) == _sql(tmp_path / "b", query)
    a.gc(compact_min_shards=2, min_age_s=0)
    assert a.verify()["ok"] and _sql(tmp_path / "a", query) == _sql(tmp_path / "b", query)
    np.testing.assert_array_equal(a.gather(VEC, ["v4", "v15"]), b.gather(VEC, ["v4", "v15"]))
    a.close()
    b.close()


@pytest.mark.parametrize("chunk, copy_rows", [(3, 2), (7, 5), (index_module.IN_CHUNK, gather_module._COPY_ROWS)])
def test_lookups_and_copies_in_steps_return_what_the_caller_asked_in_its_order(tmp_path, monkeypatch, chunk, copy_rows):
    """``missing`` and ``gather`` look keys up sorted, in chunks, and copy rows in steps;
    none of that may show in what they return."""
    monkeypatch.setattr(index_module, "IN_CHUNK", chunk)
    monkeypatch.setattr(gather_module, "_COPY_ROWS", copy_rows)
    store = _filled(tmp_path / "store")
    rng = np.random.default_rng(0)
    asked = [f"v{i}" for i in rng.permutation(40)] + ["v3", "v33", "v3"]
    assert store.missing(VEC, asked) == list(dict.fromkeys(k for k in asked if int(k[1:]) >= 20))
    keys = [f"v{i}" for i in rng.integers(0, 20, 50)]
    np.testing.assert_array_equal(store.gather(VEC, keys), np.stack([_vector(int(k[1:])) for k in keys]))
    store.close()


def test_verify_checks_a_shard_with_unread_rows_whole(tmp_path):
    """Rows no item reads any more (repair dropped the item) are still covered by the
    shard's checksum: verify, info and repair agree about a byte changed there."""
    store = _filled(tmp_path / "store")
    ((_, path),) = _sql(tmp_path / "store", "SELECT s.id, s.path FROM shards s JOIN items i ON i.shard = s.id WHERE i.key = 'v9'")
    with sqlite3.connect(tmp_path / "store" / "index.sqlite") as conn:
        conn.execute("DELETE FROM items WHERE key = 'v9'")  # the shard's last row
    conn.close()
    assert store.verify()["ok"]
    data = bytearray((tmp_path / "store" / path).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "store" / path).write_bytes(bytes(data))
    shard = tmp_path / "store" / path
    assert store.verify()["problems"] == [f"shard {shard} does not match its checksum (changed after it was written)"]
    assert store.repair()["dropped_items"] == 9 and store.verify()["ok"]
    store.close()


def test_sequences_are_checked_item_by_item_when_few_are_read(tmp_path):
    store = _filled(tmp_path / "store")
    ((path, start),) = _sql(tmp_path / "store", "SELECT s.path, i.start FROM items i JOIN shards s ON s.id = i.shard WHERE i.key = 's9'")
    data = bytearray((tmp_path / "store" / path).read_bytes())
    data[-1] ^= 0xFF  # s9 (one step) is the shard's last row
    (tmp_path / "store" / path).write_bytes(bytes(data))
    message = f"item 's9' in shard {tmp_path / 'store' / path} does not match its checksum"
    steps, lengths = store.gather_sequences(SEQ, ["s1", "s10"])
    np.testing.assert_array_equal(steps[0, : lengths[0]], _steps(1))
    with pytest.raises(StoreError, match=message):
        store.gather_sequences(SEQ, ["s9", "s10"])
    reader = store.sequence_reader(SEQ, ["s2", "s9"])
    np.testing.assert_array_equal(reader.read([0])[0][0, :2], _steps(2))
    with pytest.raises(StoreError, match=message):
        reader.read([1])
    store.close()
