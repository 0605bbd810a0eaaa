"""Shard files as users meet them: write failures the user can fix said in one line
(read-only file system, quota), others passed on with nothing left behind; disks
without fallocate; shards in NumPy's other header version or large enough to be hashed
in steps; a shard replaced on disk after this process checked it."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sqlite3

import numpy as np
import pytest

from mmtk.errors import StoreError
from mmtk.store import FeatureStore
from store_writer import rewrite_shard

VEC = "a" * 64


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    s = FeatureStore(tmp_path / "store")
    s.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 2})
    yield s
    s.close()


def _paths(store: FeatureStore) -> dict[str, object]:
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        rows = conn.execute("SELECT i.key, s.path FROM items i JOIN shards s ON s.id = i.shard").fetchall()
    conn.close()
    return {key: store.root / path for key, path in rows}


def _failing_write(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize(
    "code, message, hint",
    [
        (errno.EROFS, "cannot write {temp}: the file system is read-only", "read features from it, but extract into a writable store: --store DIR"),
        (
            errno.EDQUOT,
            "no space left on the disk holding {temp} (Disk quota exceeded)",
            "free space there or point --store (or $MMTK_STORE) at a disk with room; what was committed is kept and the next run computes only the rest",
        ),
    ],
)
def test_a_write_the_user_can_fix_fails_in_one_line_and_leaves_nothing(store, monkeypatch, code, message, hint):
    store.put(VEC, ["kept"], [np.ones(2)])
    monkeypatch.setattr(np.lib.format, "write_array", _failing_write(code))
    with pytest.raises(StoreError) as error:
        store.put(VEC, ["new"], [np.ones(2)])
    folder = store.root / "shards" / VEC[:16]
    temp = re.search(r"/\S+\.npy\.tmp", error.value.message).group(0)
    assert temp.startswith(f"{folder}/")
    assert (error.value.message, error.value.hint) == (message.format(temp=temp), hint)
    assert [p.name.endswith(".npy") for p in folder.iterdir()] == [True]
    assert store.missing(VEC, ["kept", "new"]) == ["new"]


def test_other_write_failures_pass_on_unchanged_and_leave_nothing(store, monkeypatch):
    monkeypatch.setattr(np.lib.format, "write_array", _failing_write(errno.EACCES))
    with pytest.raises(PermissionError):
        store.put(VEC, ["new"], [np.ones(2)])
    assert not list((store.root / "shards").rglob("*.tmp"))
    monkeypatch.setattr(np.lib.format, "write_array", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store.put(VEC, ["new"], [np.ones(2)])
    assert not list((store.root / "shards").rglob("*.tmp")) and store.missing(VEC, ["new"]) == ["new"]


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EINVAL])
def test_compaction_works_on_a_file_system_without_fallocate(store, monkeypatch, code):
    for i in range(3):
        store.put(VEC, [f"k{i}"], [np.full(2, i)])
    monkeypatch.setattr(os, "posix_fallocate", _failing_write(code))
    report = store.gc(compact_min_shards=2)
    assert (report["compacted_shards"], report["new_shards"]) == (3, 1)
    np.testing.assert_array_equal(store.gather(VEC, ["k2", "k0", "k1"]), [[2, 2], [0, 0], [1, 1]])
    assert store.verify()["ok"]


def test_a_full_disk_when_compaction_syncs_is_one_line_and_loses_nothing(store, monkeypatch):
    for i in range(3):
        store.put(VEC, [f"k{i}"], [np.full(2, i)])
    monkeypatch.setattr(os, "fsync", _failing_write(errno.ENOSPC))
    with pytest.raises(StoreError) as error:
        store.gc(compact_min_shards=2)
    assert error.value.message.startswith(f"no space left on the disk holding {store.root / 'shards' / VEC[:16]}/")
    assert error.value.message.endswith(".npy.tmp (No space left on device)")
    monkeypatch.undo()
    assert not list((store.root / "shards").rglob("*.tmp"))
    assert store.verify()["ok"] and store.verify()["shards"] == 3
    np.testing.assert_array_equal(store.gather(VEC, ["k2", "k0"]), [[2, 2], [0, 0]])


def test_a_shard_with_a_version_2_header_is_read(store):
    store.put(VEC, ["k0", "k1"], [np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    path = _paths(store)["k0"]
    array = np.load(path)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, version=(2, 0))
    assert path.read_bytes()[6:8] == b"\x02\x00"
    assert store.verify()["ok"]
    fresh = FeatureStore(store.root)
    np.testing.assert_array_equal(fresh.gather(VEC, ["k1", "k0"]), [[3.0, 4.0], [1.0, 2.0]])
    fresh.close()


def test_a_shard_in_fortran_order_is_unreadable(store):
    store.put(VEC, ["k0", "k1"], [np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    path = _paths(store)["k0"]
    np.save(path, np.asfortranarray(np.load(path)))
    assert store.verify()["problems"] == [f"shard {path} is unreadable (shard is stored in Fortran order)"]


def test_checksums_cover_every_byte_of_a_shard_read_in_steps(store, monkeypatch):
    """A shard of more rows than one checksum step (made 4 rows here, 65536 in use):
    the recorded checksum is blake2b-128 of all its data bytes (what earlier mmtk
    wrote, so their stores still verify), a byte changed in the last step is caught,
    and so is a NaN there."""
    from mmtk.store import shards

    monkeypatch.setattr(shards, "_CHECKSUM_ROWS", 4)
    n = 10
    keys = [f"k{i}" for i in range(n)]
    values = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    store.put(VEC, keys, list(values))
    path = _paths(store)["k0"]
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        ((recorded,),) = conn.execute("SELECT checksum FROM shards").fetchall()
    conn.close()
    assert recorded == hashlib.blake2b(values.tobytes(), digest_size=16).hexdigest()
    assert store.verify()["ok"]
    array = np.load(path)
    array[9, 1] = np.nan
    np.save(path, array)
    assert store.verify()["problems"] == [f"shard {path} does not match its checksum (changed after it was written)"]
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        conn.execute("UPDATE shards SET checksum = ?", (hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest(),))
    conn.close()
    # The whole checksum passes now; k9's own digest still tells that it changed.
    assert store.verify()["problems"] == [
        f"shard {path} holds NaN or inf for 1 items (first: k9)",
        f"1 items of shard {path} do not match their checksum (first: k9)",
    ]
    assert store.repair()["dropped_items"] == 1 and store.missing(VEC, keys) == ["k9"]
    array[5, 0] = np.inf
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        ((shard_id,),) = conn.execute("SELECT id FROM shards").fetchall()
    conn.close()
    rewrite_shard(store.root, shard_id, path, array)  # checksum and digests to match, as another writer would
    assert store.verify()["problems"] == [f"shard {path} holds NaN or inf for 1 items (first: k5)"]


def test_a_shard_replaced_after_this_process_checked_it_is_checked_again(store):
    """The whole-shard check for items without their own digest (stored before index
    schema 2)."""
    store.put(VEC, ["k0", "k1"], [np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        conn.execute("UPDATE items SET digest = NULL")
    conn.close()
    np.testing.assert_array_equal(store.gather(VEC, ["k0"]), [[1.0, 2.0]])
    path = _paths(store)["k0"]
    replacement = path.with_name("replacement.npy")
    np.save(replacement, np.array([[1.0, 2.0], [3.0, 5.0]], np.float32))  # same size, one value changed
    os.replace(replacement, path)
    with pytest.raises(StoreError) as error:
        store.gather(VEC, ["k0"])
    assert error.value.message == f"shard {path} does not match its checksum: its bytes changed after they were written"
    assert error.value.hint == f"run: mmtk store repair --store {store.root} (drops its items), then extract-features again to recompute them"
