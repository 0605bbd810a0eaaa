"""What the store tells a user at its edges, word for word: refused metadata and items,
reads of what is not there, names that match no feature set, and the damage verify,
repair and gc find in an index written by other means (items of an unregistered set, a
vector spanning two rows, an item pointing at no shard, a shard whose row count
changed). Each case checks the outcome a user or a script sees: the error's message
and hint, the report, the data left readable and the files left on disk."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from mmtk.errors import StoreError, UsageError
from mmtk.store import FeatureStore

VEC, SEQ = "a" * 64, "b" * 64


@pytest.fixture
def small(tmp_path) -> FeatureStore:
    """Vectors (dim 3) in two shards: k1, k2 then k3; sequences (dim 2) in one: s1 of 2
    steps, s2 empty, s3 of 3 steps."""
    store = FeatureStore(tmp_path / "store")
    store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    store.register(SEQ, {"backbone": "seq", "modality": "text", "kind": "sequence", "dim": 2, "variant": "mean"})
    store.put(VEC, ["k1", "k2"], [np.full(3, 1.0), np.full(3, 2.0)])
    store.put(VEC, ["k3"], [np.full(3, 3.0)])
    store.put(SEQ, ["s1", "s2", "s3"], [np.full((2, 2), 1.0), np.zeros((0, 2)), np.arange(6.0).reshape(3, 2)])
    yield store
    store.close()


def _sql(store: FeatureStore, statement: str, args: tuple = ()) -> list:
    with sqlite3.connect(store.root / "index.sqlite") as conn:
        rows = conn.execute(statement, args).fetchall()
    conn.close()
    return rows


def _shard_path(store: FeatureStore, key: str, fingerprint: str = VEC):
    ((path,),) = _sql(store, "SELECT s.path FROM items i JOIN shards s ON s.id = i.shard WHERE i.fingerprint = ? AND i.key = ?", (fingerprint, key))
    return store.root / path


def _shard_id(store: FeatureStore, key: str, fingerprint: str = VEC) -> int:
    ((shard,),) = _sql(store, "SELECT shard FROM items WHERE fingerprint = ? AND key = ?", (fingerprint, key))
    return shard


# --------------------------------------------------------------------------- registering


@pytest.mark.parametrize(
    "meta, says",
    [
        ({"backbone": "x", "kind": "vector"}, "feature set meta lacks modality, dim"),
        ({"backbone": "x", "modality": "image", "kind": "matrix", "dim": 3}, "feature kind must be one of vector, sequence, not 'matrix'"),
        ({"backbone": "x", "modality": "image", "kind": "vector", "dim": 0}, "feature dim must be a positive integer, not 0"),
        ({"backbone": "x", "modality": "image", "kind": "vector", "dim": 2.0}, "feature dim must be a positive integer, not 2.0"),
    ],
)
def test_register_refuses_incomplete_or_wrong_meta_and_writes_nothing(tmp_path, meta, says):
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(ValueError) as error:
        store.register(VEC, meta)
    assert str(error.value) == says
    assert not store.exists()


def test_register_takes_a_numpy_dim_and_stores_it_as_an_int(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.register(VEC, {"backbone": "x", "modality": "image", "kind": "vector", "dim": np.int64(1)})
    assert store.feature_sets()[0]["dim"] == 1 and type(store.feature_sets()[0]["dim"]) is int
    store.register(VEC, {"backbone": "x", "modality": "image", "kind": "vector", "dim": 1})  # the same set again
    store.close()


def test_register_refuses_a_changed_kind_naming_the_set_and_both_kinds(small):
    with pytest.raises(StoreError) as error:
        small.register(VEC, {"backbone": "vec", "modality": "image", "kind": "sequence", "dim": 3})
    assert error.value.message == f"feature set {VEC[:12]} (vec) is stored with kind 'vector', not 'sequence', in store {small.root}"
    assert error.value.hint == "a backbone whose output changes needs a new fingerprint (bump its feature format version)"


# --------------------------------------------------------------------------- writing


def test_put_refuses_mismatched_keys_and_arrays(small):
    with pytest.raises(ValueError, match=r"^put got 2 keys but 1 arrays$"):
        small.put(VEC, ["x", "y"], [np.ones(3)])


def test_put_names_the_item_of_the_wrong_shape_or_type(small):
    with pytest.raises(StoreError) as error:
        small.put(VEC, ["ok", "bad"], [np.ones(3), np.ones(4, np.float64)])
    assert error.value.message == "item 'bad' has features of shape (4,) (float64); vec vectors are (3,) numbers"
    assert error.value.hint == "every item of one feature set must match the registered dim"
    with pytest.raises(StoreError) as error:
        small.put(SEQ, ["t"], [np.ones((2, 3), np.float32)])
    assert error.value.message == "item 't' has features of shape (2, 3) (float32); seq sequences are (T, 2) numbers"
    with pytest.raises(StoreError, match=r"^item 'v' has features of shape \(2,\) \(<U1\); seq sequences"):
        small.put(SEQ, ["v"], [np.array(["a", "b"])])
    with pytest.raises(StoreError, match=r"^item 'w' has features of shape \(3,\) \(<U1\); vec vectors"):
        small.put(VEC, ["w"], [np.array(["a", "b", "c"])])
    # Integers and booleans-as-numbers are numbers; nothing refused was stored.
    assert small.put(VEC, ["int"], [np.array([1, 2, 3], np.int16)]) == 1
    np.testing.assert_array_equal(small.gather(VEC, ["int"]), [[1, 2, 3]])
    assert small.missing(VEC, ["ok", "bad", "t", "v", "w"]) == ["ok", "bad", "t", "v", "w"]


def test_put_names_the_item_holding_nan_among_sequences(small):
    steps = [np.ones((2, 2)), np.zeros((0, 2)), np.ones((1, 2)), np.array([[1.0, 2.0], [np.inf, 0.0]])]
    with pytest.raises(StoreError) as error:
        small.put(SEQ, ["n1", "n2", "n3", "n4"], steps)
    assert error.value.message == "item 'n4' has non-finite seq features (NaN or inf)"
    assert error.value.hint == "check the input item and the backbone's precision (fp16 overflow?)"
    steps[3] = np.ones((2, 2))
    steps[2] = np.array([[np.nan, 0.0]])
    with pytest.raises(StoreError, match=r"^item 'n3' has non-finite"):
        small.put(SEQ, ["n1", "n2", "n3", "n4"], steps)
    assert small.missing(SEQ, ["n1", "n2", "n3", "n4"]) == ["n1", "n2", "n3", "n4"]


def test_put_into_an_unregistered_set_says_to_register_it(small):
    with pytest.raises(StoreError) as error:
        small.put("c" * 64, ["x"], [np.ones(3)])
    assert error.value.message == f"feature set {'c' * 12} is not registered in store {small.root}"
    assert error.value.hint == "call FeatureStore.register(fingerprint, meta) before put"


def test_put_counts_only_new_items_and_writes_no_shard_for_them_all_stored(small):
    before = sorted((small.root / "shards").rglob("*"))
    assert small.put(VEC, ["k1", "k2"], [np.zeros(3), np.zeros(3)]) == 0
    assert sorted((small.root / "shards").rglob("*")) == before
    assert small.put(VEC, ["k1", "new", "new"], [np.zeros(3), np.full(3, 5.0), np.zeros(3)]) == 1
    np.testing.assert_array_equal(small.gather(VEC, ["new", "k1"]), [[5.0] * 3, [1.0] * 3])


# --------------------------------------------------------------------------- reading


def test_reads_of_items_or_sets_nobody_extracted_say_what_to_run(small):
    with pytest.raises(StoreError) as error:
        small.gather(VEC, ["k1", "nope", "k2", "gone"])
    assert error.value.message == f"2 of 4 items have no vec features in store {small.root}"
    assert error.value.hint == "run: mmtk extract-features DATA --backbone vec"
    with pytest.raises(StoreError) as error:
        small.gather_sequences("d" * 64, ["x", "y"])
    assert error.value.message == f"2 of 2 items have no features for backbone fingerprint {'d' * 12} in store {small.root}"
    assert error.value.hint == "run: mmtk extract-features DATA --backbone BACKBONE"


def test_reading_the_other_kind_says_which_call_to_use(small):
    with pytest.raises(UsageError) as error:
        small.gather(SEQ, ["s1"])
    assert (error.value.message, error.value.hint) == (
        "seq features are stored as sequences, not vectors",
        "use gather_sequences() (a feature ref with ':seq')",
    )
    with pytest.raises(UsageError) as error:
        small.gather_sequences(VEC, ["k1"])
    assert (error.value.message, error.value.hint) == (
        "vec features are stored as vectors, not sequences",
        "use gather() (a feature ref without ':seq')",
    )


def test_gather_sequences_pads_cuts_and_refuses_a_negative_cap(small):
    steps, lengths = small.gather_sequences(SEQ, ["s3", "s2", "s1"])
    assert steps.shape == (3, 3, 2) and lengths.tolist() == [3, 0, 2]
    np.testing.assert_array_equal(steps[0], np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(steps[2], [[1, 1], [1, 1], [0, 0]])
    assert not steps[1].any()
    steps, lengths = small.gather_sequences(SEQ, ["s3", "s1"], max_len=1)
    assert lengths.tolist() == [1, 1]
    np.testing.assert_array_equal(steps, [[[0, 1]], [[1, 1]]])
    steps, lengths = small.gather_sequences(SEQ, ["s3"], max_len=0)
    assert steps.shape == (1, 0, 2) and lengths.tolist() == [0]
    steps, lengths = small.gather_sequences(SEQ, ["s2"])
    assert steps.shape == (1, 0, 2) and lengths.tolist() == [0]
    steps, lengths = small.gather_sequences(SEQ, [])
    assert steps.shape == (0, 0, 2) and lengths.tolist() == []
    assert small.gather(VEC, []).shape == (0, 3)
    with pytest.raises(ValueError, match=r"^max_len must be >= 0, not -1$"):
        small.gather_sequences(SEQ, ["s1"], max_len=-1)


def test_a_deleted_shard_is_named_with_what_to_run(small):
    path = _shard_path(small, "k3")
    path.unlink()
    with pytest.raises(StoreError) as error:
        small.gather(VEC, ["k1", "k3"])
    assert error.value.message == f"shard {path} holding vec features is missing from store {small.root}"
    assert error.value.hint == f"run: mmtk store repair --store {small.root}, then extract-features again to recompute its items"
    np.testing.assert_array_equal(small.gather(VEC, ["k2"]), [[2.0] * 3])


def test_an_item_pointing_at_a_shard_row_that_is_gone_is_named(small):
    shard = _shard_id(small, "k3")
    _sql(small, "DELETE FROM shards WHERE id = ?", (shard,))
    with pytest.raises(StoreError) as error:
        small.gather(VEC, ["k3", "k1"])
    assert error.value.message == f"shard id(s) [{shard}] holding vec features is missing from store {small.root}"
    assert small.verify()["problems"] == [f"1 items point at shard id {shard}, which is not in the index (first: k3)"]
    with pytest.raises(StoreError) as error:
        small.info("vec")
    assert error.value.message == f"item 'k3' points at shard id {shard}, which is not in the index of store {small.root}"
    assert error.value.hint == f"run: mmtk store repair --store {small.root}"


def test_an_item_past_its_shards_end_is_refused_on_read(small):
    path = _shard_path(small, "k2")
    _sql(small, "UPDATE items SET start = 5 WHERE fingerprint = ? AND key = 'k2'", (VEC,))
    with pytest.raises(StoreError) as error:
        small.gather(VEC, ["k2"])
    assert error.value.message == f"shard {path} has shape (2, 3), but the index expects 3 columns and at least 6 rows"
    assert error.value.hint == f"run: mmtk store repair --store {small.root}"
    # The last row of a shard is within it.
    _sql(small, "UPDATE items SET start = 1 WHERE fingerprint = ? AND key = 'k2'", (VEC,))
    np.testing.assert_array_equal(small.gather(VEC, ["k2"]), [[2.0] * 3])


def test_a_nan_written_behind_mmtks_back_is_refused_naming_its_item(small):
    from store_writer import rewrite_shard

    path = _shard_path(small, "k2")
    array = np.load(path)
    array[1, 0] = np.inf
    rewrite_shard(small.root, _shard_id(small, "k2"), path, array)
    with pytest.raises(StoreError) as error:
        small.gather(VEC, ["k3", "k1", "k2"])
    assert error.value.message == f"item 'k2' has non-finite vec features (NaN or inf) in store {small.root}"
    assert error.value.hint == f"run: mmtk store repair --store {small.root} (drops such items), then extract-features again to recompute them"
    np.testing.assert_array_equal(small.gather(VEC, ["k3", "k1"]), [[3.0] * 3, [1.0] * 3])


# --------------------------------------------------------------------------- names


def test_feature_sets_list_every_field(small):
    sets = small.feature_sets()
    for s in sets:
        assert s.pop("created").endswith("Z") and s.pop("bytes") > 0
    assert sets == [
        {"fingerprint": VEC, "backbone": "vec", "variant": "", "modality": "image", "kind": "vector", "dim": 3, "items": 3, "shards": 2},
        {"fingerprint": SEQ, "backbone": "seq", "variant": "mean", "modality": "text", "kind": "sequence", "dim": 2, "items": 3, "shards": 1},
    ]


def test_names_resolve_by_fingerprint_backbone_or_prefix_and_say_what_matches(small):
    assert small.resolve(SEQ) == SEQ and small.resolve("vec") == VEC and small.resolve("bbb") == SEQ
    with pytest.raises(UsageError) as error:
        small.resolve("zzz")
    assert error.value.message == f"no feature set in store {small.root} matches 'zzz'"
    assert error.value.hint == f"choose one of: {VEC[:12]} (vec), {SEQ[:12]} (seq mean)"
    with pytest.raises(UsageError) as error:
        small.resolve("")
    assert error.value.message == f"no feature set in store {small.root} matches ''"
    twin = "a" * 63 + "f"
    small.register(twin, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    with pytest.raises(UsageError) as error:
        small.resolve("vec")
    assert error.value.message == f"'vec' matches several feature sets: {VEC[:12]} (vec), {twin[:12]} (vec)"
    assert error.value.hint == "give a longer fingerprint prefix"
    assert small.resolve(twin) == twin  # a whole fingerprint wins over a prefix of two


def test_an_empty_store_says_no_name_matches_and_how_to_fill_it(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    store.remove("vec")
    with pytest.raises(UsageError) as error:
        store.resolve("vec")
    assert error.value.message == f"store {store.root} has no feature sets, so none matches 'vec'"
    assert error.value.hint == "run: mmtk extract-features DATA --backbone BACKBONE"
    store.close()


def test_remove_reports_what_it_dropped_and_leaves_the_other_set(small):
    assert small.remove("seq") == {"fingerprint": SEQ, "backbone": "seq", "items": 3, "shards": 1}
    assert not (small.root / "shards" / SEQ[:16]).exists() or not any((small.root / "shards" / SEQ[:16]).iterdir())
    assert [s["backbone"] for s in small.feature_sets()] == ["vec"]
    np.testing.assert_array_equal(small.gather(VEC, ["k1"]), [[1.0] * 3])


def test_info_adds_the_extra_meta_the_store_and_the_digest(small):
    info = small.info("seq")
    assert info["variant"] == "mean" and info["store"] == str(small.root) and len(info["digest"]) == 32
    assert "meta" not in info and {"backbone", "kind", "dim", "items", "shards", "bytes", "created"} <= set(info)


@pytest.mark.parametrize("make", ["nothing", "directory"])
def test_maintenance_of_no_store_says_so(tmp_path, make):
    root = tmp_path / "nowhere"
    if make == "directory":
        root.mkdir()
    store = FeatureStore(root)
    what = "no such directory" if make == "nothing" else "no index.sqlite in it"
    for command in (store.verify, store.repair, store.gc):
        with pytest.raises(StoreError) as error:
            command()
        assert error.value.message == f"no feature store at {root} ({what})"
        assert error.value.hint == "check --store (or $MMTK_STORE); mmtk extract-features creates a store"
    assert root.exists() == (make == "directory") and not (root / "index.sqlite").exists()


# --------------------------------------------------------------------------- damage written by other means


def test_items_of_an_unregistered_set_fail_verify_and_repair_drops_them(small):
    _sql(small, "DELETE FROM feature_sets WHERE fingerprint = ?", (SEQ,))
    report = small.verify()
    assert report == {
        "ok": False,
        "index_damaged": False,
        "problems": [f"items of feature set {SEQ[:12]} exist but the feature set is not registered"],
        "orphans": [],
        "feature_sets": 1,
        "shards": 3,
        "items": 6,
    }
    expected = {"damaged_shards": [], "dropped_items": 3, "feature_sets": [{"fingerprint": SEQ, "backbone": "(unregistered)", "items": 3}]}
    assert {k: v for k, v in small.repair(dry_run=True).items() if k != "bytes_freed"} == {"dry_run": True, **expected}
    assert {k: v for k, v in small.repair().items() if k != "bytes_freed"} == {"dry_run": False, **expected}
    assert _sql(small, "SELECT COUNT(*) FROM items WHERE fingerprint = ?", (SEQ,)) == [(0,)]
    # Its shard is unreferenced now; gc takes it, and the vectors stay whole.
    assert len(small.gc(compact=False)["unreferenced_shards"]) == 1
    assert small.verify()["ok"] and small.verify()["shards"] == 2
    np.testing.assert_array_equal(small.gather(VEC, ["k1", "k2", "k3"]), [[1.0] * 3, [2.0] * 3, [3.0] * 3])


def test_a_vector_spanning_two_rows_fails_verify_and_repair_drops_only_it(small):
    path = _shard_path(small, "k1")
    _sql(small, "UPDATE items SET length = 2 WHERE fingerprint = ? AND key = 'k1'", (VEC,))
    assert small.verify()["problems"] == [f"1 items are vectors of {path} that span other than one row (first: k1)"]
    report = small.repair()
    assert (report["dropped_items"], report["damaged_shards"], report["bytes_freed"]) == (1, [], 0)
    assert report["feature_sets"] == [{"fingerprint": VEC, "backbone": "vec", "items": 1}]
    assert small.missing(VEC, ["k1", "k2", "k3"]) == ["k1"] and small.verify()["ok"] and path.exists()


def test_an_item_with_data_but_no_shard_fails_verify_and_repair_drops_it(small):
    _sql(small, "UPDATE items SET shard = NULL WHERE fingerprint = ? AND key = 's3'", (SEQ,))
    assert small.verify()["problems"] == ["1 items point at no shard although they have data (first: s3)"]
    report = small.repair()
    assert report["dropped_items"] == 1 and report["feature_sets"] == [{"fingerprint": SEQ, "backbone": "seq", "items": 1}]
    # The empty sequence, which rightly has no shard, stays.
    assert small.missing(SEQ, ["s1", "s2", "s3"]) == ["s3"] and small.verify()["ok"]


def test_a_negative_offset_or_length_is_past_the_end(small):
    path = _shard_path(small, "k1")
    _sql(small, "UPDATE items SET start = -1 WHERE fingerprint = ? AND key = 'k1'", (VEC,))
    assert small.verify()["problems"] == [f"1 items point past the end of shard {path} (2 rows) (first: k1)"]
    _sql(small, "UPDATE items SET start = 0, length = -1 WHERE fingerprint = ? AND key = 's1'", (SEQ,))
    assert len(small.verify()["problems"]) == 2
    assert small.repair()["dropped_items"] == 2 and small.verify()["ok"]
    assert small.missing(VEC, ["k1", "k2"]) == ["k1"] and small.missing(SEQ, ["s1", "s3"]) == ["s1"]


def test_a_shard_whose_row_count_changed_is_damaged(small):
    path = _shard_path(small, "k3")
    _sql(small, "UPDATE shards SET rows = 4 WHERE id = ?", (_shard_id(small, "k3"),))
    problem = f"shard {path} has 1 rows, the index recorded 4"
    assert small.verify()["problems"] == [problem]
    assert small.verify(checksums=False)["problems"] == [problem]
    report = small.repair()
    assert report["damaged_shards"] == [{"path": path.relative_to(small.root).as_posix(), "problem": problem, "items": 1}]
    assert report["bytes_freed"] > 0 and not path.exists() and small.missing(VEC, ["k2", "k3"]) == ["k3"]


def test_a_shard_with_a_damaged_header_is_named_refused_and_repaired(small):
    path = _shard_path(small, "k3")
    path.write_bytes(b"\x93NUMPY\x09\x00garbage")
    (problem,) = small.verify()["problems"]
    assert problem == f"shard {path} is unreadable (unsupported .npy version (9, 0))"
    # One byte flipped in the header's dict ('}' gone): NumPy's parser fails in Python's
    # tokenizer, which must read as a damaged shard, not as an internal error.
    header = bytearray(_shard_path(small, "k1").read_bytes())
    header[header.index(b"}")] = ord(" ")
    path.write_bytes(bytes(header))
    (problem,) = small.verify()["problems"]
    assert problem.startswith(f"shard {path} is unreadable (its header cannot be parsed: ")
    with pytest.raises(StoreError) as error:
        small.gather(VEC, ["k1", "k3"])
    assert error.value.message.startswith(f"shard {path} cannot be read (")
    assert error.value.hint == f"run: mmtk store repair --store {small.root}"
    assert small.repair()["damaged_shards"] == [{"path": path.relative_to(small.root).as_posix(), "problem": problem, "items": 1}]
    assert small.missing(VEC, ["k1", "k2", "k3"]) == ["k3"] and small.verify()["ok"] and not path.exists()


def test_a_shard_cut_short_is_named_with_its_sizes(small):
    path = _shard_path(small, "k1")
    data = path.read_bytes()
    path.write_bytes(data[:-4])
    assert small.verify(checksums=False)["problems"] == [f"shard {path} is truncated ({len(data) - 4} of {len(data)} bytes)"]


def test_verify_without_checksums_skips_the_data_but_not_the_shape(small):
    path = _shard_path(small, "k1")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert small.verify(checksums=False)["ok"]
    assert small.verify()["problems"] == [f"shard {path} does not match its checksum (changed after it was written)"]


# --------------------------------------------------------------------------- gc


def test_gc_compaction_drops_items_with_nan_or_past_the_end_and_keeps_the_rest(tmp_path):
    from mmtk.store.shards import checksum_rows

    store = FeatureStore(tmp_path / "store")
    store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    for i in range(3):
        store.put(VEC, [f"a{i}", f"b{i}"], [np.full(3, i), np.full(3, 10 + i)])
    nan_shard = _shard_path(store, "a1")
    array = np.load(nan_shard)
    array[0, 1] = np.nan
    np.save(nan_shard, array)
    _sql(store, "UPDATE shards SET checksum = ? WHERE id = ?", (checksum_rows(array), _shard_id(store, "a1")))
    _sql(store, "UPDATE items SET start = 7 WHERE fingerprint = ? AND key = 'b2'", (VEC,))
    report = store.gc(compact_min_shards=3)
    assert {k: report[k] for k in ("compacted_shards", "new_shards", "damaged_shards", "dropped_items")} == {
        "compacted_shards": 3, "new_shards": 1, "damaged_shards": [], "dropped_items": 2,
    }
    assert report["bytes_freed"] > 0
    assert store.missing(VEC, [f"{c}{i}" for c in "ab" for i in range(3)]) == ["a1", "b2"]
    np.testing.assert_array_equal(store.gather(VEC, ["b1", "a2", "a0", "b0"]), [[11] * 3, [2] * 3, [0] * 3, [10] * 3])
    assert store.verify()["ok"] and store.verify()["shards"] == 1
    store.close()


def test_gc_compacts_only_at_the_shard_count_and_under_the_size(small):
    assert small.gc(compact_min_shards=3)["compacted_shards"] == 0
    assert small.gc(compact_min_shards=2, small_shard_bytes=1)["compacted_shards"] == 0
    size = max(p.stat().st_size for p in (small.root / "shards" / VEC[:16]).glob("*.npy"))
    assert small.gc(compact_min_shards=2, small_shard_bytes=size)["compacted_shards"] == 0
    report = small.gc(compact_min_shards=2, small_shard_bytes=size + 1)
    assert (report["compacted_shards"], report["new_shards"]) == (2, 1)
    assert small.verify()["shards"] == 2
    np.testing.assert_array_equal(small.gather(VEC, ["k3", "k1", "k2"]), [[3.0] * 3, [1.0] * 3, [2.0] * 3])


def test_gc_keeps_young_orphans_and_the_folders_of_registered_sets(small):
    import os
    import time

    folder = small.root / "shards" / VEC[:16]
    young, old = folder / "young.npy", folder / "old.npy"
    young.write_bytes(b"y" * 10)
    old.write_bytes(b"o" * 20)
    then = time.time() - 400
    os.utime(old, (then, then))
    registered_empty = small.root / "shards" / SEQ[:16]
    for path in registered_empty.iterdir():
        path.unlink()
    report = small.gc(compact=False)
    assert (report["orphans"], report["temp_files"], report["bytes_freed"]) == ([f"shards/{VEC[:16]}/old.npy"], [], 20)
    assert young.exists() and not old.exists() and registered_empty.is_dir()
    assert small.gc(compact=False, min_age_s=0)["orphans"] == [f"shards/{VEC[:16]}/young.npy"]


# --------------------------------------------------------------------------- writers racing


def test_a_store_locked_by_another_writer_says_so_after_the_wait(small, monkeypatch):
    from mmtk.store import index

    monkeypatch.setattr(index, "BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(small.root / "index.sqlite", isolation_level=None)
    fresh = FeatureStore(small.root)  # opened under the short wait
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError) as error:
            fresh.put(VEC, ["x"], [np.ones(3)])
        assert error.value.message == f"the feature store index {small.root / 'index.sqlite'} stayed locked for 0.2 s (database is locked)"
        assert error.value.hint == "another mmtk process is writing to this store; retry when it is done"
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Nothing was indexed and no shard was left behind; once free, the write goes through.
    assert fresh.verify() == {**fresh.verify(), "ok": True, "orphans": []}
    assert fresh.put(VEC, ["x"], [np.ones(3)]) == 1
    fresh.close()


def test_a_set_removed_while_writing_is_refused_and_its_shard_removed(small, monkeypatch):
    from mmtk.store import feature_store

    real = feature_store.write_shard

    def write_then_remove(root, fingerprint, rows):
        shard = real(root, fingerprint, rows)
        _sql(small, "DELETE FROM feature_sets WHERE fingerprint = ?", (fingerprint,))
        return shard

    monkeypatch.setattr(feature_store, "write_shard", write_then_remove)
    files = sorted((small.root / "shards").rglob("*.npy"))
    with pytest.raises(StoreError) as error:
        small.put(VEC, ["x"], [np.ones(3)])
    assert error.value.message == f"feature set {VEC[:12]} was removed from store {small.root} while writing"
    assert error.value.hint == "run the command again"
    assert sorted((small.root / "shards").rglob("*.npy")) == files
    assert _sql(small, "SELECT COUNT(*) FROM items WHERE key = 'x'") == [(0,)]


def test_a_shard_deleted_before_it_was_indexed_is_refused(small, monkeypatch):
    from mmtk.store import feature_store

    real = feature_store.write_shard

    def write_then_lose(root, fingerprint, rows):
        shard = real(root, fingerprint, rows)
        (root / shard.relpath).unlink()  # what a gc with --min-age 0 may do
        return shard

    monkeypatch.setattr(feature_store, "write_shard", write_then_lose)
    with pytest.raises(StoreError) as error:
        small.put(VEC, ["x"], [np.ones(3)])
    assert error.value.message.startswith(f"shard {small.root / 'shards' / VEC[:16]}/") and error.value.message.endswith(
        ".npy vanished before it was indexed"
    )
    assert error.value.hint == "run the command again"
    assert small.missing(VEC, ["x"]) == ["x"] and small.verify()["ok"]


def test_items_another_writer_stored_first_keep_its_values_and_leave_no_shard(small, monkeypatch):
    from mmtk.store import feature_store

    real = feature_store.write_shard
    rival = FeatureStore(small.root)
    rival_items: list = []

    def rival_first(root, fingerprint, rows):
        shard = real(root, fingerprint, rows)
        if rival_items:  # the rival's own put (the module is shared) writes plainly
            keys, values = rival_items.pop(), rival_items.pop()
            rival.put(fingerprint, keys, values)
        return shard

    monkeypatch.setattr(feature_store, "write_shard", rival_first)
    files = sorted((small.root / "shards").rglob("*.npy"))
    rival_items[:] = [[np.full(3, 7.0), np.full(3, 8.0)], ["x", "y"]]
    assert small.put(VEC, ["x", "y"], [np.zeros(3), np.zeros(3)]) == 0
    assert len(sorted((small.root / "shards").rglob("*.npy"))) == len(files) + 1  # the rival's only
    np.testing.assert_array_equal(small.gather(VEC, ["y", "x"]), [[8.0] * 3, [7.0] * 3])
    assert small.verify()["shards"] == 4 and small.verify()["ok"]
    # A rival that stored one of two items: the other is new, and the shard is kept.
    rival_items[:] = [[np.full(3, 9.0)], ["p"]]
    assert small.put(VEC, ["p", "q"], [np.zeros(3), np.full(3, 4.0)]) == 1
    np.testing.assert_array_equal(small.gather(VEC, ["p", "q"]), [[9.0] * 3, [4.0] * 3])
    assert small.verify()["ok"] and small.verify()["orphans"] == [] and small.verify()["shards"] == 6
    rival.close()


def test_a_store_whose_index_is_a_folder_cannot_be_opened(tmp_path):
    (tmp_path / "index.sqlite").mkdir()
    store = FeatureStore(tmp_path)
    with pytest.raises(StoreError) as error:
        store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
    assert error.value.message == f"cannot open the feature store index {tmp_path / 'index.sqlite'} (unable to open database file)"
    assert error.value.hint == "point --store (or $MMTK_STORE) at an mmtk store directory"


def test_thousands_of_keys_are_looked_up_in_bounded_chunks(small):
    keys = [f"n{i}" for i in range(2000)]
    assert small.put(VEC, keys[::2], [np.full(3, float(i)) for i in range(0, 2000, 2)]) == 1000
    assert small.missing(VEC, keys) == keys[1::2]
    np.testing.assert_array_equal(small.gather(VEC, keys[-2::-2])[:, 0], np.arange(1998, -1, -2, dtype=np.float32))


def test_the_index_and_shards_follow_the_umask_so_a_group_can_share_a_store(tmp_path):
    import os
    import stat

    old = os.umask(0o002)
    try:
        store = FeatureStore(tmp_path / "store")
        store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3})
        store.put(VEC, ["k"], [np.ones(3)])
        store.close()
    finally:
        os.umask(old)
    (shard,) = (store.root / "shards").rglob("*.npy")
    for path in (store.root / "index.sqlite", shard):
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path


def test_remove_drops_a_set_whose_shard_file_is_gone_already(small):
    path = _shard_path(small, "k3")
    path.unlink()
    assert small.remove("vec") == {"fingerprint": VEC, "backbone": "vec", "items": 3, "shards": 2}
    assert not list((small.root / "shards" / VEC[:16]).glob("*.npy")) and small.verify()["ok"]
    assert repr(small) == f"FeatureStore({str(small.root)!r})"


def test_a_full_disk_when_creating_the_compacted_shard_is_one_line(small, monkeypatch):
    import errno
    import os

    real = np.lib.format.open_memmap

    def no_space(filename, mode="r+", **kwargs):
        if mode == "w+":  # a new file; reads of shards pass
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(filename, mode=mode, **kwargs)

    monkeypatch.setattr(np.lib.format, "open_memmap", no_space)  # fails before creating the file
    with pytest.raises(StoreError) as error:
        small.gc(compact_min_shards=2)
    assert error.value.message.startswith(f"no space left on the disk holding {small.root / 'shards' / VEC[:16]}/")
    assert error.value.message.endswith(".npy.tmp (No space left on device)")
    assert not list((small.root / "shards").rglob("*.tmp")) and small.verify()["ok"]


def test_created_is_utc_whatever_the_local_zone(tmp_path, monkeypatch):
    import time
    from datetime import datetime, timezone

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30, no daylight saving
    time.tzset()
    try:
        store = FeatureStore(tmp_path / "store")
        before = datetime.now(timezone.utc).replace(microsecond=0)
        store.register(VEC, {"backbone": "vec", "modality": "image", "kind": "vector", "dim": 3, "pooling": "cls"})
        after = datetime.now(timezone.utc)
        created = store.feature_sets()[0]["created"]
        info = store.info("vec")
        store.close()
    finally:
        monkeypatch.undo()
        time.tzset()
    stamp = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= stamp <= after
    # Meta beyond the listed fields (how the features were made) is part of info.
    assert info["pooling"] == "cls" and info["created"] == created and info["variant"] == ""


def test_sequences_read_without_checks_when_asked_and_refuse_nan_naming_the_item(small):
    from store_writer import rewrite_shard

    path = _shard_path(small, "s3", SEQ)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    unchecked = FeatureStore(small.root, verify_reads=False)
    assert unchecked.gather_sequences(SEQ, ["s3", "s1"])[1].tolist() == [3, 2]
    unchecked.close()
    with pytest.raises(StoreError, match="does not match its checksum"):
        small.gather_sequences(SEQ, ["s3"])
    array = np.load(path)
    array[3, 1] = np.nan  # s3's second step
    rewrite_shard(small.root, _shard_id(small, "s3", SEQ), path, array)
    with pytest.raises(StoreError) as error:
        small.gather_sequences(SEQ, ["s1", "s2", "s3"])
    assert error.value.message == f"item 's3' has non-finite seq features (NaN or inf) in store {small.root}"
    assert small.gather_sequences(SEQ, ["s3"], max_len=1)[1].tolist() == [1]  # the NaN step is cut


def test_repair_drops_every_item_when_no_set_is_registered(small):
    _sql(small, "DELETE FROM feature_sets")
    report = small.repair()
    assert report["dropped_items"] == 6 and [s["backbone"] for s in report["feature_sets"]] == ["(unregistered)"] * 2
    assert _sql(small, "SELECT COUNT(*) FROM items") == [(0,)]
    assert small.verify()["ok"]
