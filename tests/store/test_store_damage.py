"""Damaged stores: corrupt data is refused, never used, and `repair` always has a way
back. Each case damages a store the way a disk, a user or a hostile index would (bytes
flipped in a shard, a NaN written behind mmtk's back, a zero-length or missing shard,
SQLite pages overwritten, a full disk, index paths that leave the store)."""

from __future__ import annotations

import errno
import os
import sqlite3

import numpy as np
import pytest

import mmtk.store.shards as shards_module
from mmtk.errors import StoreError
from mmtk.store import FeatureStore
from mmtk.store.index import IndexDamaged
from store_writer import key, rewrite_shard, value

DIM = 8


def _fill(store: FeatureStore, fingerprint: str, n: int = 30, batch: int = 10) -> list[str]:
    keys = [key(i) for i in range(n)]
    for start in range(0, n, batch):
        chunk = keys[start : start + batch]
        store.put(fingerprint, chunk, [value(k, DIM) for k in chunk])
    return keys


def _shards(store: FeatureStore) -> list[tuple[int, str, list[str]]]:
    """(shard id, file path, keys in it) of every indexed shard, in id order."""
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        rows = conn.execute("SELECT id, path FROM shards ORDER BY id").fetchall()
        out = []
        for shard_id, path in rows:
            keys = [k for (k,) in conn.execute("SELECT key FROM items WHERE shard = ? ORDER BY start", (shard_id,))]
            out.append((shard_id, store.root / path, keys))
    return out


def _flip_data_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def filled(store, vectors) -> FeatureStore:
    """3 shards of 10 vectors each."""
    _fill(store, vectors)
    return store


# --------------------------------------------------------------------------- reads


def test_gather_refuses_a_flipped_byte_and_names_the_repair(filled, vectors):
    keys = [key(i) for i in range(30)]
    _, victim, _ = _shards(filled)[1]
    _flip_data_byte(victim)
    with pytest.raises(StoreError, match=f"shard {victim} does not match its checksum") as err:
        filled.gather(vectors, keys)
    assert f"mmtk store repair --store {filled.root}" in err.value.hint
    # Digests (store info) never hash bytes that fail their checksum either.
    with pytest.raises(StoreError, match="does not match its checksum"):
        filled.info("vec-test")


def _count_checks(monkeypatch) -> tuple[list[int], list[int]]:
    """Rows hashed per whole-shard checksum and per item digest, as gathers call them."""
    import mmtk.store.gather as gather_module

    shard_calls, item_calls = [], []
    checksum, digest = shards_module.checksum_rows, shards_module.item_digest
    monkeypatch.setattr(shards_module, "checksum_rows", lambda rows: shard_calls.append(len(rows)) or checksum(rows))
    monkeypatch.setattr(gather_module, "item_digest", lambda rows: item_calls.append(len(rows)) or digest(rows))
    return shard_calls, item_calls


def test_a_gather_checks_the_items_it_reads_not_their_shards(filled, vectors, monkeypatch):
    shard_calls, item_calls = _count_checks(monkeypatch)
    keys = [key(i) for i in (3, 14, 25, 26, 27, 28)]  # 1, 1 and 4 of each shard's 10 items
    np.testing.assert_array_equal(filled.gather(vectors, keys), np.stack([value(k, DIM) for k in keys]))
    assert shard_calls == [] and len(item_calls) == 6


def test_a_gather_of_half_a_shard_or_more_checks_it_whole_once(filled, vectors, monkeypatch):
    """Then hashing the shard costs about what hashing its items would, and later reads
    of it are free."""
    shard_calls, item_calls = _count_checks(monkeypatch)
    half = [key(i) for i in range(10, 15)]
    np.testing.assert_array_equal(filled.gather(vectors, half), np.stack([value(k, DIM) for k in half]))
    assert shard_calls == [10] and item_calls == []
    filled.gather(vectors, [key(19), key(0)])  # shard 1 is checked; shard 0 by its item
    assert shard_calls == [10] and len(item_calls) == 1


def test_items_stored_without_digests_have_their_shard_checksummed_once_per_process(filled, vectors, monkeypatch):
    """What a store written before item digests (index schema 1) holds."""
    with sqlite3.connect(filled.root / "index.sqlite") as conn:
        conn.execute("UPDATE items SET digest = NULL WHERE key IN (?, ?)", (key(0), key(25)))
    conn.close()
    shard_calls, item_calls = _count_checks(monkeypatch)
    keys = [key(i) for i in (0, 1, 13, 25, 26)]
    first = filled.gather(vectors, keys)
    again = filled.gather(vectors, keys[::-1])
    # Shards 0 and 2 hold a digest-less item: whole checksum, once; key(13) by its digest.
    assert shard_calls == [10, 10] and len(item_calls) == 2
    np.testing.assert_array_equal(first[::-1], again)
    np.testing.assert_array_equal(first, np.stack([value(k, DIM) for k in keys]))
    _, victim, _ = _shards(filled)[2]
    _flip_data_byte(victim)  # changes key(29), which has a digest
    with pytest.raises(StoreError, match=f"item '{key(29)}' in shard {victim} does not match its checksum"):
        FeatureStore(filled.root).gather(vectors, [key(29)])


def test_an_item_digest_catches_a_change_in_the_rows_it_reads_only(filled, vectors):
    _, victim, in_shard = _shards(filled)[1]
    _flip_data_byte(victim)  # the last row of the shard: its last item
    with pytest.raises(StoreError) as err:
        filled.gather(vectors, [key(0), in_shard[-1]])
    assert err.value.message == f"item '{in_shard[-1]}' in shard {victim} does not match its checksum: its bytes changed after they were written"
    assert err.value.hint.startswith(f"run: mmtk store repair --store {filled.root}")
    # A few neighbours read as stored; half the shard is checked whole and refused.
    np.testing.assert_array_equal(filled.gather(vectors, in_shard[:3]), np.stack([value(k, DIM) for k in in_shard[:3]]))
    with pytest.raises(StoreError, match=f"^shard {victim} does not match its checksum"):
        filled.gather(vectors, in_shard[:5])
    # verify names the shard, and repair drops all of it.
    assert filled.verify()["problems"] == [f"shard {victim} does not match its checksum (changed after it was written)"]
    assert filled.repair()["dropped_items"] == 10 and filled.missing(vectors, in_shard) == in_shard


def test_an_index_row_pointing_at_another_row_is_refused_and_repaired(filled, vectors):
    """An item whose offset was changed to another item's row: the shard is sound, the
    item's digest is not its new row's."""
    shard_id, path, in_shard = _shards(filled)[0]
    with sqlite3.connect(filled.root / "index.sqlite") as conn:
        conn.execute("UPDATE items SET start = 5 WHERE key = ?", (in_shard[2],))
    conn.close()
    with pytest.raises(StoreError, match=f"item '{in_shard[2]}' in shard {path} does not match its checksum"):
        filled.gather(vectors, [in_shard[2]])
    assert filled.verify()["problems"] == [f"1 items of shard {path} do not match their checksum (first: {in_shard[2]})"]
    report = filled.repair()
    assert report["dropped_items"] == 1 and report["damaged_shards"] == []
    assert filled.verify()["ok"] and filled.missing(vectors, in_shard) == [in_shard[2]]


def test_verify_reads_false_skips_the_check(filled, vectors):
    _, victim, _ = _shards(filled)[0]
    _flip_data_byte(victim)
    unchecked = FeatureStore(filled.root, verify_reads=False)
    assert unchecked.gather(vectors, [key(i) for i in range(30)]).shape == (30, DIM)


def _write_nan_behind_mmtks_back(store: FeatureStore, shard_id: int, path, row: int) -> None:
    """A NaN in a shard whose checksum and digests are updated too: what a store written
    by other means (or an older writer without put's finite check) can hold."""
    array = np.load(path)
    array[row, 2] = np.nan
    rewrite_shard(store.root, shard_id, path, array)


def test_gather_refuses_nan_naming_the_item(filled, vectors):
    shard_id, path, keys = _shards(filled)[2]
    _write_nan_behind_mmtks_back(filled, shard_id, path, row=4)
    with pytest.raises(StoreError, match=f"item '{keys[4]}' has non-finite vec-test features") as err:
        filled.gather(vectors, [key(0), keys[4]])
    assert "mmtk store repair" in err.value.hint
    assert filled.gather(vectors, [keys[3], keys[5]]).shape == (2, DIM)
    report = filled.verify()
    assert report["problems"] == [f"shard {path} holds NaN or inf for 1 items (first: {keys[4]})"]


def test_a_zero_length_shard_is_named_with_the_repair(filled, vectors):
    _, victim, keys = _shards(filled)[0]
    victim.write_bytes(b"")
    with pytest.raises(StoreError, match=f"shard {victim} cannot be read .the file is empty") as err:
        filled.gather(vectors, keys)
    assert "mmtk store repair" in err.value.hint
    assert any(str(victim) in p and "unreadable" in p for p in filled.verify()["problems"])


# --------------------------------------------------------------------------- full disk


def test_full_disk_on_a_shard_write_is_a_store_error_and_leaves_nothing(filled, vectors, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "write_array", no_space)
    with pytest.raises(StoreError, match=r"no space left on the disk holding .*shards/aaaaaaaaaaaaaaaa/\w+\.npy\.tmp") as err:
        filled.put(vectors, ["new"], [np.ones(DIM)])
    assert "--store" in err.value.hint
    assert not list((filled.root / "shards").rglob("*.tmp"))
    assert filled.missing(vectors, ["new"]) == ["new"]
    assert filled.verify()["ok"]


def test_full_disk_in_sqlite_is_a_store_error_and_removes_the_new_shard(filled, vectors):
    shards_before = sorted((filled.root / "shards").rglob("*.npy"))
    conn = filled.index._connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's own SQLITE_FULL, deterministically: the database may not grow.
    conn.execute(f"PRAGMA max_page_count = {pages}")
    keys = [f"big-{i}" for i in range(3000)]
    with pytest.raises(StoreError, match=r"the disk holding the feature store index .*index.sqlite is full") as err:
        filled.put(vectors, keys, [np.ones(DIM)] * len(keys))
    assert "free space" in err.value.hint
    assert sorted((filled.root / "shards").rglob("*.npy")) == shards_before
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert filled.missing(vectors, keys[:3]) == keys[:3]
    assert filled.verify()["ok"]


def test_full_disk_during_compaction_is_a_store_error_and_loses_nothing(filled, vectors, monkeypatch):
    """The compacted shard is a memory map; its blocks are reserved up front so a full
    disk is an error there, not a SIGBUS on the first page written."""
    digest = filled.info("vec-test")["digest"]

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(StoreError, match="no space left on the disk holding"):
        filled.gc(compact_min_shards=2)
    assert not list((filled.root / "shards").rglob("*.tmp"))
    assert filled.verify()["ok"] and filled.info("vec-test")["digest"] == digest


# --------------------------------------------------------------------------- damaged index


def _overwrite_pages(index_path, first_page: int = 2) -> None:
    """Garbage over every page from ``first_page`` on, as a failing disk leaves it."""
    with sqlite3.connect(index_path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    size = index_path.stat().st_size
    rng = np.random.default_rng(0)
    with open(index_path, "rb+") as f:
        f.seek(page_size * (first_page - 1))
        f.write(rng.integers(0, 256, size - page_size * (first_page - 1), dtype=np.uint8).tobytes())


def test_corrupted_sqlite_pages_are_reported_not_crashed_on(filled):
    filled.close()
    index_path = filled.root / "index.sqlite"
    assert not (filled.root / "index.sqlite-wal").exists()
    _overwrite_pages(index_path)
    damaged = FeatureStore(filled.root)
    with pytest.raises(IndexDamaged, match=f"the feature store index {index_path} is damaged") as err:
        damaged.feature_sets()
    assert "move" in err.value.hint and "extract-features" in err.value.hint
    report = damaged.verify()
    assert not report["ok"] and report["index_damaged"]
    assert report["problems"] and str(index_path) in report["problems"][0]
    damaged.close()


# --------------------------------------------------------------------------- gc


def test_gc_leaves_damaged_rows_out_as_missing(filled, vectors):
    _, victim, lost = _shards(filled)[1]
    _flip_data_byte(victim)
    report = filled.gc(compact_min_shards=2)
    assert report["compacted_shards"] == 3 and report["new_shards"] == 1
    assert report["dropped_items"] == 10 and len(report["damaged_shards"]) == 1
    assert str(victim) in report["damaged_shards"][0]
    assert not victim.exists()
    # Nothing damaged got a fresh checksum: verify passes, and the lost items are
    # missing (the next extraction recomputes them), the others intact.
    assert filled.verify()["ok"]
    keys = [key(i) for i in range(30)]
    assert filled.missing(vectors, keys) == lost
    kept = [k for k in keys if k not in lost]
    np.testing.assert_array_equal(filled.gather(vectors, kept), np.stack([value(k, DIM) for k in kept]))


def test_gc_compacting_only_damaged_shards_drops_them(filled, vectors):
    for _, path, _ in _shards(filled):
        _flip_data_byte(path)
    report = filled.gc(compact_min_shards=2)
    assert report["new_shards"] == 0 and report["dropped_items"] == 30
    assert filled.verify()["ok"] and filled.feature_sets()[0]["items"] == 0


# --------------------------------------------------------------------------- repair


def test_repair_drops_exactly_the_damaged_items(tmp_path, store, vectors):
    keys = _fill(store, vectors)
    pristine = FeatureStore(tmp_path / "pristine")
    pristine.register(vectors, store.index.feature_set_meta(vectors))
    _fill(pristine, vectors)
    (_, flipped, lost_a), (_, deleted, lost_b), (nan_id, nan_path, third) = _shards(store)
    _flip_data_byte(flipped)
    deleted.unlink()
    _write_nan_behind_mmtks_back(store, nan_id, nan_path, row=7)
    assert len(store.verify()["problems"]) == 3

    dry = store.repair(dry_run=True)
    assert dry["dropped_items"] == 21 and len(store.verify()["problems"]) == 3

    report = store.repair()
    assert report["dropped_items"] == 21
    assert report["feature_sets"] == [{"fingerprint": vectors, "backbone": "vec-test", "items": 21}]
    assert sorted(s["path"] for s in report["damaged_shards"]) == sorted(
        p.relative_to(store.root).as_posix() for p in (flipped, deleted)
    )
    assert not flipped.exists() and nan_path.exists()
    assert store.verify()["ok"]
    todo = store.missing(vectors, keys)
    assert sorted(todo) == sorted(lost_a + lost_b + [third[7]])
    store.put(vectors, todo, [value(k, DIM) for k in todo])
    assert store.verify()["ok"]
    assert store.info("vec-test")["digest"] == pristine.info("vec-test")["digest"]
    assert store.repair()["dropped_items"] == 0


def test_repair_drops_items_pointing_past_their_shard(filled, vectors):
    with sqlite3.connect(filled.root / "index.sqlite") as conn:
        conn.execute("UPDATE items SET start = 50 WHERE key = ?", (key(3),))
    assert filled.repair()["dropped_items"] == 1
    assert filled.missing(vectors, [key(i) for i in range(30)]) == [key(3)]
    assert filled.verify()["ok"]


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_index_paths_outside_the_store_are_refused_never_followed(tmp_path, filled, vectors, where):
    victims = [tmp_path / "victim.txt", tmp_path / "victim2.txt"]
    for victim in victims:
        victim.write_text("precious")
    if where == "relative":
        named = ["../victim.txt", "shards/../../victim2.txt"]
    else:
        named = [str(v) for v in victims]
    shard_id, _, keys = _shards(filled)[0]
    with sqlite3.connect(filled.root / "index.sqlite") as conn:
        conn.execute("UPDATE shards SET path = ? WHERE id = ?", (named[0], shard_id))
        # A row no item points at: gc deletes the files of such rows.
        conn.execute(
            "INSERT INTO shards (fingerprint, path, rows, bytes, checksum, created) VALUES (?, ?, 1, 1, 'x', 0)",
            (vectors, named[1]),
        )
    with pytest.raises(StoreError, match="outside .*shards: the index is corrupt") as err:
        filled.gather(vectors, keys)
    assert "mmtk store repair" in err.value.hint
    assert any(f"shard {named[0]!r} named by the index is outside" in p for p in filled.verify()["problems"])
    assert filled.gc(compact=False)["refused_paths"] == [named[1]]
    assert filled.repair()["dropped_items"] == 10
    assert filled.verify()["ok"]
    assert filled.missing(vectors, keys) == keys
    filled.remove("vec-test")
    assert [v.read_text() for v in victims] == ["precious", "precious"]


def test_a_symlinked_shard_pointing_outside_is_refused(tmp_path, filled, vectors):
    victim = tmp_path / "victim.npy"
    np.save(victim, np.zeros((10, DIM), np.float32))
    _, real, keys = _shards(filled)[0]
    real.unlink()
    real.symlink_to(victim)
    with pytest.raises(StoreError, match="outside"):
        filled.gather(vectors, keys)
    assert filled.repair()["dropped_items"] == 10
    assert victim.exists()
    # Folders linked in from outside: gc neither walks into them nor removes them.
    outside, empty = tmp_path / "outside", tmp_path / "empty"
    outside.mkdir()
    empty.mkdir()
    (outside / "old.npy").write_bytes(b"x")
    (filled.root / "shards" / "linked").symlink_to(outside)
    (filled.root / "shards" / "linked-empty").symlink_to(empty)
    # The link is an orphan now; gc removes the link, never what it points at.
    filled.gc(min_age_s=0)
    assert victim.exists() and not real.is_symlink()
    assert (outside / "old.npy").exists() and empty.is_dir()
