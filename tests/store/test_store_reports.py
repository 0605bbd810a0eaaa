"""The reports `store verify` and `store repair` print with --json, in full: scripts read
every key, so each is checked exactly for a healthy store, a damaged shard and an index
SQLite cannot read."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.store import FeatureStore

VECTORS, SEQUENCES = "a" * 64, "b" * 64


@pytest.fixture
def two_sets(tmp_path) -> FeatureStore:
    """A vector set in two shards (2 + 1 items) and a sequence set in one (3 items, one empty)."""
    store = FeatureStore(tmp_path / "store")
    store.register(VECTORS, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    store.register(SEQUENCES, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": 2})
    store.put(VECTORS, ["k1", "k2"], [np.ones(3, np.float32), np.zeros(3, np.float32)])
    store.put(VECTORS, ["k3"], [np.full(3, 2.0, np.float32)])
    store.put(SEQUENCES, ["s1", "s2", "s3"], [np.ones((4, 2), np.float32), np.zeros((0, 2), np.float32), np.ones((1, 2), np.float32)])
    yield store
    store.close()


def _shard_of(store: FeatureStore, rows: int):
    """The vector set's shard (a .npy file) holding ``rows`` items."""
    shards = sorted((store.root / "shards").glob(f"{VECTORS[:16]}/*.npy"))
    return next(path for path in shards if np.load(path, mmap_mode="r").shape[0] == rows)


def test_a_healthy_store_verifies_with_every_count(two_sets):
    assert two_sets.verify() == {
        "ok": True, "index_damaged": False, "problems": [], "orphans": [], "feature_sets": 2, "shards": 3, "items": 6,
    }
    assert two_sets.repair(dry_run=True) == {
        "dry_run": True, "damaged_shards": [], "dropped_items": 0, "feature_sets": [], "bytes_freed": 0,
    }


def test_a_changed_shard_fails_verify_and_repair_drops_only_its_items(two_sets):
    shard = _shard_of(two_sets, 2)
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    size = shard.stat().st_size
    problem = f"shard {shard} does not match its checksum (changed after it was written)"

    assert two_sets.verify() == {
        "ok": False, "index_damaged": False, "problems": [problem], "orphans": [], "feature_sets": 2, "shards": 3, "items": 6,
    }
    expected = {
        "damaged_shards": [{"path": shard.relative_to(two_sets.root).as_posix(), "problem": problem, "items": 2}],
        "dropped_items": 2,
        "feature_sets": [{"fingerprint": VECTORS, "backbone": "vec", "items": 2}],
        "bytes_freed": size,
    }
    assert two_sets.repair(dry_run=True) == {"dry_run": True, **expected}
    assert shard.exists() and two_sets.missing(VECTORS, ["k1", "k2", "k3"]) == []
    assert two_sets.repair() == {"dry_run": False, **expected}
    assert not shard.exists() and two_sets.missing(VECTORS, ["k1", "k2", "k3"]) == ["k1", "k2"]
    assert two_sets.verify() == {
        "ok": True, "index_damaged": False, "problems": [], "orphans": [], "feature_sets": 2, "shards": 2, "items": 4,
    }
    np.testing.assert_array_equal(two_sets.gather(VECTORS, ["k3"]), np.full((1, 3), 2.0, np.float32))


def test_an_unreadable_index_is_reported_with_empty_counts(two_sets):
    root = two_sets.root
    two_sets.close()
    for path in root.glob("index.sqlite*"):
        path.unlink()
    (root / "index.sqlite").write_bytes(b"not a database " * 500)
    store = FeatureStore(root)
    try:
        report = store.verify()
    finally:
        store.close()
    assert report == {
        "ok": False,
        "index_damaged": True,
        "problems": [f"the feature store index {root / 'index.sqlite'} is damaged (SQLite: file is not a database)"],
        "orphans": [],
        "feature_sets": 0,
        "shards": 0,
        "items": 0,
    }


# --- the errors of an index that cannot take a write, word for word ----------------------


def test_a_full_disk_under_the_index_says_what_to_do(two_sets):
    from mmtk.errors import StoreError

    connection = two_sets.index._connection()
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL
    keys = [f"big-{i}" for i in range(3000)]
    with pytest.raises(StoreError) as error:
        two_sets.put(VECTORS, keys, [np.ones(3, np.float32)] * len(keys))
    index = two_sets.root / "index.sqlite"
    assert error.value.message == f"the disk holding the feature store index {index} is full (SQLite: database or disk is full)"
    assert error.value.hint == (
        "free space there or point --store (or $MMTK_STORE) at a disk with room; "
        "what was committed is kept and the next run computes only the rest"
    )


def test_an_index_that_refuses_writes_is_a_read_only_store(two_sets):
    from mmtk.errors import StoreError

    two_sets.index._connection().execute("PRAGMA query_only = 1")  # SQLite answers SQLITE_READONLY
    with pytest.raises(StoreError) as error:
        two_sets.put(VECTORS, ["new"], [np.ones(3, np.float32)])
    assert error.value.message.startswith(f"the feature store {two_sets.root} is read-only here (SQLite: ")
    assert error.value.hint == "list, inspect, verify and read it as it is; extract into a writable store: --store DIR"


def test_an_unreadable_index_says_to_rebuild_the_store(two_sets):
    from mmtk.errors import StoreError

    root = two_sets.root
    two_sets.close()
    for path in root.glob("index.sqlite*"):
        path.unlink()
    (root / "index.sqlite").write_bytes(b"not a database " * 500)
    store = FeatureStore(root)
    try:
        with pytest.raises(StoreError) as error:
            store.feature_sets()
    finally:
        store.close()
    assert error.value.message == f"the feature store index {root / 'index.sqlite'} is damaged (SQLite: file is not a database)"
    assert error.value.hint == f"its entries cannot be trusted: move {root} aside and run extract-features again to rebuild the store"
