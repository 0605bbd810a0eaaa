"""``FeatureStore.sequence_reader``: the store-backed batch source reads chosen items'
sequences per batch. Each read must give what ``gather_sequences`` gives for those
items (padded to the batch's longest, cut at ``max_len``, an absent item empty), and
refuse what gather refuses (missing items, the other kind, damaged shards)."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.errors import StoreError, UsageError
from mmtk.store import FeatureStore

SEQ, VEC = "b" * 64, "a" * 64


def _steps(i: int, n: int) -> np.ndarray:
    return (np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 100 * i) if n else np.zeros((0, 2), np.float32)


LENGTHS = [3, 0, 5, 1, 2, 4]


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    """Six sequences (lengths 3, 0, 5, 1, 2, 4) in two shards, written out of order."""
    s = FeatureStore(tmp_path / "store")
    s.register(SEQ, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": 2})
    s.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 2})
    s.put(SEQ, ["s4", "s2", "s0"], [_steps(i, LENGTHS[i]) for i in (4, 2, 0)])
    s.put(SEQ, ["s5", "s1", "s3"], [_steps(i, LENGTHS[i]) for i in (5, 1, 3)])
    s.put(VEC, ["v"], [np.ones(2)])
    yield s
    s.close()


KEYS = ["s0", "s1", None, "s2", "s3", "s4", "s5"]


@pytest.mark.parametrize("positions", [[0, 1, 2, 3, 4, 5, 6], [6, 3, 0], [2], [1, 2], [5, 4, 3, 5]])
@pytest.mark.parametrize("max_len", [None, 2, 0])
def test_reads_give_what_gather_gives_for_those_items(store, positions, max_len):
    reader = store.sequence_reader(SEQ, KEYS, max_len=max_len)
    assert len(reader) == len(KEYS)
    steps, lengths = reader.read(positions)
    chosen = [KEYS[p] for p in positions]
    expected = [LENGTHS[int(k[1])] if k else 0 for k in chosen]
    if max_len is not None:
        expected = [min(n, max_len) for n in expected]
    assert lengths.tolist() == expected
    assert steps.shape == (len(positions), max(expected), 2) and steps.dtype == np.float32
    for row, key, n in zip(steps, chosen, expected):
        want = np.zeros((max(expected), 2), np.float32)
        if key:
            want[:n] = _steps(int(key[1]), LENGTHS[int(key[1])])[:n]
        np.testing.assert_array_equal(row, want)
    there = [k for k in chosen if k]
    if there:
        gathered, gathered_lengths = store.gather_sequences(SEQ, there, max_len=max_len)
        kept = [i for i, k in enumerate(chosen) if k]
        assert gathered_lengths.tolist() == lengths[kept].tolist()
        np.testing.assert_array_equal(gathered, steps[kept][:, : gathered.shape[1]])


def test_a_subset_reads_its_items_in_its_order_and_sizes_its_padding(store):
    reader = store.sequence_reader(SEQ, KEYS)
    assert reader.padded_nbytes() == 7 * 5 * 2 * 4
    part = reader.subset([6, 0, 2])
    assert len(part) == 3 and part.padded_nbytes() == 3 * 4 * 2 * 4
    steps, lengths = part.read([0, 1, 2])
    assert lengths.tolist() == [4, 3, 0]
    np.testing.assert_array_equal(steps[0], _steps(5, 4))
    np.testing.assert_array_equal(steps[1, :3], _steps(0, 3))
    capped = store.sequence_reader(SEQ, KEYS, max_len=2).subset([3, 4])
    assert capped.padded_nbytes() == 2 * 2 * 2 * 4
    assert capped.read([1, 0])[1].tolist() == [1, 2]
    assert store.sequence_reader(SEQ, [None, "s1"]).padded_nbytes() == 0
    assert store.sequence_reader(SEQ, []).padded_nbytes() == 0


def test_a_reader_refuses_what_gather_refuses(store):
    with pytest.raises(StoreError) as error:
        store.sequence_reader(SEQ, ["s0", None, "nope"])
    assert error.value.message == f"1 of 2 items have no seq features in store {store.root}"
    with pytest.raises(StoreError) as error:
        store.sequence_reader("c" * 64, ["x", None, "y"])
    assert error.value.message == f"2 of 2 items have no features for backbone fingerprint {'c' * 12} in store {store.root}"
    with pytest.raises(UsageError) as error:
        store.sequence_reader(VEC, ["v"])
    assert (error.value.message, error.value.hint) == (
        "vec features are stored as vectors, not sequences",
        "use gather() (a feature ref without ':seq')",
    )


def test_absent_items_beside_items_of_one_later_shard(store):
    reader = store.sequence_reader(SEQ, [None, "s5", None])
    steps, lengths = reader.read([2, 1, 0])
    assert lengths.tolist() == [0, 4, 0]
    np.testing.assert_array_equal(steps[1], _steps(5, 4))
    assert not steps[[0, 2]].any()


def test_a_damaged_shard_is_refused_when_read(store):
    import sqlite3

    reader = store.sequence_reader(SEQ, KEYS)
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        ((path,),) = conn.execute("SELECT s.path FROM items i JOIN shards s ON s.id = i.shard WHERE i.key = 's2'").fetchall()
    conn.close()
    path = store.root / path
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"^shard {path} does not match its checksum"):
        reader.read([0, 3])
    assert reader.read([1, 6])[1].tolist() == [0, 4]  # the other shard reads
    np.save(path, np.zeros((2, 2), np.float32))
    with pytest.raises(StoreError) as error:
        reader.read([3])
    assert error.value.message == f"shard {path} has shape (2, 2), but the index expects 2 columns and at least 7 rows"
