"""`store info`'s digest, verify, repair and gc on the cases the other store tests leave
out: the digest's written-out definition (so two mmtk versions compare stores alike),
maintenance running while another process compacts, shards no item points at, several
damaged shards at once, and compaction packing shards into groups under the size cap."""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pytest

from mmtk.store import FeatureStore
from mmtk.store.shards import checksum_rows

VEC, SEQ = "a" * 64, "b" * 64


def _sql(store: FeatureStore, statement: str, args: tuple = ()) -> list:
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        rows = conn.execute(statement, args).fetchall()
    conn.close()
    return rows


def _shard(store: FeatureStore, key: str, fingerprint: str = VEC) -> tuple[int, object]:
    ((shard, path),) = _sql(
        store, "SELECT s.id, s.path FROM items i JOIN shards s ON s.id = i.shard WHERE i.fingerprint = ? AND i.key = ?", (fingerprint, key)
    )
    return shard, store.root / path


def _set_value(store: FeatureStore, key: str, column: int, number: float) -> None:
    """Write ``number`` into item ``key``'s row behind mmtk's back, checksum updated (a
    store written by other means)."""
    shard, path = _shard(store, key)
    ((start,),) = _sql(store, "SELECT start FROM items WHERE fingerprint = ? AND key = ?", (VEC, key))
    array = np.load(path)
    array[start, column] = number
    np.save(path, array)
    _sql(store, "UPDATE shards SET checksum = ? WHERE id = ?", (checksum_rows(array), shard))


def _vectors(tmp_path, name: str = "store", shards: int = 3, per_shard: int = 2) -> FeatureStore:
    store = FeatureStore(tmp_path / name)
    store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    for s in range(shards):
        keys = [f"k{s}-{i}" for i in range(per_shard)]
        store.put(VEC, keys, [np.full(3, 10 * s + i, np.float32) for i in range(per_shard)])
    return store


def _all_keys(shards: int = 3, per_shard: int = 2) -> list[str]:
    return [f"k{s}-{i}" for s in range(shards) for i in range(per_shard)]


# --------------------------------------------------------------------------- digest


def _reference_digest(kind: str, dim: int, items: dict[str, np.ndarray]) -> str:
    """The digest as its docstring defines it: each item's blake2b-256 of key (UTF-8),
    length (8 bytes little-endian) and float32 bytes, summed modulo 2**256; then
    blake2b-128 of "kind:dim:count:" and the sum (32 bytes little-endian)."""
    total = 0
    for key, array in items.items():
        rows = np.asarray(array, np.float32).reshape(-1, dim)
        h = hashlib.blake2b(key.encode("utf-8"), digest_size=32)
        h.update(len(rows).to_bytes(8, "little"))
        if len(rows):
            h.update(np.ascontiguousarray(rows, dtype="<f4").data)
        total = (total + int.from_bytes(h.digest(), "little")) % (1 << 256)
    head = f"{kind}:{dim}:{len(items)}:".encode()
    return hashlib.blake2b(head + total.to_bytes(32, "little"), digest_size=16).hexdigest()


def test_the_digest_follows_its_written_definition(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    store.register(SEQ, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": 2})
    vectors = {"é-1": np.array([1.5, -2, 3]), "k2": np.array([0.25, 0, 7]), "k3": np.array([9, 9, 9.5])}
    store.put(VEC, ["é-1", "k2"], [vectors["é-1"], vectors["k2"]])
    store.put(VEC, ["k3"], [vectors["k3"]])
    sequences = {"s1": np.arange(6.0).reshape(3, 2), "s2": np.zeros((0, 2)), "s3": np.array([[1.0, -1.0]])}
    store.put(SEQ, list(sequences), list(sequences.values()))
    assert store.info("vec")["digest"] == _reference_digest("vector", 3, vectors)
    assert store.info("seq")["digest"] == _reference_digest("sequence", 2, sequences)


def test_the_digest_is_read_again_when_gc_compacts_meanwhile(tmp_path, monkeypatch):
    """Another process compacts the shards after `store info` listed them: the digest
    is computed again from the new shard, and is the same."""
    from mmtk.store import maintenance

    store = _vectors(tmp_path)
    store.register(SEQ, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": 2})
    store.put(SEQ, ["s"], [np.ones((2, 2))])  # another set, in the store but not in the digest
    before = store.info("vec")["digest"]
    other = FeatureStore(store.root)
    real = maintenance.open_shard
    compacted: list = []

    def compact_first(root, relpath):
        if not compacted:  # the other process's gc reads shards through here too
            compacted.append(None)
            compacted[0] = other.gc(compact_min_shards=2)
        return real(root, relpath)

    monkeypatch.setattr(maintenance, "open_shard", compact_first)
    assert store.info("vec")["digest"] == before
    assert compacted[0]["compacted_shards"] == 3 and store.verify()["shards"] == 2
    other.close()
    store.close()


def test_verify_while_gc_compacts_meanwhile_finds_nothing_wrong(tmp_path, monkeypatch):
    from mmtk.store import maintenance

    store = _vectors(tmp_path)
    other = FeatureStore(store.root)
    real = maintenance.inspect_shard
    compacted: list = []

    def compact_first(root, row, dim, checksums=True):
        if not compacted:  # the other process's gc inspects shards through here too
            compacted.append(None)
            compacted[0] = other.gc(compact_min_shards=2)
        return real(root, row, dim, checksums)

    monkeypatch.setattr(maintenance, "inspect_shard", compact_first)
    report = store.verify()
    assert compacted[0]["new_shards"] == 1
    assert report == {"ok": True, "index_damaged": False, "problems": [], "orphans": [], "feature_sets": 1, "shards": 3, "items": 6}
    other.close()
    store.close()


# --------------------------------------------------------------------------- verify


def test_the_rows_a_shard_really_holds_bound_its_items(tmp_path):
    """The index says 4 rows but the file holds 2: an item at row 2 is past the end,
    whatever the index says."""
    store = _vectors(tmp_path)
    shard, path = _shard(store, "k1-1")
    _sql(store, "UPDATE shards SET rows = 4 WHERE id = ?", (shard,))
    _sql(store, "UPDATE items SET start = 2 WHERE fingerprint = ? AND key = 'k1-1'", (VEC,))
    assert store.verify()["problems"] == [
        f"shard {path} has 2 rows, the index recorded 4",
        f"1 items point past the end of shard {path} (2 rows) (first: k1-1)",
    ]
    store.close()


def test_a_shard_of_float64_is_named_by_verify_and_dropped_by_repair(tmp_path):
    store = _vectors(tmp_path)
    shard, path = _shard(store, "k0-0")
    array = np.load(path).astype(np.float64)
    np.save(path, array)
    problem = f"shard {path} holds float64 (2, 3), expected float32 (rows, 3)"
    assert store.verify()["problems"] == [problem]
    assert store.repair()["dropped_items"] == 2
    assert store.missing(VEC, _all_keys()) == ["k0-0", "k0-1"] and store.verify()["ok"]
    store.close()


def test_a_shard_left_without_items_is_no_problem_and_gc_takes_it(tmp_path):
    """Repair drops a NaN item that was alone in its shard: the shard row stays, with
    NaN bytes no item reads; verify passes and gc removes it."""
    store = _vectors(tmp_path, per_shard=1)
    _set_value(store, "k2-0", 1, np.nan)
    _, path = _shard(store, "k2-0")
    assert store.repair()["dropped_items"] == 1
    report = store.verify()
    assert report["ok"] and report["shards"] == 3 and report["items"] == 2
    size = path.stat().st_size
    dry = store.gc(dry_run=True, compact=False)
    assert (dry["unreferenced_shards"], dry["bytes_freed"]) == ([path.relative_to(store.root).as_posix()], size)
    assert path.exists() and store.verify()["shards"] == 3
    report = store.gc(compact=False)
    assert (report["unreferenced_shards"], report["bytes_freed"]) == (dry["unreferenced_shards"], size)
    assert not path.exists() and store.verify()["shards"] == 2
    store.close()


def test_repair_lists_a_missing_shard_no_item_points_at_with_no_items(tmp_path):
    store = _vectors(tmp_path, per_shard=1)
    _set_value(store, "k1-0", 1, np.nan)
    _, path = _shard(store, "k1-0")
    assert store.repair()["dropped_items"] == 1
    path.unlink()
    report = store.repair()
    assert report == {
        "dry_run": False,
        "damaged_shards": [{"path": path.relative_to(store.root).as_posix(), "problem": f"shard {path} is missing", "items": 0}],
        "dropped_items": 0,
        "feature_sets": [],
        "bytes_freed": 0,
    }
    assert store.verify()["ok"] and store.verify()["shards"] == 2
    store.close()


def test_gc_counts_every_unreferenced_shard_and_a_missing_file_as_nothing(tmp_path):
    store = _vectors(tmp_path, per_shard=1)
    for key in ("k0-0", "k1-0", "k2-0"):
        _set_value(store, key, 0, np.inf)
    paths = [_shard(store, key)[1] for key in ("k0-0", "k1-0", "k2-0")]
    assert store.repair()["dropped_items"] == 3
    paths[2].unlink()  # its file is gone already: it frees nothing
    size = paths[0].stat().st_size + paths[1].stat().st_size
    report = store.gc(compact=False)
    assert sorted(report["unreferenced_shards"]) == sorted(p.relative_to(store.root).as_posix() for p in paths)
    assert report["bytes_freed"] == size
    assert not any(p.exists() for p in paths) and store.verify() == {**store.verify(), "ok": True, "shards": 0}
    store.close()


def test_gc_without_an_age_limit_keeps_every_indexed_shard(tmp_path):
    store = _vectors(tmp_path)
    files = sorted((store.root / "shards").rglob("*.npy"))
    report = store.gc(min_age_s=0, compact=False)
    assert (report["orphans"], report["temp_files"], report["bytes_freed"]) == ([], [], 0)
    assert sorted((store.root / "shards").rglob("*.npy")) == files
    np.testing.assert_array_equal(store.gather(VEC, ["k2-1"]), [[21.0] * 3])
    store.close()


# --------------------------------------------------------------------------- repair


def test_repair_counts_bad_items_and_bytes_over_several_shards(tmp_path):
    store = _vectors(tmp_path)
    _set_value(store, "k0-1", 2, np.nan)
    _set_value(store, "k1-0", 0, -np.inf)
    _, truncated = _shard(store, "k2-0")
    truncated.write_bytes(truncated.read_bytes()[:-4])
    sizes = truncated.stat().st_size
    expected_sets = [{"fingerprint": VEC, "backbone": "vec", "items": 4}]
    dry = store.repair(dry_run=True)
    assert (dry["dropped_items"], dry["feature_sets"], dry["bytes_freed"]) == (4, expected_sets, sizes)
    report = store.repair()
    assert (report["dropped_items"], report["feature_sets"], report["bytes_freed"]) == (4, expected_sets, sizes)
    assert store.missing(VEC, _all_keys()) == ["k0-1", "k1-0", "k2-0", "k2-1"]
    assert store.verify()["ok"] and not truncated.exists()
    store.close()


def test_repair_frees_the_bytes_of_every_damaged_shard(tmp_path):
    store = _vectors(tmp_path)
    paths = [_shard(store, key)[1] for key in ("k0-0", "k2-0")]
    for path in paths:
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    size = sum(p.stat().st_size for p in paths)
    report = store.repair()
    assert (report["dropped_items"], report["bytes_freed"], len(report["damaged_shards"])) == (4, size, 2)
    assert store.missing(VEC, _all_keys()) == ["k0-0", "k0-1", "k2-0", "k2-1"]
    store.close()


# --------------------------------------------------------------------------- gc compaction


def test_compaction_skips_a_set_with_few_shards_but_compacts_the_next(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.register(SEQ, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": 2})
    store.put(SEQ, ["only"], [np.ones((2, 2))])
    store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    for i in range(3):
        store.put(VEC, [f"v{i}"], [np.full(3, i)])
    report = store.gc(compact_min_shards=2)
    assert (report["compacted_shards"], report["new_shards"]) == (3, 1)
    assert [s["shards"] for s in store.feature_sets()] == [1, 1]
    np.testing.assert_array_equal(store.gather(VEC, ["v2", "v0"]), [[2.0] * 3, [0.0] * 3])
    store.close()


def test_compaction_drops_items_past_the_end_or_before_the_start(tmp_path):
    store = _vectors(tmp_path)
    _sql(store, "UPDATE items SET start = 2 WHERE fingerprint = ? AND key = 'k0-1'", (VEC,))  # one past the end
    _sql(store, "UPDATE items SET start = -1 WHERE fingerprint = ? AND key = 'k1-0'", (VEC,))
    report = store.gc(compact_min_shards=2)
    assert (report["compacted_shards"], report["dropped_items"], report["damaged_shards"]) == (3, 2, [])
    assert store.missing(VEC, _all_keys()) == ["k0-1", "k1-0"] and store.verify()["ok"]
    np.testing.assert_array_equal(store.gather(VEC, ["k0-0", "k1-1", "k2-0"]), [[0.0] * 3, [11.0] * 3, [20.0] * 3])
    store.close()


def test_compaction_drops_a_shard_of_the_wrong_width_even_with_its_checksum(tmp_path):
    store = _vectors(tmp_path)
    shard, path = _shard(store, "k1-0")
    wide = np.ones((2, 4), np.float32)
    np.save(path, wide)
    _sql(store, "UPDATE shards SET checksum = ? WHERE id = ?", (checksum_rows(wide), shard))
    report = store.gc(compact_min_shards=2)
    assert report["damaged_shards"] == [f"shard {path} holds float32 (2, 4), expected float32 (rows, 3)"]
    assert report["dropped_items"] == 2 and store.verify()["ok"]
    assert store.missing(VEC, _all_keys()) == ["k1-0", "k1-1"]
    store.close()


def test_compaction_of_damaged_shards_only_frees_their_bytes(tmp_path):
    store = _vectors(tmp_path)
    paths = sorted((store.root / "shards" / VEC[:16]).glob("*.npy"))
    for path in paths:
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    size = sum(p.stat().st_size for p in paths)
    report = store.gc(compact_min_shards=2)
    assert (report["new_shards"], report["dropped_items"], report["bytes_freed"]) == (0, 6, size)
    assert not list((store.root / "shards").rglob("*.npy")) and store.verify()["ok"]
    store.close()


def test_compaction_packs_shards_into_groups_under_the_size_cap(tmp_path, monkeypatch):
    """Shards are packed in id order into groups no larger than the cap; a group of one
    is left alone, and damage in each group is reported for all of them."""
    from mmtk.store import maintenance

    store = _vectors(tmp_path, shards=5)
    size = next((store.root / "shards" / VEC[:16]).glob("*.npy")).stat().st_size  # all five are alike
    monkeypatch.setattr(maintenance, "MAX_SHARD_BYTES", 2 * size)
    bad = [_shard(store, "k0-0")[1], _shard(store, "k3-0")[1]]
    for path in bad:
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    dry = store.gc(dry_run=True, compact_min_shards=2)
    assert (dry["compacted_shards"], dry["new_shards"]) == (4, 2)
    report = store.gc(compact_min_shards=2)
    assert (report["compacted_shards"], report["new_shards"], report["dropped_items"]) == (4, 2, 4)
    assert sorted(report["damaged_shards"]) == sorted(f"shard {p} does not match its checksum (changed after it was written)" for p in bad)
    assert store.verify()["ok"] and store.verify()["shards"] == 3
    assert store.missing(VEC, _all_keys(5)) == ["k0-0", "k0-1", "k3-0", "k3-1"]
    np.testing.assert_array_equal(store.gather(VEC, ["k4-1", "k1-0", "k2-1"]), [[41.0] * 3, [10.0] * 3, [21.0] * 3])
    store.close()


@pytest.mark.parametrize("shards, cap, groups", [(3, 3, [[0, 1, 2]]), (4, 2, [[0, 1], [2, 3]]), (5, 2, [[0, 1], [2, 3]])])
def test_groups_hold_consecutive_shards_up_to_the_cap(shards, cap, groups):
    from types import SimpleNamespace

    from mmtk.store import maintenance

    rows = [SimpleNamespace(id=i, bytes=maintenance.MAX_SHARD_BYTES // cap) for i in range(shards)]
    assert [[r.id for r in g] for g in maintenance._groups(rows)] == groups


def test_index_damage_sqlite_finds_beside_readable_entries_fails_verify(tmp_path):
    """A byte of the index header changed (its free-page count): every entry still
    reads, but SQLite's check finds the damage, so verify fails and names the index."""
    store = _vectors(tmp_path, shards=1)
    store.register(SEQ, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": 2})
    store.put(SEQ, [f"s{i}" for i in range(3000)], [np.zeros((0, 2))] * 3000)
    store.remove("seq")  # frees index pages
    store.close()
    index = store.root / "index.sqlite"
    data = bytearray(index.read_bytes())
    free = int.from_bytes(data[36:40], "big")
    assert free > 0
    data[36:40] = (free + 5).to_bytes(4, "big")
    index.write_bytes(bytes(data))
    store = FeatureStore(store.root)
    assert store.verify() == {
        "ok": False,
        "index_damaged": True,
        "problems": [f"index {index}: *** in database main ***\nMain freelist: size is {free} but should be {free + 5}"],
        "orphans": [],
        "feature_sets": 1,
        "shards": 1,
        "items": 2,
    }
    np.testing.assert_array_equal(store.gather(VEC, ["k0-1"]), [[1.0] * 3])
    store.close()


def test_compaction_that_another_gc_did_first_changes_nothing_more(tmp_path, monkeypatch):
    """Two gc runs compact the same shards at once: the one that indexes its new shard
    second finds the old rows gone, removes its own new shard and reports nothing."""
    from mmtk.store import maintenance

    store = _vectors(tmp_path)
    other = FeatureStore(store.root)
    real = maintenance.commit_memmap
    raced: list = []

    def other_gc_first(root, array, temp, final):
        written = real(root, array, temp, final)
        if not raced:  # the other gc commits through here too
            raced.append(None)
            raced[0] = other.gc(compact_min_shards=2)
        return written

    monkeypatch.setattr(maintenance, "commit_memmap", other_gc_first)
    report = store.gc(compact_min_shards=2)
    assert (raced[0]["compacted_shards"], raced[0]["new_shards"]) == (3, 1)
    assert (report["compacted_shards"], report["new_shards"], report["dropped_items"], report["bytes_freed"]) == (0, 0, 0, 0)
    assert len(list((store.root / "shards").rglob("*.npy"))) == 1
    assert store.verify() == {"ok": True, "index_damaged": False, "problems": [], "orphans": [], "feature_sets": 1, "shards": 1, "items": 6}
    np.testing.assert_array_equal(store.gather(VEC, ["k2-1", "k0-0"]), [[21.0] * 3, [0.0] * 3])
    other.close()
    store.close()


def test_a_set_removed_while_gc_compacts_it_leaves_no_file(tmp_path, monkeypatch):
    from mmtk.store import maintenance

    store = _vectors(tmp_path)
    other = FeatureStore(store.root)
    real = maintenance.commit_memmap

    def remove_meanwhile(root, array, temp, final):
        written = real(root, array, temp, final)
        other.remove("vec")
        return written

    monkeypatch.setattr(maintenance, "commit_memmap", remove_meanwhile)
    report = store.gc(compact_min_shards=2)
    assert (report["compacted_shards"], report["new_shards"], report["bytes_freed"]) == (0, 0, 0)
    assert not list((store.root / "shards").rglob("*.npy"))
    assert store.verify() == {"ok": True, "index_damaged": False, "problems": [], "orphans": [], "feature_sets": 0, "shards": 0, "items": 0}
    other.close()
    store.close()
