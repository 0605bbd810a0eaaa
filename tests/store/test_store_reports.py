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


# --- gc ----------------------------------------------------------------------------------


def _files(root) -> dict:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in (root / "shards").rglob("*") if p.is_file()}


def test_gc_report_counts_every_orphan_shard_and_byte(tmp_path):
    """Orphans, temp files and small shards of two feature sets: the report lists and
    counts each, bytes_freed is what the shards folder lost, a dry run reports the same
    (but the bytes compaction frees) and changes nothing, and a second gc finds nothing
    left to do."""
    import os
    import time

    store = FeatureStore(tmp_path / "store")
    store.register(VECTORS, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    store.register(SEQUENCES, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": 2})
    for i in range(4):
        store.put(VECTORS, [f"v{i}", f"w{i}"], [np.full(3, i, np.float32), np.full(3, -i, np.float32)])
    for i in range(3):
        store.put(SEQUENCES, [f"s{i}"], [np.full((i + 1, 2), i, np.float32)])
    folder = store.root / "shards" / VECTORS[:16]
    (folder / "left-by-a-killed-run.npy").write_bytes(b"x" * 100)
    (folder / "half-written.npy.tmp").write_bytes(b"y" * 50)
    (store.root / "shards" / ("c" * 16)).mkdir()  # a folder of no registered set, empty
    old = time.time() - 7200
    for path in (folder / "left-by-a-killed-run.npy", folder / "half-written.npy.tmp"):
        os.utime(path, (old, old))
    options = {"min_age_s": 3600, "compact_min_shards": 2, "small_shard_bytes": 1 << 20}
    before = _files(store.root)

    expected = {
        "unreferenced_shards": [],
        "orphans": [f"shards/{VECTORS[:16]}/left-by-a-killed-run.npy"],
        "temp_files": [f"shards/{VECTORS[:16]}/half-written.npy.tmp"],
        "compacted_shards": 7,
        "new_shards": 2,
        "damaged_shards": [],
        "dropped_items": 0,
        "refused_paths": [],
    }
    dry = store.gc(dry_run=True, **options)
    assert _files(store.root) == before and (store.root / "shards" / ("c" * 16)).is_dir()
    report = store.gc(**options)
    after = _files(store.root)
    assert {k: v for k, v in report.items() if k != "bytes_freed"} == {"dry_run": False, **expected}
    assert report["bytes_freed"] == sum(before.values()) - sum(after.values()) > 150
    # A dry run counts the orphans' bytes only: what compaction would free is known once
    # the new shard is written.
    assert dry == {**report, "dry_run": True, "bytes_freed": 150}
    assert len(after) == 2 and not (store.root / "shards" / ("c" * 16)).exists()
    assert store.verify()["ok"] and store.verify()["shards"] == 2
    np.testing.assert_array_equal(store.gather(VECTORS, ["w3", "v0"]), np.array([[-3] * 3, [0] * 3], np.float32))
    steps, lengths = store.gather_sequences(SEQUENCES, ["s2", "s0"])
    assert lengths.tolist() == [3, 1] and steps[0, :3].tolist() == [[2, 2]] * 3
    again = store.gc(**options)
    assert again == {"dry_run": False, **{k: type(v)() for k, v in expected.items()}, "bytes_freed": 0}
    store.close()


# --- a store this process may not write ----------------------------------------------------


@pytest.fixture
def read_only(two_sets, monkeypatch):
    """``two_sets`` reopened as a process without write access sees it (the suite runs
    as root, for whom permission bits do not bind; test_store_access.py drops the
    capability in a child process for the real thing)."""
    from mmtk.store import index

    root = two_sets.root
    two_sets.close()
    monkeypatch.setattr(index, "_writable", lambda path: False)
    store = FeatureStore(root)
    yield store
    store.close()


def test_a_read_only_store_is_read_verified_and_refuses_writes(read_only):
    from mmtk.errors import StoreError

    assert read_only.index.read_only()
    np.testing.assert_array_equal(read_only.gather(VECTORS, ["k3", "k1"]), np.array([[2.0] * 3, [1.0] * 3], np.float32))
    assert [s["items"] for s in read_only.feature_sets()] == [3, 3]
    assert read_only.verify()["ok"]
    with pytest.raises(StoreError) as error:
        read_only.put(VECTORS, ["k4"], [np.ones(3, np.float32)])
    assert error.value.message.startswith(f"the feature store {read_only.root} is read-only here (SQLite: ")


def test_an_index_of_another_schema_is_refused_with_what_to_do(two_sets, monkeypatch):
    import sqlite3

    from mmtk.errors import StoreError
    from mmtk.store import index

    root = two_sets.root
    two_sets.close()
    with sqlite3.connect(root / "index.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    store = FeatureStore(root)
    with pytest.raises(StoreError) as error:
        store.feature_sets()
    assert (error.value.message, error.value.hint) == (
        f"store {root} has index schema 99; this mmtk reads up to {index.SCHEMA_VERSION}",
        "upgrade mmtk or use another --store",
    )
    store.close()
    monkeypatch.setattr(index, "_writable", lambda path: False)
    store = FeatureStore(root)
    with pytest.raises(StoreError) as error:
        store.feature_sets()
    assert (error.value.message, error.value.hint) == (
        f"store {root} is read-only here and its index has schema 99; this mmtk reads {index.SCHEMA_VERSION}",
        "open it once with write access (any store command does) or use another --store",
    )
    store.close()


def test_a_shard_of_the_wrong_width_is_named_by_verify_and_repair(two_sets):
    shard = _shard_of(two_sets, 2)
    np.save(shard, np.ones((2, 4), np.float32))  # a whole, well-formed .npy of the wrong dim
    problem = f"shard {shard} holds float32 (2, 4), expected float32 (rows, 3)"
    assert two_sets.verify()["problems"] == [problem]
    assert two_sets.repair(dry_run=True)["damaged_shards"] == [
        {"path": shard.relative_to(two_sets.root).as_posix(), "problem": problem, "items": 2}
    ]


# SQLite names an error (sqlite_errorname, Python 3.11+) and words it; either alone is
# enough to tell a full disk, a damaged index and a read-only store apart.
SQLITE_ERRORS = [
    ("SQLITE_FULL", "write failed", "is full"),
    ("", "database or disk is full", "is full"),
    ("SQLITE_CORRUPT", "bad page", "is damaged"),
    ("SQLITE_NOTADB", "cannot open", "is damaged"),
    ("", "database disk image is malformed", "is damaged"),
    ("", "file is not a database", "is damaged"),
    ("SQLITE_READONLY_DBMOVED", "cannot write", "is read-only here"),
    ("", "attempt to write a readonly database", "is read-only here"),
]


@pytest.mark.parametrize("name, text, says", SQLITE_ERRORS)
def test_sqlite_errors_a_user_can_fix_are_told_apart_by_name_or_wording(tmp_path, name, text, says):
    import sqlite3

    from mmtk.store.index import _known_sqlite_error

    error = sqlite3.OperationalError(text)
    if name:
        error.sqlite_errorname = name
    known = _known_sqlite_error(error, tmp_path / "index.sqlite")
    assert known is not None and says in known.message and f"(SQLite: {text})" in known.message


def test_other_errors_are_not_mistaken_for_known_ones(tmp_path):
    import sqlite3

    from mmtk.store.index import _known_sqlite_error

    index = tmp_path / "index.sqlite"
    assert _known_sqlite_error(sqlite3.OperationalError("no such table: items"), index) is None
    assert _known_sqlite_error(ValueError("database or disk is full"), index) is None


def test_a_read_only_reader_sees_what_an_open_writer_committed(two_sets, monkeypatch):
    """A writer at work keeps its -wal file; the read-only reader opens the index
    through SQLite's read-only URI (not as an immutable file) and sees its commits."""
    from mmtk.store import index

    two_sets.put(VECTORS, ["k9"], [np.full(3, 9.0, np.float32)])
    assert (two_sets.root / "index.sqlite-wal").exists()
    monkeypatch.setattr(index, "_writable", lambda path: False)
    reader = FeatureStore(two_sets.root)
    try:
        assert reader.index.read_only()
        np.testing.assert_array_equal(reader.gather(VECTORS, ["k9"]), np.full((1, 3), 9.0, np.float32))
        two_sets.put(VECTORS, ["k10"], [np.full(3, 10.0, np.float32)])
        assert reader.missing(VECTORS, ["k10"]) == []
    finally:
        reader.close()
